/**
 * The one place where S3 failures become Graviton reasons: S3 error codes
 * first (they are precise), then Node's network error codes (before the
 * error's name, which the SDK sets to "TimeoutError" for a reset), then the
 * HTTP status. Retries key off the reason this produces (transient = Unavailable,
 * Throttled, Timeout), never off message text.
 */
import type { ErrorReason } from "../../core/Errors.js"
import { BlobError, ObjectStoreError } from "../../core/Errors.js"

/** What is known about one failed S3 call. */
export interface Classified {
  readonly reason: ErrorReason
  /** The S3 error code ("NoSuchKey", "SlowDown" ...) or the Node error code ("ECONNRESET"), else the error's name. */
  readonly code: string
  readonly status: number | undefined
  /** A sentence for people: code, status and the server's message. Never carries request headers or keys. */
  readonly description: string
}

const byCode: Record<string, ErrorReason> = {
  // Missing things.
  NoSuchKey: "NotFound",
  NotFound: "NotFound",
  NoSuchBucket: "NotFound",
  NoSuchUpload: "NotFound",
  NoSuchVersion: "NotFound",
  // Credentials and policy.
  AccessDenied: "PermissionDenied",
  AllAccessDisabled: "PermissionDenied",
  AccountProblem: "PermissionDenied",
  InvalidAccessKeyId: "PermissionDenied",
  SignatureDoesNotMatch: "PermissionDenied",
  ExpiredToken: "PermissionDenied",
  InvalidToken: "PermissionDenied",
  TokenRefreshRequired: "PermissionDenied",
  KMS_AccessDenied: "PermissionDenied",
  "KMS.AccessDeniedException": "PermissionDenied",
  CredentialsProviderError: "PermissionDenied",
  // The server asks us to slow down.
  SlowDown: "Throttled",
  Throttling: "Throttled",
  ThrottlingException: "Throttled",
  ThrottledException: "Throttled",
  RequestThrottled: "Throttled",
  RequestLimitExceeded: "Throttled",
  TooManyRequestsException: "Throttled",
  BandwidthLimitExceeded: "Throttled",
  "KMS.ThrottlingException": "Throttled",
  // The server (or the path to it) is unwell.
  InternalError: "Unavailable",
  ServiceUnavailable: "Unavailable",
  ServiceUnavailableException: "Unavailable",
  ServiceFailure: "Unavailable",
  BadGateway: "Unavailable",
  ECONNRESET: "Unavailable",
  ECONNREFUSED: "Unavailable",
  ECONNABORTED: "Unavailable",
  EPIPE: "Unavailable",
  ENOTFOUND: "Unavailable",
  EAI_AGAIN: "Unavailable",
  EHOSTUNREACH: "Unavailable",
  ENETUNREACH: "Unavailable",
  ERR_STREAM_PREMATURE_CLOSE: "Unavailable",
  NetworkingError: "Unavailable",
  // Too slow.
  RequestTimeout: "Timeout",
  RequestTimeoutException: "Timeout",
  TimeoutError: "Timeout",
  ETIMEDOUT: "Timeout",
  ESOCKETTIMEDOUT: "Timeout",
  // Our request was wrong.
  InvalidArgument: "InvalidInput",
  InvalidRequest: "InvalidInput",
  InvalidRange: "InvalidInput",
  InvalidBucketName: "InvalidInput",
  InvalidPart: "InvalidInput",
  InvalidPartOrder: "InvalidInput",
  InvalidStorageClass: "InvalidInput",
  KeyTooLongError: "InvalidInput",
  MalformedXML: "InvalidInput",
  MetadataTooLarge: "InvalidInput",
  EntityTooSmall: "InvalidInput",
  EntityTooLarge: "InvalidInput",
  IncompleteBody: "InvalidInput",
  MissingContentLength: "InvalidInput",
  InvalidEncryptionAlgorithmError: "InvalidInput",
  // The bytes arrived damaged.
  BadDigest: "Corrupted",
  InvalidDigest: "Corrupted",
  XAmzContentSHA256Mismatch: "Corrupted",
  // Someone else changed the object, or a condition did not hold.
  PreconditionFailed: "Conflict",
  ConditionalRequestConflict: "Conflict",
  OperationAborted: "Conflict",
  BucketAlreadyExists: "AlreadyExists",
  BucketAlreadyOwnedByYou: "AlreadyExists",
  // The server does not do this.
  NotImplemented: "Unsupported",
  InvalidObjectState: "Unsupported",
  MethodNotAllowed: "Unsupported"
}

