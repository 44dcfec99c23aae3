/**
 * A put of content whose stored bytes are missing or damaged stores them
 * again and says so (`repaired`), issue #16 item 3: before, it answered
 * "deduplicated" and the blob stayed unreadable. `heal: "size"` (the
 * default) looks with one head per object found; `heal: "verify"` also
 * reads it back; `heal: "off"` trusts the record.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Stream from "effect/Stream"
import * as NFS from "node:fs"
import * as Path from "node:path"
import * as BlobLocator from "../../src/core/BlobLocator.js"
import { BlobStore } from "../../src/ports/BlobStore.js"
import { MutableObjectStore } from "../../src/ports/ObjectStore.js"
import { chunked, collect, KiB, randomBytes, sameBytes } from "../../src/testing/bytes.js"
import { recordFault } from "../harness/reliability.js"
import { embedded, kvEntries, memory, smallBlocks, tempDir } from "./fixtures.js"

const put = (bytes: Uint8Array) => Effect.flatMap(BlobStore, (store) => Stream.run(chunked(bytes), store.put()))

const overwrite = (locator: BlobLocator.BlobLocator, bytes: Uint8Array) =>
  Effect.flatMap(MutableObjectStore, (objects) => Stream.run(Stream.make(bytes), objects.put(locator)))

const flipped = (bytes: Uint8Array, at: number) => {
  const copy = bytes.slice()
  copy[at] = copy[at]! ^ 0x01
  return copy
}

/** The whole blob reads back as `bytes` (verified by the store's full read). */
const readsBack = (bytes: Uint8Array) =>
  Effect.flatMap(BlobStore, (store) =>
    Effect.map(Effect.flatMap(put(bytes), (r) => collect(store.get(r.key))), (got) => sameBytes(got, bytes)))

describe("CasBlobStore: a put heals missing or damaged bytes", () => {
  it.live("monolithic: a deleted object and a truncated one are stored again (repaired, not deduplicated)", () =>
    Effect.gen(function*() {
      const objects = yield* MutableObjectStore
      const bytes = randomBytes(100 * KiB, 1)
      const first = yield* put(bytes)
      expect(first.repaired).toBeUndefined()
      expect((yield* put(bytes)).deduplicated).toBe(true)
      yield* objects.delete(first.locator)
      const healed = yield* put(bytes)
      expect([healed.deduplicated, healed.repaired]).toEqual([false, true])
      expect(yield* readsBack(bytes)).toBe(true)
      yield* overwrite(first.locator, bytes.subarray(0, 10))
      const again = yield* put(bytes)
      expect(again.repaired).toBe(true)
      expect(yield* readsBack(bytes)).toBe(true)
      // Healthy again: the next put is a plain dedup.
      const plain = yield* put(bytes)
      expect([plain.deduplicated, plain.repaired]).toEqual([true, undefined])
      recordFault({
        area: "cas",
        fault: "a blob's object deleted, then truncated, behind the store's back",
        expected: "putting the content again re-stores it and reports repaired",
        observed: `repaired=${healed.repaired} then ${again.repaired}; blob readable`
      })
    }).pipe(Effect.provide(memory())))

  it.live("monolithic: a flipped byte of the same size is found by heal: \"verify\", not by the default size check", () =>
    Effect.gen(function*() {
      const bytes = randomBytes(64 * KiB, 2)
      const { locator } = yield* put(bytes)
      yield* overwrite(locator, flipped(bytes, 100))
      const healed = yield* put(bytes)
      expect(healed.repaired).toBe(true)
      expect(yield* readsBack(bytes)).toBe(true)
    }).pipe(Effect.provide(memory({ heal: "verify" }))))

  it.live("the default (size) does not see a flipped byte of the same size (documented)", () =>
    Effect.gen(function*() {
      const bytes = randomBytes(64 * KiB, 3)
      const { locator } = yield* put(bytes)
      yield* overwrite(locator, flipped(bytes, 100))
      expect((yield* put(bytes)).deduplicated).toBe(true)
    }).pipe(Effect.provide(memory())))

  it.live("heal: \"off\" keeps answering deduplicated for a missing object", () =>
    Effect.gen(function*() {
      const objects = yield* MutableObjectStore
      const bytes = randomBytes(64 * KiB, 4)
      const { locator } = yield* put(bytes)
      yield* objects.delete(locator)
      expect((yield* put(bytes)).deduplicated).toBe(true)
    }).pipe(Effect.provide(memory({ heal: "off" }))))

  it.live("chunked: a deleted block is stored again by the next put of the content", () =>
    Effect.gen(function*() {
      const objects = yield* MutableObjectStore
      const bytes = randomBytes(300 * KiB, 5)
      yield* put(bytes)
      const manifest = (yield* kvEntries("blobs/"))[0]![1] as { blockBase: string; blocks: ReadonlyArray<[number, string]> }
      const [, digest] = manifest.blocks[1]!
      yield* objects.delete(Either.getOrThrow(BlobLocator.parse(`${manifest.blockBase}sha256/${digest.slice(0, 2)}/${digest}`)))
      const healed = yield* put(bytes)
      expect([healed.deduplicated, healed.repaired]).toEqual([false, true])
      expect(yield* readsBack(bytes)).toBe(true)
    }).pipe(Effect.provide(memory({ layout: smallBlocks }))))

  it.live("fs + LevelDB: a blob file removed on disk is re-created by a put", () => {
    const home = tempDir("cas-heal-")
    return Effect.gen(function*() {
      const bytes = randomBytes(200 * KiB, 6)
      const { locator } = yield* put(bytes)
      const file = Path.join(home, "blobs", locator.bucket, ...locator.path.split("/"))
      NFS.rmSync(file)
      expect((yield* put(bytes)).repaired).toBe(true)
      expect(NFS.existsSync(file)).toBe(true)
      expect(yield* readsBack(bytes)).toBe(true)
    }).pipe(Effect.provide(embedded(home)))
  })
})
