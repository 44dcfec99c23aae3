import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Sink from "effect/Sink"
import * as Stream from "effect/Stream"
import type { BlobLocator, LocatorPrefix } from "../core/BlobLocator.js"
import type { ObjectStoreError } from "../core/Errors.js"
import type { ObjectStat, PutOptions } from "../core/Models.js"
import type { ByteRange } from "../core/RangeSet.js"
import type { ObjectStoreCapabilities } from "./ObjectStoreCapabilities.js"

export type { ObjectStoreCapabilities, ObjectStoreFeature, ServerSideEncryption } from "./ObjectStoreCapabilities.js"

/** Read side of an object store. */
export interface ImmutableObjectStoreShape {
  /** What this store can do (a plain value, fixed when the store is built); see ObjectStoreCapabilities. */
  readonly capabilities: ObjectStoreCapabilities
  /** Size and metadata of the object; None when absent. */
  readonly head: (locator: BlobLocator) => Effect.Effect<Option.Option<ObjectStat>, ObjectStoreError>
  /** Streams every object whose path starts with the prefix, in UTF-8 byte order of path, without loading the listing. */
  readonly list: (prefix: LocatorPrefix) => Stream.Stream<ObjectStat, ObjectStoreError>
  /** Streams the bytes (or a range, see ByteRange, where `capabilities.rangedRead`); missing → NotFound, bad range → InvalidInput. */
  readonly get: (locator: BlobLocator, range?: ByteRange) => Stream.Stream<Uint8Array, ObjectStoreError>
}

/** Read and write side of an object store. */
export interface MutableObjectStoreShape extends ImmutableObjectStoreShape {
  /** Sink that stores the stream at `locator`, replacing any object; visible only once the stream completes. */
  readonly put: (locator: BlobLocator, options?: PutOptions) => Sink.Sink<ObjectStat, Uint8Array, never, ObjectStoreError>
  /**
   * Stores `bytes` at `locator`: the same as `put` with a one-chunk stream, for content
   * already in memory (small objects, manifests), where running a stream costs more than
   * the write itself. `options.size`, when given, must equal `bytes.length`.
   */
  readonly write: (locator: BlobLocator, bytes: Uint8Array, options?: PutOptions) => Effect.Effect<ObjectStat, ObjectStoreError>
  /** Removes the object; deleting a missing object succeeds. */
  readonly delete: (locator: BlobLocator) => Effect.Effect<void, ObjectStoreError>
  /** Copies `source` to `destination` (replacing it) without streaming through the caller where the backend can; missing source → NotFound. */
  readonly copy: (source: BlobLocator, destination: BlobLocator) => Effect.Effect<ObjectStat, ObjectStoreError>
  /** Moves `source` to `destination` (rename where the backend can, else copy + delete); missing source → NotFound. */
  readonly move: (source: BlobLocator, destination: BlobLocator) => Effect.Effect<ObjectStat, ObjectStoreError>
}

/** `write` through a store's own `put`: for backends where one call has no cheaper path than the stream. */
export const writeThroughPut = (put: MutableObjectStoreShape["put"]): MutableObjectStoreShape["write"] =>
(locator, bytes, options) => Stream.run(Stream.succeed(bytes), put(locator, options))

/**
 * Bytes `range` of an object through any store: the store's own ranged read
 * where it declares `rangedRead`, else the whole object cut to the range
 * (right, but every byte before the range's end is transferred). The range
 * must already be checked against the object's size, as the CAS and the
 * uploads do; a short object ends the stream early.
 */
export const getRange = (
  store: ImmutableObjectStoreShape,
  locator: BlobLocator,
  range?: ByteRange
): Stream.Stream<Uint8Array, ObjectStoreError> => {
  if (range === undefined || store.capabilities.rangedRead) return store.get(locator, range)
  const { end, start } = range
  return store.get(locator).pipe(
    Stream.mapAccum(0, (from, bytes) => [from + bytes.length, [from, bytes] as const]),
    // Stops reading once past the range.
    Stream.takeWhile(([from]) => end === undefined || from < end),
    Stream.filterMap(([from, bytes]) => {
      const a = Math.max(0, start - from)
      const b = end === undefined ? bytes.length : Math.min(bytes.length, end - from)
      return a < b ? Option.some(a === 0 && b === bytes.length ? bytes : bytes.subarray(a, b)) : Option.none()
    })
  )
}

/** Objects addressed by locator that are only read (archives, replicas, CDNs). */
export class ImmutableObjectStore
  extends Context.Tag("graviton/ImmutableObjectStore")<ImmutableObjectStore, ImmutableObjectStoreShape>()
{}

/** Objects addressed by locator that can be written, deleted, copied and moved. */
export class MutableObjectStore
  extends Context.Tag("graviton/MutableObjectStore")<MutableObjectStore, MutableObjectStoreShape>()
{}
