/**
 * The one place where classic-level / abstract-level failures become
 * MetadataErrors.
 *
 * classic-level 3 reports failures as errors with a `code` (`LEVEL_*`),
 * sometimes wrapped: a failed `open()` is always `LEVEL_DATABASE_NOT_OPEN`
 * whose `cause` says why (`LEVEL_LOCKED`, `LEVEL_CORRUPTION`,
 * `LEVEL_IO_ERROR`, or a Node errno error from creating the directory).
 * The innermost meaningful code decides the reason:
 *
 * | code                                | reason           | why |
 * | ----------------------------------- | ---------------- | --- |
 * | LEVEL_LOCKED                        | Unavailable      | another process (or handle) holds the LOCK file; it may go away, but we never retry opening by ourselves |
 * | LEVEL_CORRUPTION, LEVEL_DECODE_ERROR| Corrupted        | never transient: retrying reads the same bad bytes |
 * | LEVEL_DATABASE_NOT_OPEN (no cause), LEVEL_STATUS_LOCKED | Unavailable | closed, or opening/closing right now |
 * | LEVEL_IO_ERROR                      | by the message: PermissionDenied, Unavailable (space) | LevelDB gives no errno, only text |
 * | LEVEL_NOT_FOUND                     | NotFound         | |
 * | LEVEL_INVALID_KEY / _VALUE / _PREFIX, LEVEL_ENCODE_ERROR | InvalidInput | |
 * | LEVEL_NOT_SUPPORTED                 | Unsupported      | |
 * | errno (ENOENT, EACCES, ENOSPC ...)  | as the fs backend maps them | |
 * | no code (a bare LevelDB status)     | by its `Status::ToString` prefix: `Invalid argument: ... does not exist` is NotFound ... | |
 * | anything else (hooks, aborted ...)  | Unknown          | |
 */
import * as Predicate from "effect/Predicate"
import { type ErrorReason, MetadataError } from "../../core/Errors.js"

/** Backend name carried by every error of this backend. */
export const BACKEND = "level"

const byCode: Readonly<Record<string, ErrorReason>> = {
  LEVEL_NOT_FOUND: "NotFound",
  LEVEL_LOCKED: "Unavailable",
  LEVEL_CORRUPTION: "Corrupted",
  LEVEL_DECODE_ERROR: "Corrupted",
  LEVEL_DATABASE_NOT_OPEN: "Unavailable",
  LEVEL_DATABASE_NOT_CLOSED: "Unknown",
  LEVEL_STATUS_LOCKED: "Unavailable",
  LEVEL_IO_ERROR: "Unavailable",
  LEVEL_INVALID_KEY: "InvalidInput",
  LEVEL_INVALID_VALUE: "InvalidInput",
  LEVEL_INVALID_PREFIX: "InvalidInput",
  LEVEL_ENCODE_ERROR: "InvalidInput",
  LEVEL_NOT_SUPPORTED: "Unsupported",
  LEVEL_ITERATOR_NOT_OPEN: "Unavailable",
  LEVEL_BATCH_NOT_OPEN: "Unavailable",
  LEVEL_SNAPSHOT_NOT_OPEN: "Unavailable",
  // Errno codes: a failed mkdir of the database directory, mostly.
  ENOENT: "NotFound",
  ENOTDIR: "InvalidInput",
  EISDIR: "InvalidInput",
  ENAMETOOLONG: "InvalidInput",
  EACCES: "PermissionDenied",
  EPERM: "PermissionDenied",
  EROFS: "PermissionDenied",
  ENOSPC: "Unavailable",
  EDQUOT: "Unavailable",
  EMFILE: "Unavailable",
  ENFILE: "Unavailable",
  EIO: "Unavailable",
  EBUSY: "Unavailable",
  EAGAIN: "Unavailable"
}

/** Codes that only wrap a more precise cause. */
const wrappers: ReadonlySet<string> = new Set(["LEVEL_DATABASE_NOT_OPEN", "LEVEL_DATABASE_NOT_CLOSED"])

const codeOf = (error: unknown): string | undefined =>
  Predicate.hasProperty(error, "code") && typeof error.code === "string" ? error.code : undefined

