/**
 * Deduplication: the same content is stored once, whatever the number of
 * puts, their concurrency or the layout; metrics and events report it.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as BinaryKey from "../../src/core/BinaryKey.js"
import * as BlobLocator from "../../src/core/BlobLocator.js"
import { BackendEvents } from "../../src/ports/BackendEvents.js"
import { BlobStore } from "../../src/ports/BlobStore.js"
import { MetricsRegistry } from "../../src/ports/MetricsRegistry.js"
import { ReplicaIndex } from "../../src/ports/ReplicaIndex.js"
import * as CasBlobStore from "../../src/blobs/CasBlobStore.js"
import { chunked, collect, KiB, MiB, randomBytes, sameBytes } from "../../src/testing/bytes.js"
import { embedded, type Env, kvEntries, memory, objectsUnder, smallBlocks, tempDir } from "./fixtures.js"

const put = (bytes: Uint8Array, seed = 1) =>
  Effect.flatMap(BlobStore, (store) => Stream.run(chunked(bytes, { seed }), store.put()))

/** 20 concurrent puts of the same 5 MiB: one stored object, one record, one replica entry. */
const twentyConcurrentPuts = Effect.gen(function*() {
  const store = yield* BlobStore
  const bytes = randomBytes(5 * MiB, 77)
  const results = yield* Effect.forEach(Array.from({ length: 20 }, (_, i) => i), (i) => put(bytes, i + 1), {
    concurrency: "unbounded"
  })
  const key = results[0]!.key
  expect(new Set(results.map((r) => String(r.key))).size).toBe(1)
  expect(results.filter((r) => !r.deduplicated)).toHaveLength(1)
  const address = `file://blobs/sha256/${key.digest.slice(0, 2)}/${key.digest}`
  expect(new Set(results.map((r) => BlobLocator.render(r.locator)))).toEqual(new Set([address]))
  // Exactly one object holds the bytes; no staging object is left.
  const objects = yield* objectsUnder()
  expect(objects.map((o) => [BlobLocator.render(o.locator), o.size])).toEqual([[address, bytes.length]])
  const records = yield* kvEntries("blobs/")
  expect(records).toHaveLength(1)
  expect(records[0]![0]).toBe(`blobs/${key}`)
  expect(records[0]![1]).toMatchObject({ state: "live", layout: "monolithic", locator: address, size: bytes.length })
  expect((yield* (yield* ReplicaIndex).replicas(key)).map(BlobLocator.render)).toEqual([address])
  expect(sameBytes(yield* collect(store.get(key)), bytes)).toBe(true)
})

