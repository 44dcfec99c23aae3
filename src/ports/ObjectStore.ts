import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
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

/** Objects addressed by locator that are only read (archives, replicas, CDNs). */
export class ImmutableObjectStore
  extends Context.Tag("graviton/ImmutableObjectStore")<ImmutableObjectStore, ImmutableObjectStoreShape>()
{}

/** Objects addressed by locator that can be written, deleted, copied and moved. */
export class MutableObjectStore
  extends Context.Tag("graviton/MutableObjectStore")<MutableObjectStore, MutableObjectStoreShape>()
{}