const messageOf = (error: unknown): string =>
  Predicate.hasProperty(error, "message") && typeof error.message === "string" ? error.message : String(error)

/**
 * The error that explains a failure: the innermost cause with a known code
 * under wrappers such as "Database failed to open" (at most a few levels).
 */
const rootCause = (error: unknown): unknown => {
  let current = error
  for (let depth = 0; depth < 4; depth++) {
    const code = codeOf(current)
    const cause = Predicate.hasProperty(current, "cause") ? current.cause : undefined
    if (code !== undefined && !wrappers.has(code)) return current
    if (cause === undefined || cause === null) return current
    current = cause
  }
  return current
}

/** The `LEVEL_*` (or errno) code that explains a failure, if any. */
export const levelCode = (error: unknown): string | undefined => codeOf(rootCause(error))

/** True when the failure is LevelDB's LOCK being held (by another process or another open handle). */
export const isLocked = (error: unknown): boolean => levelCode(error) === "LEVEL_LOCKED"

/** LevelDB IO errors carry only text (`IO error: <file>: <strerror>`); the errno phrase picks the reason. */
const ioReason = (message: string): ErrorReason =>
  /Permission denied|Operation not permitted|Read-only file system/i.test(message)
    ? "PermissionDenied"
    : /No such file or directory/i.test(message)
    ? "NotFound"
    : "Unavailable"

/**
 * LevelDB statuses that classic-level passes on without a code keep
 * LevelDB's own prefix (`Status::ToString`), which names the kind.
 */
const statusReason = (message: string): ErrorReason =>
  message.startsWith("Corruption:")
    ? "Corrupted"
    : message.startsWith("IO error:")
    ? ioReason(message)
    : message.startsWith("NotFound:") || /does not exist \(create_if_missing is false\)/.test(message)
    ? "NotFound"
    : /exists \(error_if_exists is true\)/.test(message)
    ? "AlreadyExists"
    : message.startsWith("Invalid argument:")
    ? "InvalidInput"
    // LevelDB's own status text for an operation it lacks (e.g. a feature of another build).
    : message.startsWith("Not implemented:")
    ? "Unsupported"
    : "Unknown"

/** The reason for a classic-level failure. */
export const reasonOf = (error: unknown): ErrorReason => {
  const root = rootCause(error)
  const code = codeOf(root)
  if (code === undefined) return statusReason(messageOf(root))
  if (code === "LEVEL_IO_ERROR") return ioReason(messageOf(root))
  return code in byCode ? byCode[code]! : "Unknown"
}

/** Where the failure happened, for the sentence. */
export interface ErrorContext {
  /** Directory of the database. */
  readonly path: string
  /** The key, prefix or namespace involved, when there is one. */
  readonly subject?: string | undefined
}

const describe = (error: unknown, context: ErrorContext): string => {
  const root = rootCause(error)
  const code = codeOf(root)
  const at = `database at ${context.path}`
  const about = context.subject === undefined ? "" : ` (${context.subject})`
  switch (code) {
    case "LEVEL_LOCKED":
      return /already held by process/.test(messageOf(root))
        ? `${at} is already open in this process (LevelDB allows one open handle per directory)`
        : `${at} is already open in another process (LevelDB holds ${context.path}/LOCK)`
    case "LEVEL_CORRUPTION":
      return `${at} is corrupted${about}: ${messageOf(root)}`
    case "LEVEL_DATABASE_NOT_OPEN":
    case "LEVEL_STATUS_LOCKED":
      return `${at} is not open (closed, or being opened or closed)${about}`
    default:
      return `${at}${about}: ${messageOf(root)}${code === undefined ? "" : ` [${code}]`}`
  }
}

/** Maps any failure of a classic-level call to a MetadataError naming the database path. */
export const toMetadataError = (method: string, error: unknown, context: ErrorContext): MetadataError =>
  Predicate.isTagged(error, "MetadataError")
    ? (error as MetadataError)
    : new MetadataError({
      reason: reasonOf(error),
      backend: BACKEND,
      method,
      description: describe(error, context),
      cause: error
    })

/** A MetadataError with reason InvalidInput raised by this backend. */
export const invalidInput = (method: string, description: string): MetadataError =>
  new MetadataError({ reason: "InvalidInput", backend: BACKEND, method, description })
