import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type { MetadataError } from "../core/Errors.js"

/**
 * A unit of work spanning ports of one backend: every port call made inside
 * `atomically` against that backend commits together or rolls back
 * together. Optional: a backend without transactions simply does not
 * provide it, and callers look it up with `Effect.serviceOption`.
 */
export class UnitOfWork extends Context.Tag("graviton/UnitOfWork")<UnitOfWork, {
  /** Runs `self` as one transaction (nested calls join it); a failure of `self`, or a failed commit (MetadataError), leaves none of its writes. */
  readonly atomically: <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | MetadataError, R>
}>() {}
