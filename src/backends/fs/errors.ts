/**
 * The one place where filesystem failures become ObjectStoreErrors.
 *
 * The errno code of the underlying Node error decides the reason; the
 * platform's coarser `SystemError.reason` is only a fallback for errors
 * that carry no code.
 */
import type { PlatformError } from "@effect/platform/Error"
import * as Predicate from "effect/Predicate"
import { type ErrorReason, ObjectStoreError } from "../../core/Errors.js"

export const BACKEND = "fs"

const byCode: Readonly<Record<string, ErrorReason>> = {
  ENOENT: "NotFound",
  EACCES: "PermissionDenied",
  EPERM: "PermissionDenied",
  EROFS: "PermissionDenied",
  EEXIST: "AlreadyExists",
  // A path that is a directory of other objects, or runs through a file:
  // object names collide with each other's "directories".
  EISDIR: "Conflict",
  ERR_FS_EISDIR: "Conflict",
  ENOTDIR: "Conflict",
  ENOTEMPTY: "Conflict",
  ENAMETOOLONG: "InvalidInput",
  EINVAL: "InvalidInput",
  ELOOP: "InvalidInput",
  ENOSPC: "Unavailable",
  EDQUOT: "Unavailable",
  EMFILE: "Unavailable",
  ENFILE: "Unavailable",
  EBUSY: "Unavailable",
  EAGAIN: "Unavailable",
  EWOULDBLOCK: "Unavailable",
  ENOMEM: "Unavailable",
  EIO: "Unavailable",
  ETIMEDOUT: "Timeout",
  EXDEV: "Unsupported",
  ENOTSUP: "Unsupported",
  EOPNOTSUPP: "Unsupported"
}

const byPlatformReason: Readonly<Record<string, ErrorReason>> = {
  NotFound: "NotFound",
  PermissionDenied: "PermissionDenied",
  AlreadyExists: "AlreadyExists",
  Busy: "Unavailable",
  WouldBlock: "Unavailable",
  WriteZero: "Unavailable",
  TimedOut: "Timeout",
  BadResource: "Conflict",
  InvalidData: "Corrupted",
  UnexpectedEof: "Corrupted",
  Unknown: "Unknown"
}

/** The errno code (`ENOENT` ...) behind a PlatformError or a Node error, if any. */
export const errnoCode = (error: unknown): string | undefined => {
  if (Predicate.hasProperty(error, "code") && typeof error.code === "string") return error.code
  if (Predicate.hasProperty(error, "cause")) {
    const cause = error.cause
    if (Predicate.hasProperty(cause, "code") && typeof cause.code === "string") return cause.code
  }
  return undefined
}

/** True for errors meaning "nothing there": the path, or one of its parents, does not exist as a directory. */
export const isMissing = (error: unknown): boolean => {
  const code = errnoCode(error)
  return code === "ENOENT" || code === "ENOTDIR"
}

/** The reason for a filesystem failure. */
export const reasonOf = (error: unknown): ErrorReason => {
  const code = errnoCode(error)
  if (code !== undefined && code in byCode) return byCode[code]!
  if (Predicate.isTagged(error, "BadArgument")) return "InvalidInput"
  if (Predicate.isTagged(error, "SystemError") && Predicate.hasProperty(error, "reason")) {
    return byPlatformReason[String(error.reason)] ?? "Unknown"
  }
  return "Unknown"
}

/** Maps any filesystem failure of `method` to an ObjectStoreError; ObjectStoreErrors pass through. */
export const fromFileSystem = (method: string, what?: string) => (error: PlatformError | unknown): ObjectStoreError => {
  if (error instanceof ObjectStoreError) return error
  const message = Predicate.hasProperty(error, "message") && typeof error.message === "string" ? error.message : String(error)
  return new ObjectStoreError({
    reason: reasonOf(error),
    backend: BACKEND,
    method,
    description: what === undefined ? message : `${what}: ${message}`,
    cause: error
  })
}

/** An ObjectStoreError raised by the fs store itself (not by the filesystem). */
export const fsError = (method: string, reason: ErrorReason, description: string): ObjectStoreError =>
  new ObjectStoreError({ reason, backend: BACKEND, method, description })