describe("CasBlobStore dedup", () => {
  it.live("the same content twice: one object, the second put deduplicated, metrics and events say so", () =>
    Effect.gen(function*() {
      const events = yield* Effect.flatMap(BackendEvents, (bus) => bus.subscribe)
      const collected = yield* Effect.fork(Stream.runCollect(
        events.pipe(Stream.filter((e) => e._tag === "BlobStored" || e._tag === "BlobDeleted"), Stream.take(3))
      ))
      const bytes = randomBytes(300 * KiB, 3)
      const first = yield* put(bytes, 1)
      const second = yield* put(bytes, 2)
      expect([first.deduplicated, second.deduplicated]).toEqual([false, true])
      expect(BlobLocator.render(second.locator)).toBe(BlobLocator.render(first.locator))
      expect((yield* objectsUnder()).map((o) => o.size)).toEqual([bytes.length])
      yield* Effect.flatMap(BlobStore, (store) => store.delete(first.key))
      // Deleting again changes nothing and is not announced.
      yield* Effect.flatMap(BlobStore, (store) => store.delete(first.key))
      const seen = Chunk.toReadonlyArray(yield* Fiber.join(collected))
      expect(seen.map((e) => [e._tag, "deduplicated" in e ? e.deduplicated : null, e.backend])).toEqual([
        ["BlobStored", false, "cas"],
        ["BlobStored", true, "cas"],
        ["BlobDeleted", null, "cas"]
      ])
      expect(seen[0]).toMatchObject({ key: String(first.key), size: bytes.length, locator: BlobLocator.render(first.locator) })
      const samples = yield* Effect.flatMap(MetricsRegistry, (m) => m.snapshot)
      const value = (name: string) => {
        const s = samples.find((x) => x.name === name && x.tags["backend"] === "cas")
        return s === undefined ? undefined : s._tag === "Histogram" ? s.count : s.value
      }
      expect(value("graviton_bytes_ingested")).toBe(2 * bytes.length)
      expect(value("graviton_blocks_ingested")).toBe(2)
      expect(value("graviton_dedup_hits_total")).toBe(1)
      expect(value("graviton_bytes_written_total")).toBe(bytes.length)
      expect(value("graviton_upload_duration_seconds")).toBe(2)
      expect(yield* objectsUnder()).toEqual([])
      expect(yield* kvEntries("")).toEqual([])
    }).pipe(Effect.scoped, Effect.provide(memory())))

  it.live("20 concurrent puts of the same 5 MiB over memory store it once", () =>
    twentyConcurrentPuts.pipe(Effect.provide(memory())))

  it.live("20 concurrent puts of the same 5 MiB over fs + LevelDB store it once", () =>
    twentyConcurrentPuts.pipe(Effect.provide(embedded(tempDir("cas-dedup-")))))

  it.live("content stored by one layout is deduplicated by the other (one record per key)", () =>
    Effect.gen(function*() {
      const mono = yield* CasBlobStore.make()
      const blocks = yield* CasBlobStore.make({ layout: smallBlocks })
      const a = randomBytes(200 * KiB, 4)
      const b = randomBytes(200 * KiB, 5)
      const ra = yield* Stream.run(chunked(a), mono.put())
      const rb = yield* Stream.run(chunked(b), blocks.put())
      expect((yield* Stream.run(chunked(a), blocks.put())).deduplicated).toBe(true)
      const again = yield* Stream.run(chunked(b), mono.put())
      expect(again.deduplicated).toBe(true)
      // A chunked blob is reported by its manifest.
      expect(BlobLocator.render(again.locator)).toBe(`kv://blobs/${rb.key}`)
      // Either store reads either layout.
      expect(sameBytes(yield* collect(blocks.get(ra.key)), a)).toBe(true)
      expect(sameBytes(yield* collect(mono.get(rb.key)), b)).toBe(true)
      expect(yield* objectsUnder("sha256/")).toHaveLength(1)
      expect((yield* kvEntries("blobs/")).map(([k]) => k).sort()).toEqual([`blobs/${ra.key}`, `blobs/${rb.key}`].sort())
    }).pipe(Effect.provide(memory() as Layer.Layer<Env>)))

  it.live("a blob repeating its own blocks holds one reference per distinct block", () =>
    Effect.gen(function*() {
      const store = yield* BlobStore
      const part = randomBytes(256 * KiB, 8)
      const bytes = new Uint8Array(3 * part.length)
      for (let i = 0; i < 3; i++) bytes.set(part, i * part.length)
      const { key } = yield* put(bytes)
      const manifest = (yield* kvEntries("blobs/"))[0]![1] as { blocks: ReadonlyArray<[number, string]> }
      const distinct = new Set(manifest.blocks.map(([, d]) => d))
      // Content-defined boundaries resynchronize inside each copy, so blocks repeat.
      expect(distinct.size).toBeLessThan(manifest.blocks.length)
      const blocks = yield* kvEntries("blocks/")
      expect(blocks).toHaveLength(distinct.size)
      expect(blocks.every(([, v]) => (v as { refs: number }).refs === 1)).toBe(true)
      expect((yield* objectsUnder("blocks/")).reduce((n, o) => n + o.size, 0)).toBeLessThan(bytes.length)
      expect(sameBytes(yield* collect(store.get(key)), bytes)).toBe(true)
      yield* store.delete(key)
      expect(yield* kvEntries("")).toEqual([])
      expect(yield* objectsUnder()).toEqual([])
      expect(Option.isNone(yield* store.stat(key))).toBe(true)
    }).pipe(Effect.provide(memory({ layout: smallBlocks }))))

  it.live("blake3 as the store's algorithm keys blobs and blocks with blake3", () =>
    Effect.gen(function*() {
      const bytes = randomBytes(100 * KiB, 6)
      const { key } = yield* put(bytes)
      expect(key.algorithm).toBe("blake3")
      expect((yield* kvEntries("blocks/")).every(([k]) => k.startsWith("blocks/blake3:"))).toBe(true)
      expect(BinaryKey.render(key)).toMatch(/^blake3:[0-9a-f]{64}:102400$/)
    }).pipe(Effect.provide(memory({ layout: smallBlocks, algorithm: "blake3" }))))
})
