import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import type * as Sink from "effect/Sink"
import type * as Stream from "effect/Stream"
import type { BinaryKey } from "../core/BinaryKey.js"
import type { BlobError } from "../core/Errors.js"
import type { BlobStat, BlobWritePlan, BlobWriteResult } from "../core/Models.js"
import type { ByteRange } from "../core/RangeSet.js"

/** Content-addressed blob storage: bytes in, key out; key in, verified bytes out. */
export class BlobStore extends Context.Tag("graviton/BlobStore")<BlobStore, {
  /** Streams content in; the result names its key. Same content twice is stored once (`deduplicated: true`). */
  readonly put: (plan?: BlobWritePlan) => Sink.Sink<BlobWriteResult, Uint8Array, never, BlobError>
  /** Streams the content of `key` (or a range of it); missing key fails with NotFound, bad range with InvalidInput. */
  readonly get: (key: BinaryKey, range?: ByteRange) => Stream.Stream<Uint8Array, BlobError>
  /** Stat of a stored blob; None when absent. */
  readonly stat: (key: BinaryKey) => Effect.Effect<Option.Option<BlobStat>, BlobError>
  /** Removes the blob; deleting a missing key succeeds. */
  readonly delete: (key: BinaryKey) => Effect.Effect<void, BlobError>
  /** Streams every stored blob's stat, in no guaranteed order. */
  readonly list: Stream.Stream<BlobStat, BlobError>
}>() {}
