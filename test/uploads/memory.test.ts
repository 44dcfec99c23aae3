/**
 * The Uploads suite over in-memory ports: with CasBlobStore (segments adopted
 * as blocks through its BlobAssembly) and with the MemoryBlobStore fake
 * (no assembly: complete streams the segments into put).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as MemoryBlobStore from "../../src/backends/memory/MemoryBlobStore.js"
import * as MemoryLayers from "../../src/backends/memory/MemoryLayers.js"
import * as MemoryObjectStore from "../../src/backends/memory/MemoryObjectStore.js"
import * as BlobLocator from "../../src/core/BlobLocator.js"
import type { ByteRange } from "../../src/core/RangeSet.js"
import { BlobStore } from "../../src/ports/BlobStore.js"
import { MetricsRegistry } from "../../src/ports/MetricsRegistry.js"
import { MutableObjectStore } from "../../src/ports/ObjectStore.js"
import * as Uploads from "../../src/uploads/Uploads.js"
import * as CasBlobStore from "../../src/blobs/CasBlobStore.js"
import * as Events from "../../src/kit/Events.js"
import * as Metrics from "../../src/kit/Metrics.js"
import { collect, randomBytes, sameBytes } from "../../src/testing/bytes.js"
import { testUploads } from "../../src/testing/Uploads.js"
import { plainObjects, type PlainCounts } from "../blobs/fixtures.js"
import { stagedObjects } from "./fixtures.js"

const segmentSize = 64 * 1024

/** Reads of the object store, counted by `countingObjects`. */
let objectReads = 0

/** The in-memory object store, counting its reads. */
const countingObjects = Layer.effect(
  MutableObjectStore,
  Effect.map(MemoryObjectStore.make, (store) => ({
    ...store,
    get: (locator: BlobLocator.BlobLocator, range?: ByteRange) => {
      objectReads++
      return store.get(locator, range)
    }
  }))
)

/** CasBlobStore over fresh in-memory ports, with Uploads on top. */
const casMemory = () =>
  Uploads.layer({ segmentSize }).pipe(
    Layer.provideMerge(CasBlobStore.layer()),
    Layer.provideMerge(Layer.mergeAll(countingObjects, MemoryLayers.metadata, Metrics.layer, Events.layer))
  )

testUploads("cas over memory (assembly)", {
  layer: casMemory(),
  fresh: Uploads.make({ segmentSize }),
  segmentSize,
  staged: stagedObjects(CasBlobStore.defaults.scheme, CasBlobStore.defaults.bucket, "staging/uploads/")
})

const prefix = Either.getOrThrow(BlobLocator.makePrefix("mem", "uploads", "spans/"))
testUploads("memory fake BlobStore (streamed complete)", {
  layer: Uploads.layer({ segmentSize, stagingPrefix: prefix }).pipe(
    Layer.provideMerge(Layer.mergeAll(MemoryLayers.metadata, MemoryObjectStore.layer, MemoryBlobStore.layer))
  ),
  fresh: Uploads.make({ segmentSize, stagingPrefix: prefix }),
  segmentSize,
  staged: stagedObjects("mem", "uploads", "spans/")
})

/** CasBlobStore and Uploads over an object store without rename nor ranged reads (see plainObjects). */
const plainCounts: PlainCounts = { moves: 0, rangedGets: 0 }
const casPlain = (counts: PlainCounts) =>
  Uploads.layer({ segmentSize }).pipe(
    Layer.provideMerge(CasBlobStore.layer()),
    Layer.provideMerge(Layer.mergeAll(plainObjects(counts), MemoryLayers.metadata, Metrics.layer, Events.layer))
  )

testUploads("cas over a store without rename nor ranged reads (segments written in place)", {
  layer: casPlain(plainCounts),
  fresh: Uploads.make({ segmentSize }),
  segmentSize,
  staged: stagedObjects(CasBlobStore.defaults.scheme, CasBlobStore.defaults.bucket, "staging/uploads/")
})

