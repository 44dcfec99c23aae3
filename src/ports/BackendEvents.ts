import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import { ErrorReason } from "../core/Errors.js"

const common = {
  /** Backend that produced the event: "memory", "fs", "level", "pg", "s3", "cas" ... */
  backend: Schema.String,
  at: Schema.DateFromSelf
}

/** An object was written (put, or the destination of a move). */
export class ObjectWritten extends Schema.TaggedClass<ObjectWritten>()("ObjectWritten", {
  ...common,
  locator: Schema.String,
  size: Schema.Number
}) {}

/** An object was deleted (or was already absent). */
export class ObjectDeleted extends Schema.TaggedClass<ObjectDeleted>()("ObjectDeleted", {
  ...common,
  locator: Schema.String
}) {}

/** An object was copied or moved server-side. */
export class ObjectCopied extends Schema.TaggedClass<ObjectCopied>()("ObjectCopied", {
  ...common,
  source: Schema.String,
  destination: Schema.String,
  moved: Schema.Boolean
}) {}

/** A blob was stored (or found already stored) under its content key. */
export class BlobStored extends Schema.TaggedClass<BlobStored>()("BlobStored", {
  ...common,
  key: Schema.String,
  locator: Schema.String,
  size: Schema.Number,
  deduplicated: Schema.Boolean
}) {}

/** A blob was deleted by key. */
export class BlobDeleted extends Schema.TaggedClass<BlobDeleted>()("BlobDeleted", {
  ...common,
  key: Schema.String
}) {}

/** An upload (a put stream, a multipart upload) was abandoned and its partial data removed. */
export class UploadAborted extends Schema.TaggedClass<UploadAborted>()("UploadAborted", {
  ...common,
  locator: Schema.String,
  uploadId: Schema.optional(Schema.String),
  why: Schema.String
}) {}

/** A failed call is about to be retried. */
export class RetryAttempted extends Schema.TaggedClass<RetryAttempted>()("RetryAttempted", {
  ...common,
  method: Schema.String,
  attempt: Schema.Number,
  reason: ErrorReason
}) {}

/** A call failed for good (after any retries). */
export class OperationFailed extends Schema.TaggedClass<OperationFailed>()("OperationFailed", {
  ...common,
  method: Schema.String,
  reason: ErrorReason,
  description: Schema.String
}) {}

/** Every structured result a backend or the runtime publishes. */
export const BackendEvent = Schema.Union(
  ObjectWritten,
  ObjectDeleted,
  ObjectCopied,
  BlobStored,
  BlobDeleted,
  UploadAborted,
  RetryAttempted,
  OperationFailed
)
export type BackendEvent = typeof BackendEvent.Type

/** A bus of backend results, so that replication and audit layers can observe them. */
export class BackendEvents extends Context.Tag("graviton/BackendEvents")<BackendEvents, {
  /** Publishes to every current subscriber; never blocks the publisher for long, never fails. */
  readonly publish: (event: BackendEvent) => Effect.Effect<void>
  /** Subscribes now (events published after this returns are seen) and streams them until the scope closes. */
  readonly subscribe: Effect.Effect<Stream.Stream<BackendEvent>, never, Scope.Scope>
}>() {}
