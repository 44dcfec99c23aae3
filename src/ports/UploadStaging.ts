/**
 * Where a resumable upload (uploads/Uploads) keeps the spans it has
 * received. The default keeps each segment as an object in a
 * MutableObjectStore; a backend with a native mechanism provides this tag
 * instead (S3: the parts of one multipart upload, listable after a
 * restart). Every method must be safe to repeat, and every piece of state
 * lives in the backend: a new process resumes what a killed one started.
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import type * as Stream from "effect/Stream"
import type { BinaryKey } from "../core/BinaryKey.js"
import type { BlobError } from "../core/Errors.js"
import type { BlobWritePlan, BlobWriteResult } from "../core/Models.js"
import type { RangeSet, Span } from "../core/RangeSet.js"

/** What the staging knows about one upload, as recorded by `begin` (opaque to Uploads). */
export type StagingState = string

/**
 * Keys the writing process computed from the bytes as they were written:
 * the whole content's, and each segment's when the staging asked for them
 * (`segmentKeys`). A staging may use them to skip reading the content again;
 * it must ignore them when its segments are not exactly these.
 */
export interface CompleteHint {
  readonly key: BinaryKey
  readonly segments: ReadonlyArray<{ readonly span: Span; readonly key?: BinaryKey | undefined }>
}

/** See the module comment. */
export class UploadStaging extends Context.Tag("graviton/UploadStaging")<UploadStaging, {
  /** A short name for status output and errors ("objects", "s3-multipart"). */
  readonly name: string
  /**
   * Size of segments: Uploads cuts every write at absolute offsets that are
   * multiples of it and hands each piece to `writeSegment` on its own.
   */
  readonly segmentSize: number
  /**
   * Whether `complete` uses each segment's own key (CompleteHint): hashing
   * every segment costs a second pass over the bytes, paid only when asked.
   */
  readonly segmentKeys: boolean
  /** Prepares a new upload (e.g. creates the multipart upload); the state is kept in the upload record. */
  readonly begin: (id: string, size: number | undefined) => Effect.Effect<StagingState, BlobError>
  /**
   * Stores `bytes` as the bytes starting at `start` and returns the span
   * they covered (None for an empty stream). The stream never crosses a
   * multiple of `segmentSize` and may end before the next one. Durable when
   * it succeeds; an interrupted or failed call leaves nothing that `landed`
   * or `complete` would use. Writing the same span again replaces it.
   * `size` is the upload's total size, when declared.
   */
  readonly writeSegment: (
    id: string,
    state: StagingState,
    start: number,
    bytes: Stream.Stream<Uint8Array, BlobError>,
    size: number | undefined
  ) => Effect.Effect<Option.Option<Span>, BlobError>
  /** Spans the staging itself can prove it holds (e.g. from ListParts), merged with the RangeTracker's. */
  readonly landed: (id: string, state: StagingState) => Effect.Effect<RangeSet, BlobError>
  /**
   * Moves the content `[0, size)`, whose spans have all landed, into the
   * BlobStore under the plan (expected key verified there) and removes the
   * staged data. On an expected-key mismatch nothing is stored.
   *
   * `onKey`, when the staging knows the content's key before it adopts
   * anything, is called with it first and must succeed: Uploads records it,
   * so that a `complete` retried after a crash that came after the adoption
   * (the staged data gone, the blob stored) can still answer.
   */
  readonly complete: (
    id: string,
    state: StagingState,
    size: number,
    plan: BlobWritePlan,
    hint?: CompleteHint,
    onKey?: (key: BinaryKey) => Effect.Effect<void, BlobError>
  ) => Effect.Effect<BlobWriteResult, BlobError>
  /** Removes everything staged for the upload; aborting an unknown or finished upload succeeds. */
  readonly abort: (id: string, state: StagingState) => Effect.Effect<void, BlobError>
}>() {}
