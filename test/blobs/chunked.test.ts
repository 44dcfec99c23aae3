/**
 * The chunked layout: content-defined blocks stored once each, shared
 * between blobs by reference count, manifests in the KV store, ranged reads
 * that fetch only the blocks they need.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as MemoryLayers from "../../src/backends/memory/MemoryLayers.js"
import * as MemoryObjectStore from "../../src/backends/memory/MemoryObjectStore.js"
import * as BlobLocator from "../../src/core/BlobLocator.js"
import * as Hashing from "../../src/core/Hashing.js"
import type * as RangeSet from "../../src/core/RangeSet.js"
import { BlobStore } from "../../src/ports/BlobStore.js"
import { KeyValueStore } from "../../src/ports/KeyValueStore.js"
import { MutableObjectStore } from "../../src/ports/ObjectStore.js"
import * as CasBlobStore from "../../src/blobs/CasBlobStore.js"
import * as Chunker from "../../src/blobs/Chunker.js"
import { chunked, collect, concat, KiB, MiB, randomBytes, sameBytes } from "../../src/testing/bytes.js"
import { kvEntries, memory, objectsUnder, smallBlocks, storedBytes } from "./fixtures.js"

const put = (bytes: Uint8Array) =>
  Effect.flatMap(BlobStore, (store) => Stream.run(chunked(bytes, { max: MiB }), store.put()))

interface BlockRecord {
  readonly refs: number
  readonly locator: string
}

const blockRecords = Effect.map(kvEntries("blocks/"), (entries) => new Map(entries.map(([k, v]) => [k, v as BlockRecord])))

/** Hashes a stream as it flows (the read itself verifies too; this checks the bytes are the expected ones). */
const digestOf = <E, R>(stream: Stream.Stream<Uint8Array, E, R>) => Hashing.hashStream("sha256", stream)

