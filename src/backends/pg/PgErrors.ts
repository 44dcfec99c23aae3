/**
 * The one place where PostgreSQL failures become port errors.
 *
 * The SQLSTATE of the server's error decides the reason (see `reasonOf`);
 * client-side failures (refused or dropped connections, pool timeouts) carry
 * a Node errno code or a known `pg` message instead. Descriptions never
 * contain secrets: every text that leaves this module goes through `scrub`,
 * which removes the passwords registered by the layer that built the client,
 * and any password embedded in a `postgres://user:password@host` URL.
 */
import * as Predicate from "effect/Predicate"
import { type ErrorReason, MetadataError, ObjectStoreError } from "../../core/Errors.js"

export const BACKEND = "pg"

/** SQLSTATE classes and codes, most specific first (a full code beats its class). */
const bySqlState: Readonly<Record<string, ErrorReason>> = {
  // Class 23, integrity constraint violation.
  "23505": "AlreadyExists",
  "23503": "Conflict",
  "23P01": "Conflict",
  "23": "InvalidInput",
  // Class 40, transaction rollback: the server rolled the whole transaction
  // back, so running it again is safe and usually succeeds. The contract has
  // no transient "contention" reason; Throttled ("back off and retry") fits.
  "40001": "Throttled",
  "40P01": "Throttled",
  "40": "Throttled",
  // Class 08, connection exception; 57P01-03 the server is shutting down or starting.
  "08": "Unavailable",
  "57P01": "Unavailable",
  "57P02": "Unavailable",
  "57P03": "Unavailable",
  "57P04": "Unavailable",
  // statement_timeout, lock_timeout, idle-in-transaction timeout, cancelled query.
  "57014": "Timeout",
  "55P03": "Timeout",
  "25P03": "Timeout",
  // Class 53, insufficient resources.
  "53300": "Throttled",
  "53400": "Throttled",
  "53": "Unavailable",
  "58": "Unavailable",
  // Class 22, data exception (bad text, out-of-range numbers, invalid UTF-8 ...).
  "22": "InvalidInput",
  "54": "InvalidInput",
  // Authentication and privileges.
  "28": "PermissionDenied",
  "42501": "PermissionDenied",
  "0A": "Unsupported",
  "XX001": "Corrupted",
  "XX002": "Corrupted"
}

/** Node and `pg` client failures that carry no SQLSTATE. */
const byErrno: Readonly<Record<string, ErrorReason>> = {
  ECONNREFUSED: "Unavailable",
  ECONNRESET: "Unavailable",
  EPIPE: "Unavailable",
  ENOTFOUND: "Unavailable",
  EAI_AGAIN: "Unavailable",
  EHOSTUNREACH: "Unavailable",
  ENETUNREACH: "Unavailable",
  ETIMEDOUT: "Timeout"
}

/** SQLSTATEs that may arrive after the server has already committed (the session was cut, not the statement). */
const ambiguous = new Set(["57P01", "57P02", "57P04"])

/** The SQLSTATE of the first error in a cause chain that has one. */
export const sqlState = (error: unknown): string | undefined => {
  let current: unknown = error
  for (let depth = 0; depth < 6 && Predicate.isObject(current); depth++) {
    const code = (current as { code?: unknown }).code
    if (typeof code === "string" && /^[0-9A-Z]{5}$/.test(code)) return code
    current = (current as { cause?: unknown }).cause
  }
  return undefined
}

const errnoOf = (error: unknown): string | undefined => {
  let current: unknown = error
  for (let depth = 0; depth < 6 && Predicate.isObject(current); depth++) {
    const code = (current as { code?: unknown }).code
    if (typeof code === "string" && code in byErrno) return code
    current = (current as { cause?: unknown }).cause
  }
  return undefined
}

const messagesOf = (error: unknown): ReadonlyArray<string> => {
  const out: Array<string> = []
  let current: unknown = error
  for (let depth = 0; depth < 6 && Predicate.isObject(current); depth++) {
    const message = (current as { message?: unknown }).message
    if (typeof message === "string" && message.length > 0) out.push(message)
    current = (current as { cause?: unknown }).cause
  }
  return out
}

/** The reason for a SQLSTATE (exact code first, then its two-character class). */
const reasonOfSqlState = (state: string): ErrorReason =>
  bySqlState[state] ?? bySqlState[state.slice(0, 2)] ?? "Unknown"

/**
 * Node's codes for a server certificate that TLS verification refused
 * (sslmode=verify-full / require with node-postgres, see docs/backends/postgres.md).
 */
const TLS_REFUSED = /^(SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)?|CERT_[A-Z_]+|ERR_TLS_CERT_ALTNAME_INVALID|HOSTNAME_MISMATCH)$/

/** The TLS verification code in a failure's chain, if any. */
const tlsCodeOf = (error: unknown): string | undefined => {
  let current: unknown = error
  for (let depth = 0; depth < 6 && Predicate.isObject(current); depth++) {
    const code = (current as { code?: unknown }).code
    if (typeof code === "string" && TLS_REFUSED.test(code)) return code
    current = (current as { cause?: unknown }).cause
  }
  return undefined
}