const byStatus = (status: number): ErrorReason | undefined => {
  switch (status) {
    case 400:
      return "InvalidInput"
    case 401:
    case 403:
      return "PermissionDenied"
    case 404:
      return "NotFound"
    case 405:
    case 501:
      return "Unsupported"
    case 408:
      return "Timeout"
    case 409:
    case 412:
      return "Conflict"
    case 416:
      return "InvalidInput"
    case 429:
      return "Throttled"
    case 500:
    case 502:
    case 503:
    case 504:
      return "Unavailable"
  }
  if (status >= 500) return "Unavailable"
  if (status >= 400) return "InvalidInput"
  return undefined
}

interface ErrorLike {
  readonly name?: unknown
  readonly code?: unknown
  readonly Code?: unknown
  readonly message?: unknown
  readonly $metadata?: { readonly httpStatusCode?: unknown }
  readonly $retryable?: { readonly throttling?: unknown }
  readonly cause?: unknown
}

const str = (u: unknown): string | undefined => (typeof u === "string" && u.length > 0 ? u : undefined)

/** Classifies any failure of an SDK call (service exception, network error, timeout). */
export const classify = (error: unknown): Classified => {
  const e: ErrorLike = typeof error === "object" && error !== null ? error as ErrorLike : {}
  const status = typeof e.$metadata?.httpStatusCode === "number" ? e.$metadata.httpStatusCode : undefined
  // Node network errors carry `code`; service exceptions carry `Code` and a `name` equal to it.
  const nodeCode = str(e.code) ?? (typeof e.cause === "object" && e.cause !== null ? str((e.cause as ErrorLike).code) : undefined)
  // The Node code comes before the name: the SDK's HTTP handler renames ECONNRESET and EPIPE
  // errors "TimeoutError", and a server that reset the connection is Unavailable, not slow.
  const candidates = [str(e.Code), nodeCode, str(e.name)].filter((c): c is string => c !== undefined)
  const known = candidates.find((c) => c in byCode)
  const code = known ?? candidates.find((c) => c !== "Error" && c !== "UnknownError") ?? "UnknownError"
  const reason: ErrorReason = known !== undefined
    ? byCode[known]!
    : status !== undefined && byStatus(status) !== undefined
    ? byStatus(status)!
    : e.$retryable?.throttling === true
    ? "Throttled"
    : "Unknown"
  const message = str(e.message) ?? (typeof error === "string" ? error : undefined)
  const description = `${code}${status !== undefined ? ` (HTTP ${status})` : ""}${
    message !== undefined && message !== code && message !== "UnknownError" ? `: ${message}` : ""
  }`
  return { reason, code, status, description }
}

/** The ObjectStoreError for a failed S3 call `op` (e.g. "GetObject") on `target` (a locator or key text). */
export const toObjectStoreError = (op: string, target: string, error: unknown): ObjectStoreError => {
  const c = classify(error)
  return new ObjectStoreError({ reason: c.reason, backend: "s3", method: op, description: `${op} ${target}: ${c.description}`, cause: error })
}

/** Names the port method in an error raised by one of the S3 calls it made (the call stays in the description). */
export const relabel = (method: string) => (e: ObjectStoreError): ObjectStoreError =>
  e.method === method
    ? e
    : new ObjectStoreError({
      reason: e.reason,
      backend: e.backend,
      method,
      ...(e.description === undefined ? {} : { description: e.description }),
      ...(e.cause === undefined ? {} : { cause: e.cause })
    })

/** Re-labels an object-store failure as a BlobStore failure (same reason, method and description). */
export const toBlobError = (e: ObjectStoreError, method?: string): BlobError =>
  new BlobError({
    reason: e.reason,
    backend: e.backend,
    method: method ?? e.method,
    ...(e.description === undefined ? {} : { description: e.description }),
    ...(e.cause === undefined ? {} : { cause: e.cause })
  })
