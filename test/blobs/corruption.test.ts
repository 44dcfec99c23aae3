/**
 * Reads verify: bytes that no longer match their key fail with Corrupted,
 * whether they were changed through the object store, on disk, truncated,
 * or lost; unreadable metadata is Corrupted too, never a defect.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as NFS from "node:fs"
import * as Path from "node:path"
import type * as BinaryKey from "../../src/core/BinaryKey.js"
import * as BlobLocator from "../../src/core/BlobLocator.js"
import { BlobStore } from "../../src/ports/BlobStore.js"
import { KeyValueStore } from "../../src/ports/KeyValueStore.js"
import * as MemoryLayers from "../../src/backends/memory/MemoryLayers.js"
import * as MemoryObjectStore from "../../src/backends/memory/MemoryObjectStore.js"
import * as CasBlobStore from "../../src/blobs/CasBlobStore.js"
import * as Events from "../../src/kit/Events.js"
import * as Metrics from "../../src/kit/Metrics.js"
import { ImmutableObjectStore, MutableObjectStore, type MutableObjectStoreShape } from "../../src/ports/ObjectStore.js"
import { chunked, collect, KiB, randomBytes, sameBytes } from "../../src/testing/bytes.js"
import { embedded, kvEntries, memory, smallBlocks, tempDir } from "./fixtures.js"

const put = (bytes: Uint8Array) => Effect.flatMap(BlobStore, (store) => Stream.run(chunked(bytes), store.put()))

/** Replaces the object at `locator` with `bytes`, through the object store (behind the blob store's back). */
const overwrite = (locator: BlobLocator.BlobLocator, bytes: Uint8Array) =>
  Effect.flatMap(MutableObjectStore, (objects) => Stream.run(Stream.make(bytes), objects.put(locator)))

const flipped = (bytes: Uint8Array, at: number) => {
  const copy = bytes.slice()
  copy[at] = copy[at]! ^ 0x01
  return copy
}

/** Runs a read to its end: what it emitted before failing, and the failure. */
const readUntilFailure = (key: BinaryKey.BinaryKey, range?: { start: number; end: number }) =>
  Effect.gen(function*() {
    const store = yield* BlobStore
    let emitted = 0
    const error = yield* Effect.flip(
      Stream.runForEach(store.get(key, range), (c) => Effect.sync(() => (emitted += c.length)))
    )
    return { error, emitted }
  })