const NO_TLS_ON_SERVER = /server does not support SSL/i

/** The reason for any failure of the `pg` driver or of `@effect/sql`. */
export const reasonOf = (error: unknown): ErrorReason => {
  const state = sqlState(error)
  if (state !== undefined) return reasonOfSqlState(state)
  // Not transient: retrying cannot make the certificate trusted, nor the server speak TLS.
  if (tlsCodeOf(error) !== undefined) return "PermissionDenied"
  if (messagesOf(error).some((m) => NO_TLS_ON_SERVER.test(m))) return "Unsupported"
  const errno = errnoOf(error)
  if (errno !== undefined) return byErrno[errno]!
  const text = messagesOf(error).join(" | ")
  if (/timeout exceeded when trying to connect|connection timeout|timed out/i.test(text)) return "Timeout"
  if (/Connection terminated|Client has encountered a connection error|Failed to acquire connection/i.test(text)) {
    return "Unavailable"
  }
  return "Unknown"
}

/**
 * True when repeating a non-idempotent call (compareAndSet, commit, move) is
 * safe: the server answered with an error, so the statement (and, inside a
 * transaction, the transaction) had no effect; or no connection was ever
 * made. A connection lost mid-call is not enough: the COMMIT may have landed.
 */
export const safeToRepeat = (error: { readonly reason: ErrorReason; readonly cause?: unknown }): boolean => {
  const state = sqlState(error.cause)
  if (state !== undefined) return !state.startsWith("08") && !ambiguous.has(state)
  return errnoOf(error.cause) === "ECONNREFUSED" ||
    messagesOf(error.cause).some((m) => /timeout exceeded when trying to connect|Failed to acquire connection/i.test(m))
}

const secrets = new Set<string>()

/** Registers a secret (a password) that must never appear in an error or a log line. */
export const registerSecret = (secret: string): void => {
  // Very short strings would mangle ordinary words; such passwords are redacted in URLs only.
  if (secret.length >= 4) secrets.add(secret)
}

const URL_PASSWORD = /([a-z][a-z0-9+.-]*:\/\/[^:/?#@\s]*:)([^@\s]*)@/gi

/** Removes passwords from a text: registered secrets and the password part of any URL. */
export const scrub = (text: string): string => {
  let out = text.replace(URL_PASSWORD, "$1***@")
  for (const secret of secrets) {
    if (out.includes(secret)) out = out.split(secret).join("***")
  }
  return out
}

/** A plain Error carrying the cause's SQLSTATE/errno and scrubbed messages, with no reference to client objects. */
export const scrubCause = (error: unknown): Error => {
  const message = scrub(messagesOf(error)[0] ?? String(error))
  const clean = new Error(message) as Error & { code?: string; detail?: string }
  const code = sqlState(error) ?? errnoOf(error)
  if (code !== undefined) clean.code = code
  const detail = Predicate.isObject(error) ? (error as { detail?: unknown }).detail : undefined
  if (typeof detail === "string") clean.detail = scrub(detail)
  const inner = Predicate.isObject(error) ? (error as { cause?: unknown }).cause : undefined
  if (Predicate.isObject(inner)) clean.cause = scrubCause(inner)
  // The stack would repeat the unscrubbed message of the original error.
  clean.stack = `Error: ${message}`
  return clean
}

/** A short, scrubbed sentence for a driver failure: SQLSTATE and the deepest useful message. */
export const describe = (error: unknown): string => {
  const tls = tlsCodeOf(error)
  if (tls !== undefined) {
    const why = messagesOf(error).filter((m) => !/^Failed to (execute statement|acquire connection)$/.test(m))
    return scrub(
      `TLS: the server's certificate was refused (${why[why.length - 1] ?? tls}, ${tls}); ` +
        "check sslrootcert (the CA that signed the server's certificate) and the host name in the URL"
    )
  }
  const state = sqlState(error)
  const messages = messagesOf(error).filter((m) => !/^Failed to execute statement$/.test(m))
  const text = messages.length > 0 ? messages[messages.length - 1]! : "unknown failure"
  return scrub(state === undefined ? text : `${text} (SQLSTATE ${state})`)
}

/** Maps a driver failure to an ObjectStoreError of `method`. */
export const objectStoreError = (method: string) => (error: unknown): ObjectStoreError =>
  Predicate.isTagged(error, "ObjectStoreError")
    ? error as ObjectStoreError
    : new ObjectStoreError({
      reason: reasonOf(error),
      backend: BACKEND,
      method,
      description: describe(error),
      cause: scrubCause(error)
    })

/** Maps a driver failure to a MetadataError of `method`. */
export const metadataError = (method: string) => (error: unknown): MetadataError =>
  Predicate.isTagged(error, "MetadataError")
    ? error as MetadataError
    : new MetadataError({
      reason: reasonOf(error),
      backend: BACKEND,
      method,
      description: describe(error),
      cause: scrubCause(error)
    })
