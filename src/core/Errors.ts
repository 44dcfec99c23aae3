/**
 * The error model shared by every port: one `Schema.TaggedError` per port
 * family, each carrying a `reason` from one closed union so that retries,
 * exit codes and metrics key off the reason, never off message text.
 */
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"

/** Why an operation failed, independent of the backend that failed. */
export const ErrorReason = Schema.Literal(
  "NotFound",
  "AlreadyExists",
  "Conflict",
  "InvalidInput",
  "Corrupted",
  "Unavailable",
  "Throttled",
  "Timeout",
  "PermissionDenied",
  "Unsupported",
  "Unknown"
)
export type ErrorReason = typeof ErrorReason.Type

/** Reasons that may succeed when the same call is repeated later. */
export const transientReasons: ReadonlySet<ErrorReason> = new Set<ErrorReason>([
  "Unavailable",
  "Throttled",
  "Timeout"
])

/** True for reasons worth retrying (the server was busy, slow or away). */
export const isTransientReason = (reason: ErrorReason): boolean => transientReasons.has(reason)

const errorFields = {
  reason: ErrorReason,
  /** Backend that raised it: "memory", "fs", "level", "pg", "s3", "cas" ... */
  backend: Schema.String,
  /** Port method that failed, e.g. "put", "get", "compareAndSet". */
  method: Schema.String,
  /** A sentence for people; never contains secrets. */
  description: Schema.optional(Schema.String),
  cause: Schema.optional(Schema.Defect)
}

const render = (e: { reason: string; backend: string; method: string; description?: string | undefined }) =>
  `${e.reason}: ${e.backend}.${e.method}${e.description ? `: ${e.description}` : ""}`

/** Failure of a BlobStore (content-addressed) operation. */
export class BlobError extends Schema.TaggedError<BlobError>("graviton/BlobError")("BlobError", errorFields) {
  override get message(): string {
    return render(this)
  }
  get isTransient(): boolean {
    return isTransientReason(this.reason)
  }
}

/** Failure of an ImmutableObjectStore / MutableObjectStore operation. */
export class ObjectStoreError
  extends Schema.TaggedError<ObjectStoreError>("graviton/ObjectStoreError")("ObjectStoreError", errorFields)
{
  override get message(): string {
    return render(this)
  }
  get isTransient(): boolean {
    return isTransientReason(this.reason)
  }
}

/** Failure of a metadata port: KeyValueStore, RangeTracker, ReplicaIndex. */
export class MetadataError
  extends Schema.TaggedError<MetadataError>("graviton/MetadataError")("MetadataError", errorFields)
{
  override get message(): string {
    return render(this)
  }
  get isTransient(): boolean {
    return isTransientReason(this.reason)
  }
}

/**
 * A value (key text, locator, span, configuration) that does not parse.
 * Pure parsers in `src/core` fail with this; ports turn it into their own
 * error with reason `InvalidInput` (see `toPortError`).
 */
export class InvalidValue extends Schema.TaggedError<InvalidValue>("graviton/InvalidValue")("InvalidValue", {
  /** What was being parsed: "BinaryKey", "BlobLocator", "Span" ... */
  kind: Schema.String,
  /** The offending input, shortened so that huge inputs do not flood logs. */
  input: Schema.String,
  description: Schema.String
}) {
  override get message(): string {
    return `invalid ${this.kind} ${JSON.stringify(this.input)}: ${this.description}`
  }
}

/** Builds an InvalidValue, clipping long input text. */
export const invalidValue = (kind: string, input: unknown, description: string): InvalidValue =>
  new InvalidValue({ kind, input: clip(typeof input === "string" ? input : String(input)), description })

const clip = (s: string): string => (s.length > 120 ? `${s.slice(0, 117)}...` : s)

/** Every error a storage port can fail with. */
export type StorageError = BlobError | ObjectStoreError | MetadataError

/** True for a storage error whose reason is transient. */
export const isTransient = (u: unknown): boolean =>
  Predicate.isTagged(u, "BlobError") || Predicate.isTagged(u, "ObjectStoreError") ||
    Predicate.isTagged(u, "MetadataError")
    ? isTransientReason((u as StorageError).reason)
    : false

/** True when `u` is any storage error (of any port family). */
export const isStorageError = (u: unknown): u is StorageError =>
  Predicate.isTagged(u, "BlobError") || Predicate.isTagged(u, "ObjectStoreError") ||
  Predicate.isTagged(u, "MetadataError")

type PortErrorClass = typeof BlobError | typeof ObjectStoreError | typeof MetadataError

/** Turns a parse failure into a port error with reason InvalidInput. */
export const toPortError = <C extends PortErrorClass>(
  ErrorClass: C,
  backend: string,
  method: string
) =>
(e: InvalidValue): InstanceType<C> =>
  new ErrorClass({ reason: "InvalidInput", backend, method, description: e.message, cause: e }) as InstanceType<C>
