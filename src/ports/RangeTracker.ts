import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type { MetadataError } from "../core/Errors.js"
import type { RangeSet, Span } from "../core/RangeSet.js"

/**
 * Landed byte ranges per upload (resumable uploads). `id` is any key text
 * accepted by core/KvKey (an upload id or a locator's text).
 */
export class RangeTracker extends Context.Tag("graviton/RangeTracker")<RangeTracker, {
  /** The normalized set of spans landed so far; empty for an unknown id. */
  readonly current: (id: string) => Effect.Effect<RangeSet, MetadataError>
  /** Atomically adds a span (overlaps and re-sent spans are harmless) and returns the new set. */
  readonly merge: (id: string, span: Span) => Effect.Effect<RangeSet, MetadataError>
  /** Forgets the upload's ranges; clearing an unknown id succeeds. */
  readonly clear: (id: string) => Effect.Effect<void, MetadataError>
}>() {}