describe("CasBlobStore corruption", () => {
  it.live("monolithic: a flipped byte fails the full read with Corrupted, after emitting the bytes before it", () =>
    Effect.gen(function*() {
      const store = yield* BlobStore
      const bytes = randomBytes(200 * KiB, 1)
      const { key, locator } = yield* put(bytes)
      yield* overwrite(locator, flipped(bytes, 150 * KiB))
      const { emitted, error } = yield* readUntilFailure(key)
      expect(error.reason).toBe("Corrupted")
      expect(error.message).toContain(String(key))
      expect(emitted).toBe(bytes.length)
      // The explicit full range is a full read too.
      expect((yield* readUntilFailure(key, { start: 0, end: bytes.length })).error.reason).toBe("Corrupted")
      // A ranged read cannot be checked against the key: it returns what is stored (documented).
      const part = yield* collect(store.get(key, { start: 150 * KiB, end: 150 * KiB + 2 }))
      expect(sameBytes(part, flipped(bytes, 150 * KiB).subarray(150 * KiB, 150 * KiB + 2))).toBe(true)
      // The blob is still listed; only its bytes are bad.
      expect(Option.isSome(yield* store.stat(key))).toBe(true)
    }).pipe(Effect.provide(memory())))

  it.live("monolithic: a truncated object fails full and ranged reads with Corrupted; a lost one too", () =>
    Effect.gen(function*() {
      const store = yield* BlobStore
      const objects = yield* MutableObjectStore
      const bytes = randomBytes(100 * KiB, 2)
      const { key, locator } = yield* put(bytes)
      yield* overwrite(locator, bytes.subarray(0, 60 * KiB))
      expect((yield* readUntilFailure(key)).error.reason).toBe("Corrupted")
      // The range is valid for the recorded size but runs past the stored bytes.
      expect((yield* readUntilFailure(key, { start: 50 * KiB, end: 70 * KiB })).error.reason).toBe("Corrupted")
      expect((yield* readUntilFailure(key, { start: 80 * KiB, end: 90 * KiB })).error.reason).toBe("Corrupted")
      yield* objects.delete(locator)
      const lost = yield* readUntilFailure(key)
      expect(lost.error.reason).toBe("Corrupted")
      expect(lost.error.message).toContain("missing")
      // Deleting the blob still works, and then the key is simply absent.
      yield* store.delete(key)
      expect((yield* readUntilFailure(key)).error.reason).toBe("NotFound")
    }).pipe(Effect.provide(memory())))

  it.live("chunked: a flipped byte in one block fails full reads and the ranged reads that touch it, before its bytes", () =>
    Effect.gen(function*() {
      const store = yield* BlobStore
      const bytes = randomBytes(400 * KiB, 3)
      const { key } = yield* put(bytes)
      const manifest = (yield* kvEntries("blobs/"))[0]![1] as { blockBase: string; blocks: ReadonlyArray<[number, string]> }
      expect(manifest.blocks.length).toBeGreaterThan(4)
      // Corrupt the third block.
      const offsets = manifest.blocks.reduce<Array<number>>((acc, [size]) => [...acc, (acc.at(-1) ?? 0) + size], [0])
      const [size, digest] = manifest.blocks[2]!
      const blockStart = offsets[2]!
      const blockLocator = Either.getOrThrow(BlobLocator.parse(`${manifest.blockBase}sha256/${digest.slice(0, 2)}/${digest}`))
      yield* overwrite(blockLocator, flipped(bytes.subarray(blockStart, blockStart + size), 10))

      const full = yield* readUntilFailure(key)
      expect(full.error.reason).toBe("Corrupted")
      // A range inside the bad block fails before emitting anything of it.
      const inside = yield* readUntilFailure(key, { start: blockStart + 5, end: blockStart + 20 })
      expect([inside.error.reason, inside.emitted]).toEqual(["Corrupted", 0])
      // A range starting in a good block emits that block's part, then fails.
      const across = yield* readUntilFailure(key, { start: offsets[1]!, end: blockStart + 1 })
      expect([across.error.reason, across.emitted]).toEqual(["Corrupted", offsets[2]! - offsets[1]!])
      // Ranges that avoid the bad block are fine (each block they touch is verified).
      const after = yield* collect(store.get(key, { start: offsets[3]!, end: bytes.length }))
      expect(sameBytes(after, bytes.subarray(offsets[3]!))).toBe(true)
      const before = yield* collect(store.get(key, { start: 1, end: blockStart }))
      expect(sameBytes(before, bytes.subarray(1, blockStart))).toBe(true)
    }).pipe(Effect.provide(memory({ layout: smallBlocks }))))

  // Issue #15: a block read is capped at the recorded block size (it is held whole until verified).
  it.live("chunked: a block object replaced by a far longer one stops being read at its first extra byte: Corrupted, not loaded whole", () => {
    let pulled = 0
    // The in-memory object store, counting the bytes the CAS pulls from its reads.
    const counting = Layer.effectContext(Effect.map(MemoryObjectStore.make, (store) => {
      const shape: MutableObjectStoreShape = {
        ...store,
        get: (locator, range) => Stream.tap(store.get(locator, range), (c) => Effect.sync(() => (pulled += c.length)))
      }
      return Context.make(MutableObjectStore, shape).pipe(Context.add(ImmutableObjectStore, shape))
    }))
    const layer = CasBlobStore.layer({ layout: smallBlocks }).pipe(
      Layer.provideMerge(Layer.merge(counting, MemoryLayers.metadata)),
      Layer.provideMerge(Layer.merge(Metrics.layer, Events.layer))
    )
    return Effect.gen(function*() {
      const bytes = randomBytes(400 * KiB, 6)
      const { key } = yield* put(bytes)
      const manifest = (yield* kvEntries("blobs/"))[0]![1] as { blockBase: string; blocks: ReadonlyArray<[number, string]> }
      const offsets = manifest.blocks.reduce<Array<number>>((acc, [size]) => [...acc, (acc.at(-1) ?? 0) + size], [0])
      const [size, digest] = manifest.blocks[2]!
      const blockLocator = Either.getOrThrow(BlobLocator.parse(`${manifest.blockBase}sha256/${digest.slice(0, 2)}/${digest}`))
      // The block's own bytes, then 32 MiB more, in 64 KiB pieces.
      const longer = Stream.concat(
        Stream.make(bytes.subarray(offsets[2]!, offsets[2]! + size)),
        Stream.repeatValue(new Uint8Array(64 * KiB)).pipe(Stream.take(512))
      )
      yield* Effect.flatMap(MutableObjectStore, (objects) => Stream.run(longer, objects.put(blockLocator)))
      pulled = 0
      const inside = yield* readUntilFailure(key, { start: offsets[2]! + 5, end: offsets[2]! + 20 })
      expect([inside.error.reason, inside.emitted]).toEqual(["Corrupted", 0])
      expect(inside.error.message).toContain("more than")
      // The block and at most one read piece beyond it (the memory store reads 256 KiB at a time), not the 32 MiB.
      expect(pulled).toBeLessThanOrEqual(size + 256 * KiB)
    }).pipe(Effect.provide(layer))
  })

  it.live("fs + LevelDB: a byte flipped in the file on disk fails the read with Corrupted", () => {
    const home = tempDir("cas-corrupt-")
    return Effect.gen(function*() {
      const bytes = randomBytes(300 * KiB, 4)
      const { key, locator } = yield* put(bytes)
      const file = Path.join(home, "blobs", locator.bucket, ...locator.path.split("/"))
      expect(Array.from(NFS.readFileSync(file).subarray(0, 4))).toEqual(Array.from(bytes.subarray(0, 4)))
      const fd = NFS.openSync(file, "r+")
      const one = Buffer.alloc(1)
      NFS.readSync(fd, one, 0, 1, 1234)
      one[0] = one[0]! ^ 0x80
      NFS.writeSync(fd, one, 0, 1, 1234)
      NFS.closeSync(fd)
      const { error } = yield* readUntilFailure(key)
      expect(error.reason).toBe("Corrupted")
      expect(error.backend).toBe("cas")
      // Storing the same content again does not repair it silently: the record says it is there.
      expect((yield* put(bytes)).deduplicated).toBe(true)
    }).pipe(Effect.provide(embedded(home)))
  })

  it.live("fs + LevelDB, chunked: a byte flipped in a block file fails the read with Corrupted", () => {
    const home = tempDir("cas-corrupt-chunked-")
    return Effect.gen(function*() {
      const bytes = randomBytes(300 * KiB, 5)
      const { key } = yield* put(bytes)
      const blockDir = Path.join(home, "blobs", "blobs", "blocks", "sha256")
      const files = NFS.readdirSync(blockDir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile())
      expect(files.length).toBeGreaterThan(3)
      const file = Path.join(files[1]!.parentPath, files[1]!.name)
      const content = NFS.readFileSync(file)
      content[0] = content[0]! ^ 0xff
      NFS.writeFileSync(file, content)
      expect((yield* readUntilFailure(key)).error.reason).toBe("Corrupted")
    }).pipe(Effect.provide(embedded(home, { layout: smallBlocks })))
  })

  it.live("an unreadable metadata record fails stat, get, delete and list with Corrupted", () =>
    Effect.gen(function*() {
      const store = yield* BlobStore
      const kv = yield* KeyValueStore
      const { key } = yield* put(randomBytes(10 * KiB, 6))
      yield* kv.put(`blobs/${key}`, new TextEncoder().encode("{\"v\":1,\"state\":\"live\""))
      expect((yield* Effect.flip(store.stat(key))).reason).toBe("Corrupted")
      expect((yield* readUntilFailure(key)).error.reason).toBe("Corrupted")
      expect((yield* Effect.flip(store.delete(key))).reason).toBe("Corrupted")
      expect((yield* Effect.flip(Stream.runDrain(store.list))).reason).toBe("Corrupted")
      const recordOf = (k: BinaryKey.BinaryKey) =>
        Effect.map(Stream.runCollect(kv.list(`blobs/${k}`)), (c) => Chunk.unsafeHead(c)[1])
      // A record that parses but describes content of another size is caught when read.
      const longer = yield* put(randomBytes(11 * KiB, 7))
      yield* kv.put(`blobs/${key}`, yield* recordOf(longer.key))
      expect((yield* Effect.flip(store.stat(key))).message).toContain("not sha256:")
      // One of the same size pointing at other bytes is caught by the hash of a full read.
      const sameSize = yield* put(randomBytes(10 * KiB, 8))
      yield* kv.put(`blobs/${key}`, yield* recordOf(sameSize.key))
      expect((yield* readUntilFailure(key)).error.reason).toBe("Corrupted")
    }).pipe(Effect.provide(memory())))
})
