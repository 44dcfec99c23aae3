/**
 * CasBlobStore reads what its object store declares: over a store without
 * ranged reads (a monolithic blob's range is cut from the whole object) and
 * without a rename, the BlobStore suite still passes; a monolithic blob
 * larger than the store's largest object is refused before any byte.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as BinaryKey from "../../src/core/BinaryKey.js"
import { BlobStore } from "../../src/ports/BlobStore.js"
import { chunked, collect, randomBytes, sameBytes } from "../../src/testing/bytes.js"
import { testBlobStore } from "../../src/testing/BlobStore.js"
import * as Hashing from "../../src/core/Hashing.js"
import { plain, type PlainCounts, smallBlocks } from "./fixtures.js"

const counts: PlainCounts = { moves: 0, rangedGets: 0 }
testBlobStore("cas over a store without rename nor ranged reads, monolithic", plain(counts))
testBlobStore("cas over a store without rename nor ranged reads, chunked", plain(counts, { layout: smallBlocks }))

const keyOf = (bytes: Uint8Array) =>
  Effect.map(Hashing.makeHasher("sha256"), (h) => {
    h.update(bytes)
    return h.key()
  })

describe("CasBlobStore and the object store's declaration", () => {
  it.effect("a ranged get of a monolithic blob never asks the store for a range it does not take", () => {
    const mine: PlainCounts = { moves: 0, rangedGets: 0 }
    return Effect.gen(function*() {
      const store = yield* BlobStore
      const bytes = randomBytes(200_000, 3)
      const { key } = yield* Stream.run(chunked(bytes), store.put())
      // The put moved its staging object to the content address: by copy and delete here.
      expect(mine.moves).toBe(1)
      const got = yield* collect(store.get(key, { start: 70_000, end: 130_001 }))
      expect(sameBytes(got, bytes.subarray(70_000, 130_001))).toBe(true)
      expect(mine.rangedGets).toBe(0)
    }).pipe(Effect.provide(plain(mine)))
  })

  it.effect("a monolithic put larger than the store's largest object fails before the first byte; chunked stores it", () => {
    // Blocks of at most 64 KiB fit the store; the whole blob does not.
    const bytes = randomBytes(200_000, 4)
    const largest = { maxObjectSize: 100_000 }
    return Effect.gen(function*() {
      const key = yield* keyOf(bytes)
      const mine: PlainCounts = { moves: 0, rangedGets: 0 }
      const [refused, after] = yield* Effect.flatMap(BlobStore, (store) =>
        Effect.zip(Effect.flip(Stream.run(chunked(bytes), store.put({ expectedKey: key }))), store.stat(key))).pipe(
          Effect.provide(plain(mine, {}, largest))
        )
      expect([Option.isNone(after), mine.moves]).toEqual([true, 0])
      expect([refused.reason, refused.message.includes("largest object")]).toEqual(["InvalidInput", true])
      const stored = yield* Effect.gen(function*() {
        const store = yield* BlobStore
        const result = yield* Stream.run(chunked(bytes), store.put({ expectedKey: key }))
        return [BinaryKey.render(result.key), Option.isSome(yield* store.stat(key))]
      }).pipe(Effect.provide(plain({ moves: 0, rangedGets: 0 }, { layout: smallBlocks }, largest)))
      expect(stored).toEqual([BinaryKey.render(key), true])
    })
  })
})
