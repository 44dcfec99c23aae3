import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type * as Stream from "effect/Stream"
import type { BinaryKey } from "../core/BinaryKey.js"
import type { BlobLocator } from "../core/BlobLocator.js"
import type { MetadataError } from "../core/Errors.js"

/**
 * Which locators hold a copy of each blob. Sets are returned sorted by
 * locator text, without duplicates. Every update is atomic.
 */
export class ReplicaIndex extends Context.Tag("graviton/ReplicaIndex")<ReplicaIndex, {
  /** The locators known to hold `key`; empty when none. */
  readonly replicas: (key: BinaryKey) => Effect.Effect<ReadonlyArray<BlobLocator>, MetadataError>
  /** Replaces the whole set atomically (an empty set forgets the key). */
  readonly update: (key: BinaryKey, locators: ReadonlyArray<BlobLocator>) => Effect.Effect<void, MetadataError>
  /** Adds one locator (idempotent) and returns the new set. */
  readonly add: (key: BinaryKey, locator: BlobLocator) => Effect.Effect<ReadonlyArray<BlobLocator>, MetadataError>
  /** Removes one locator (idempotent) and returns the new set. */
  readonly remove: (key: BinaryKey, locator: BlobLocator) => Effect.Effect<ReadonlyArray<BlobLocator>, MetadataError>
  /**
   * Optional: every set, as the key's text (`BinaryKey.render`) and its
   * locator texts, in UTF-8 byte order of the key, with bounded memory.
   * The lifecycle's `check` merges it with the records instead of asking
   * for each key (one query per block was most of its time); an index
   * without it is asked per key.
   */
  readonly list?: Stream.Stream<readonly [string, ReadonlyArray<string>], MetadataError>
}>() {}