describe("Uploads over a store without a native move", () => {
  const counts: PlainCounts = { moves: 0, rangedGets: 0 }
  it.effect("segments are put in place under names of their own: no move, no temporary; a re-sent landed segment is checked, not stored again", () =>
    Effect.gen(function*() {
      const uploads = yield* Uploads.Uploads
      const objects = yield* MutableObjectStore
      const bytes = randomBytes(2 * segmentSize + 9, 44)
      const id = yield* uploads.begin({ size: bytes.length })
      yield* uploads.write(id, 0, Stream.make(bytes))
      // The first segment again, as a writer that lost track would send it.
      yield* uploads.write(id, 0, Stream.make(bytes.subarray(0, segmentSize)))
      expect(counts.moves).toBe(0)
      const dir = Either.getOrThrow(BlobLocator.makePrefix(CasBlobStore.defaults.scheme, CasBlobStore.defaults.bucket, `staging/uploads/${id}/`))
      const names = Array.from(yield* Stream.runCollect(objects.list(dir)), (s) => s.locator.path.slice(dir.path.length))
      expect(names.length).toBe(3)
      for (const name of names) expect(name).toMatch(/^\d{16}\+[0-9a-f-]{36}$/)
      expect((yield* uploads.status(id)).missing).toEqual([])
      const result = yield* uploads.complete(id)
      expect(sameBytes(yield* collect((yield* BlobStore).get(result.key)), bytes)).toBe(true)
      expect((yield* Stream.runCollect(objects.list(dir))).length).toBe(0)
    }).pipe(Effect.provide(casPlain(counts))))
})

describe("Uploads over CasBlobStore", () => {
  it.effect("complete adopts the segments as blocks: no byte is written twice", () =>
    Effect.gen(function*() {
      const uploads = yield* Uploads.Uploads
      const store = yield* BlobStore
      const bytes = randomBytes(3 * segmentSize + 17, 42)
      const id = yield* uploads.begin({ size: bytes.length })
      yield* uploads.write(id, 0, Stream.make(bytes))
      const written = yield* counterValue("graviton_bytes_written_total")
      const reads = objectReads
      const result = yield* uploads.complete(id)
      // Hashed while written by this process: complete does not read the segments back.
      expect(objectReads).toBe(reads)
      // A chunked blob (its manifest locator), made of the four segments, with no new bytes written.
      expect(BlobLocator.render(result.locator)).toBe(`kv://blobs/${result.key}`)
      expect(yield* counterValue("graviton_bytes_written_total")).toBe(written)
      expect(sameBytes(yield* collect(store.get(result.key)), bytes)).toBe(true)
      // A ranged read across a segment boundary.
      const slice = yield* collect(store.get(result.key, { start: segmentSize - 5, end: segmentSize + 5 }))
      expect(sameBytes(slice, bytes.subarray(segmentSize - 5, segmentSize + 5))).toBe(true)
    }).pipe(Effect.provide(casMemory())))

  it.effect("an instance that did not write the upload reads the segments back to hash them", () =>
    Effect.gen(function*() {
      const first = yield* Uploads.Uploads
      const bytes = randomBytes(2 * segmentSize + 3, 43)
      const id = yield* first.begin({ size: bytes.length })
      yield* first.write(id, 0, Stream.make(bytes))
      const second = yield* Uploads.make({ segmentSize })
      const reads = objectReads
      const result = yield* second.complete(id)
      expect(objectReads - reads).toBe(3)
      expect(sameBytes(yield* collect((yield* BlobStore).get(result.key)), bytes)).toBe(true)
    }).pipe(Effect.provide(casMemory())))
})

const counterValue = (name: string, tags: Record<string, string> = {}) =>
  Effect.map(Effect.flatMap(MetricsRegistry, (m) => m.snapshot), (samples) =>
    samples
      .filter((s) => s.name === name && s._tag === "Counter" && Object.entries(tags).every(([k, v]) => s.tags[k] === v))
      .reduce((n, s) => n + (s._tag === "Counter" ? s.value : 0), 0))