describe("CasBlobStore chunked layout", () => {
  it.live("two 64 MiB inputs differing by one byte inserted near the start share at least 90% of stored bytes", () =>
    Effect.gen(function*() {
      const store = yield* BlobStore
      const size = 64 * MiB
      const a = randomBytes(size, 2024)
      const b = concat([a.subarray(0, 4 * KiB), Uint8Array.of(0x5a), a.subarray(4 * KiB)])
      const first = yield* put(a)
      const afterA = yield* storedBytes()
      // Blocks are stored once: the object store holds about one copy of A (blocks only, no staging).
      expect(afterA).toBe(size)
      const second = yield* put(b)
      expect(second.deduplicated).toBe(false)
      const added = (yield* storedBytes()) - afterA
      const shared = 1 - added / b.length
      console.log(`chunked 64 MiB + 1 inserted byte: ${(added / KiB).toFixed(0)} KiB of new blocks, ${(shared * 100).toFixed(2)}% of the second input shared`)
      expect(shared).toBeGreaterThanOrEqual(0.9)
      // Both read back intact.
      expect(String(yield* digestOf(store.get(first.key)))).toBe(String(first.key))
      expect(String(yield* digestOf(store.get(second.key)))).toBe(String(second.key))
    }).pipe(Effect.provide(memory({ layout: CasBlobStore.chunked() }))), 120_000)

  it.live("the manifest lists the blocks in order with their sizes; stat reports the manifest locator", () =>
    Effect.gen(function*() {
      const store = yield* BlobStore
      const bytes = randomBytes(500 * KiB, 3)
      const { key, locator } = yield* Stream.run(chunked(bytes), store.put({ contentType: "application/x-test" }))
      const [[recordKey, record]] = (yield* kvEntries("blobs/")) as unknown as [[string, {
        layout: string
        blockBase: string
        contentType: string
        blocks: ReadonlyArray<[number, string]>
      }]]
      expect(recordKey).toBe(`blobs/${key}`)
      expect(record).toMatchObject({ state: "live", layout: "chunked", blockBase: "file://blobs/blocks/", contentType: "application/x-test" })
      const sizes = record.blocks.map(([size]) => size)
      expect(sizes.reduce((n, s) => n + s, 0)).toBe(bytes.length)
      for (const s of sizes.slice(0, -1)) {
        expect(s).toBeGreaterThanOrEqual(4 * KiB)
        expect(s).toBeLessThanOrEqual(64 * KiB)
      }
      // Each entry is the key of the bytes at its offset.
      let offset = 0
      for (const [size, digest] of record.blocks) {
        expect((yield* Hashing.hashBytes("sha256", bytes.subarray(offset, offset + size))).digest).toBe(digest)
        offset += size
      }
      expect(BlobLocator.render(locator)).toBe(`kv://blobs/${key}`)
      const stat = Option.getOrThrow(yield* store.stat(key))
      expect(Option.map(stat.locator, BlobLocator.render)).toEqual(Option.some(`kv://blobs/${key}`))
      // Blocks are objects under blocks/, at their content address.
      const objects = yield* objectsUnder()
      expect(objects).toHaveLength(new Set(record.blocks.map(([, d]) => d)).size)
      expect(objects.every((o) => o.locator.path.startsWith("blocks/sha256/"))).toBe(true)
    }).pipe(Effect.provide(memory({ layout: smallBlocks }))))

  it.live("blocks shared by two blobs survive the delete of one; the last delete removes them", () =>
    Effect.gen(function*() {
      const store = yield* BlobStore
      const common = randomBytes(300 * KiB, 4)
      const a = concat([common, randomBytes(100 * KiB, 5)])
      const b = concat([randomBytes(100 * KiB, 6), common])
      const ra = yield* put(a)
      const rb = yield* put(b)
      const records = yield* blockRecords
      const sharedBlocks = [...records.values()].filter((r) => r.refs === 2)
      expect(sharedBlocks.length).toBeGreaterThan(5)
      expect([...records.values()].every((r) => r.refs === 1 || r.refs === 2)).toBe(true)

      const manifestOf = (key: typeof ra.key) =>
        Effect.map(kvEntries(`blobs/${key}`), (entries) => (entries[0]![1] as { blocks: ReadonlyArray<[number, string]> }).blocks)
      const blockNames = (blocks: ReadonlyArray<[number, string]>) => blocks.map(([size, digest]) => `blocks/sha256:${digest}:${size}`)
      const blocksOfB = new Set(blockNames(yield* manifestOf(rb.key)))
      // Bytes of A in blocks B has too: what storing A again must not write.
      const manifestOfA = yield* manifestOf(ra.key)
      const sharedOfA = manifestOfA.filter((_, i) => blocksOfB.has(blockNames(manifestOfA)[i]!)).reduce((n, [size]) => n + size, 0)
      expect(sharedOfA).toBeGreaterThan(150 * KiB)
      yield* store.delete(ra.key)
      const afterDelete = yield* blockRecords
      // Exactly B's blocks remain (the shared ones among them), with one reference each, and their objects with them.
      expect([...afterDelete.keys()].sort()).toEqual([...blocksOfB].sort())
      for (const shared of sharedBlocks) expect([...afterDelete.values()].map((r) => r.locator)).toContain(shared.locator)
      expect([...afterDelete.values()].every((r) => r.refs === 1)).toBe(true)
      expect((yield* objectsUnder()).map((o) => BlobLocator.render(o.locator)).sort()).toEqual(
        [...afterDelete.values()].map((r) => r.locator).sort()
      )
      expect(sameBytes(yield* collect(store.get(rb.key)), b)).toBe(true)
      expect((yield* Effect.flip(Stream.runDrain(store.get(ra.key)))).reason).toBe("NotFound")

      // Storing A again references the surviving blocks instead of writing them.
      const before = yield* storedBytes()
      expect((yield* put(a)).deduplicated).toBe(false)
      expect((yield* storedBytes()) - before).toBe(a.length - sharedOfA)

      yield* store.delete(ra.key)
      yield* store.delete(rb.key)
      expect(yield* kvEntries("")).toEqual([])
      expect(yield* objectsUnder()).toEqual([])
    }).pipe(Effect.provide(memory({ layout: smallBlocks }))))

  it.live("a ranged read fetches only the blocks it overlaps", () => {
    const fetched: Array<string> = []
    // Counts the objects the store reads.
    const counting = Layer.effect(
      MutableObjectStore,
      Effect.map(MemoryObjectStore.make, (store) => ({
        ...store,
        get: (locator: BlobLocator.BlobLocator, range?: RangeSet.ByteRange) =>
          Stream.concat(Stream.execute(Effect.sync(() => fetched.push(locator.path))), store.get(locator, range))
      }))
    )
    return Effect.gen(function*() {
      const store = yield* BlobStore
      const bytes = randomBytes(MiB, 7)
      const { key } = yield* put(bytes)
      const blocks = (yield* kvEntries("blocks/")).length
      expect(blocks).toBeGreaterThan(20)

      fetched.length = 0
      const middle = 512 * KiB
      expect(sameBytes(yield* collect(store.get(key, { start: middle, end: middle + 10 })), bytes.subarray(middle, middle + 10)))
        .toBe(true)
      expect(fetched.length).toBeGreaterThanOrEqual(1)
      expect(fetched.length).toBeLessThanOrEqual(2)

      fetched.length = 0
      expect(sameBytes(yield* collect(store.get(key, { start: 100 * KiB, end: 300 * KiB })), bytes.subarray(100 * KiB, 300 * KiB)))
        .toBe(true)
      // 200 KiB spans at most 200/4 + 1 blocks of at least 4 KiB, and usually far fewer.
      expect(fetched.length).toBeLessThan(blocks / 2)

      fetched.length = 0
      expect((yield* collect(store.get(key, { start: 7, end: 7 }))).length).toBe(0)
      expect(fetched).toEqual([])

      // A full read fetches each block once, in order.
      fetched.length = 0
      expect(sameBytes(yield* collect(store.get(key)), bytes)).toBe(true)
      expect(fetched).toHaveLength(blocks)
    }).pipe(
      Effect.provide(
        CasBlobStore.layer({ layout: smallBlocks }).pipe(Layer.provideMerge(Layer.merge(counting, MemoryLayers.metadata)))
      )
    )
  })

  it.live("blobs stored with the previous chunker (gear32) still read and verify after the switch to fastcdc2020", () =>
    Effect.gen(function*() {
      const sizes = { min: 4 * KiB, avg: 16 * KiB, max: 64 * KiB }
      const kv = yield* KeyValueStore
      const before = yield* CasBlobStore.make({ layout: CasBlobStore.chunked({ ...sizes, chunker: "gear32" }) })
      const bytes = randomBytes(600 * KiB, 31)
      const stored = yield* Stream.run(chunked(bytes, { max: 64 * KiB, seed: 2 }), before.put())
      const recordKey = `blobs/${stored.key}`
      const record = JSON.parse(new TextDecoder().decode(Option.getOrThrow(yield* kv.get(recordKey)))) as {
        chunker?: string
        blocks: ReadonlyArray<[number, string]>
      }
      // The blocks are gear32's, and the manifest says so.
      expect(record.chunker).toBe("gear32")
      const gear32 = Either.getOrThrow(Chunker.make(sizes, { chunker: "gear32" }))
      const expected = [...gear32.push(bytes), gear32.flush()!].map((b) => b.length)
      expect(record.blocks.map(([size]) => size)).toEqual(expected)
      const fastcdc = Either.getOrThrow(Chunker.make(sizes))
      expect([...fastcdc.push(bytes), fastcdc.flush()!].map((b) => b.length)).not.toEqual(expected)
      // As the previous release wrote it: no chunker field.
      delete record.chunker
      yield* kv.put(recordKey, new TextEncoder().encode(JSON.stringify(record)))

      const after = yield* CasBlobStore.make({ layout: CasBlobStore.chunked(sizes) })
      expect(sameBytes(yield* collect(after.get(stored.key)), bytes)).toBe(true)
      // A ranged read verifies each block it touches against its key.
      expect(sameBytes(yield* collect(after.get(stored.key, { start: 100 * KiB, end: 400 * KiB })), bytes.subarray(100 * KiB, 400 * KiB)))
        .toBe(true)
      expect(Option.isSome(yield* after.stat(stored.key))).toBe(true)
      // The same content put again is found stored; new content is cut by fastcdc2020 and recorded so.
      expect((yield* Stream.run(chunked(bytes, { max: 64 * KiB }), after.put())).deduplicated).toBe(true)
      const other = randomBytes(300 * KiB, 32)
      const fresh = yield* Stream.run(chunked(other, { max: 64 * KiB }), after.put())
      const freshRecord = JSON.parse(new TextDecoder().decode(Option.getOrThrow(yield* kv.get(`blobs/${fresh.key}`)))) as {
        chunker?: string
        blocks: ReadonlyArray<[number, string]>
      }
      expect(freshRecord.chunker).toBe("fastcdc2020")
      const cut = Either.getOrThrow(Chunker.make(sizes))
      expect(freshRecord.blocks.map(([size]) => size)).toEqual([...cut.push(other), cut.flush()!].map((b) => b.length))
      // Both delete cleanly, the old blob's blocks included.
      yield* after.delete(stored.key)
      yield* after.delete(fresh.key)
      expect(yield* kvEntries("")).toEqual([])
      expect(yield* objectsUnder()).toEqual([])
    }).pipe(Effect.provide(memory())))

  it("layout sizes: defaults, and missing bounds derived from avg", () => {
    expect(CasBlobStore.chunked()).toEqual({ _tag: "Chunked", min: 128 * KiB, avg: 512 * KiB, max: 2 * MiB, chunker: "fastcdc2020" })
    expect(CasBlobStore.chunked({ avg: 64 * KiB })).toEqual({ _tag: "Chunked", min: 16 * KiB, avg: 64 * KiB, max: 256 * KiB, chunker: "fastcdc2020" })
    expect(CasBlobStore.chunked({ min: 8 * KiB, avg: 16 * KiB, max: 32 * KiB, chunker: "gear32" })).toEqual({
      _tag: "Chunked",
      min: 8 * KiB,
      avg: 16 * KiB,
      max: 32 * KiB,
      chunker: "gear32"
    })
  })

  it.live("the empty blob has an empty manifest and no block", () =>
    Effect.gen(function*() {
      const store = yield* BlobStore
      const { key } = yield* Stream.run(Stream.empty, store.put())
      expect(key.size).toBe(0)
      expect(yield* objectsUnder()).toEqual([])
      expect((yield* kvEntries("blobs/"))[0]![1]).toMatchObject({ layout: "chunked", blocks: [] })
      expect((yield* collect(store.get(key))).length).toBe(0)
      yield* store.delete(key)
      expect(yield* kvEntries("")).toEqual([])
    }).pipe(Effect.provide(memory({ layout: smallBlocks }))))
})
