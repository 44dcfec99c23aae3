import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as MemoryBlobStore from "../../../src/backends/memory/MemoryBlobStore.js"
import { BinaryKey } from "../../../src/core/BinaryKey.js"
import * as BlobLocator from "../../../src/core/BlobLocator.js"
import type { BlobWritePlan } from "../../../src/core/Models.js"
import { testBlobStore } from "../../../src/testing/BlobStore.js"
import { chunked, collect, KiB, MiB, randomBytes, sameBytes } from "../../../src/testing/bytes.js"

testBlobStore("memory", MemoryBlobStore.layer)

describe("MemoryBlobStore", () => {
  it.effect("a full read of bytes that no longer match their key fails with Corrupted", () =>
    Effect.gen(function*() {
      const { corrupt, store } = yield* MemoryBlobStore.makeInspectable
      const bytes = randomBytes(150 * KiB, 3)
      const { key } = yield* Stream.run(chunked(bytes), store.put())
      expect(yield* corrupt(key, 100 * KiB)).toBe(true)
      const error = yield* Effect.flip(Stream.runDrain(store.get(key)))
      expect(error.reason).toBe("Corrupted")
      // The same check on a full range given explicitly.
      expect((yield* Effect.flip(Stream.runDrain(store.get(key, { start: 0, end: key.size })))).reason).toBe("Corrupted")
      // A partial read cannot be verified against the key and returns the stored bytes.
      const part = yield* collect(store.get(key, { start: 0, end: 10 }))
      expect(sameBytes(part, bytes.subarray(0, 10))).toBe(true)
      expect(yield* corrupt(key, bytes.length)).toBe(false)
    }))

  it.effect("reports locators mem://blobs/<algo>/<hex>", () =>
    Effect.gen(function*() {
      const store = yield* MemoryBlobStore.make
      for (const algorithm of ["sha256", "blake3"] as const) {
        const result = yield* Stream.run(Stream.make(new TextEncoder().encode("hello")), store.put({ algorithm }))
        const expected = `mem://blobs/${algorithm}/${result.key.digest}`
        expect(BlobLocator.render(result.locator)).toBe(expected)
        const stat = Option.getOrThrow(yield* store.stat(result.key))
        expect(Option.map(stat.locator, BlobLocator.render)).toEqual(Option.some(expected))
        expect(Option.isSome(stat.createdAt)).toBe(true)
        // The locator is a valid one: it parses back to itself.
        expect(Option.map(Option.getRight(BlobLocator.parse(expected)), BlobLocator.render)).toEqual(Option.some(expected))
      }
    }))

  it.effect("keeps its own copy of the written chunks and hands out copies", () =>
    Effect.gen(function*() {
      const store = yield* MemoryBlobStore.make
      const source = randomBytes(10 * KiB, 9)
      const original = source.slice()
      const { key } = yield* Stream.run(Stream.make(source), store.put())
      source.fill(0)
      const read = yield* collect(store.get(key))
      expect(sameBytes(read, original)).toBe(true)
      const chunks = yield* Stream.runCollect(store.get(key))
      Chunk.unsafeGet(chunks, 0).fill(1)
      expect(sameBytes(yield* collect(store.get(key)), original)).toBe(true)
    }))

  it.effect("reads in chunks of at most 64 KiB whatever the chunks it was written in", () =>
    Effect.gen(function*() {
      const store = yield* MemoryBlobStore.make
      const bytes = randomBytes(MiB + 5, 11)
      const { key } = yield* Stream.run(Stream.make(bytes), store.put())
      const sizes = Chunk.toReadonlyArray(yield* Stream.runCollect(Stream.map(store.get(key), (c) => c.length)))
      expect(Math.max(...sizes)).toBeLessThanOrEqual(64 * KiB)
      expect(sizes.reduce((a, b) => a + b, 0)).toBe(bytes.length)
      const ranged = Chunk.toReadonlyArray(
        yield* Stream.runCollect(Stream.map(store.get(key, { start: 1, end: 200 * KiB }), (c) => c.length))
      )
      expect(Math.max(...ranged)).toBeLessThanOrEqual(64 * KiB)
      expect(ranged.reduce((a, b) => a + b, 0)).toBe(200 * KiB - 1)
    }))

  it.effect("an invalid plan fails with InvalidInput before reading the stream", () =>
    Effect.gen(function*() {
      const store = yield* MemoryBlobStore.make
      let pulled = false
      const watched = Stream.fromEffect(Effect.sync(() => {
        pulled = true
        return new Uint8Array(1)
      }))
      const blake3Key = new BinaryKey({ algorithm: "blake3", digest: "0".repeat(64), size: 1 })
      const plans: ReadonlyArray<BlobWritePlan> = [
        { maxSize: -1 },
        { maxSize: 1.5 },
        { algorithm: "md5" as "sha256" },
        // The plan and the expected key disagree on the algorithm.
        { algorithm: "sha256", expectedKey: blake3Key },
        // A key whose digest is not hex.
        { expectedKey: new BinaryKey({ algorithm: "sha256", digest: "z".repeat(64), size: 1 }, true) }
      ]
      for (const plan of plans) {
        const error = yield* Effect.flip(Stream.run(watched, store.put(plan)))
        expect(error.reason, JSON.stringify(plan)).toBe("InvalidInput")
      }
      expect(pulled).toBe(false)
    }))
})
