/**
 * An upload never mixes two sources (issue #16, item 2) and never grows past
 * its largest allowed size (#15, finding 7): the source fingerprint checked
 * by `resume`, each landed segment's digest checked when it is re-sent, and
 * `maxUploadSize` enforced on declared sizes and write offsets.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as MemoryLayers from "../../src/backends/memory/MemoryLayers.js"
import * as MemoryObjectStore from "../../src/backends/memory/MemoryObjectStore.js"
import * as CasBlobStore from "../../src/blobs/CasBlobStore.js"
import * as Events from "../../src/kit/Events.js"
import * as Metrics from "../../src/kit/Metrics.js"
import { BlobStore } from "../../src/ports/BlobStore.js"
import { KeyValueStore } from "../../src/ports/KeyValueStore.js"
import { MutableObjectStore } from "../../src/ports/ObjectStore.js"
import { collect, randomBytes, sameBytes } from "../../src/testing/bytes.js"
import * as Uploads from "../../src/uploads/Uploads.js"

const segmentSize = 64 * 1024
const maxUploadSize = 10 * segmentSize

const layer = () =>
  Uploads.layer({ segmentSize, maxUploadSize }).pipe(
    Layer.provideMerge(CasBlobStore.layer()),
    Layer.provideMerge(Layer.mergeAll(
      Layer.effect(MutableObjectStore, MemoryObjectStore.make),
      MemoryLayers.metadata,
      Metrics.layer,
      Events.layer
    ))
  )

/** Keys under `uploads/` in the KeyValueStore. */
const uploadKeys = Effect.flatMap(KeyValueStore, (kv) =>
  Effect.map(Stream.runCollect(kv.list("uploads/")), (c) => Chunk.toReadonlyArray(Chunk.map(c, ([k]) => k))))

describe("Uploads: one source per upload", () => {
  it.effect("resume refuses another source's fingerprint; the recorded one and none are accepted", () =>
    Effect.gen(function*() {
      const uploads = yield* Uploads.Uploads
      const id = yield* uploads.begin({ size: 3 * segmentSize, source: "file:size=196608;ino=1" })
      const refused = yield* Effect.flip(uploads.resume(id, { source: "file:size=196608;ino=2" }))
      expect(refused._tag).toBe("SourceChanged")
      expect(refused.reason).toBe("InvalidInput")
      expect(refused.message).toContain(id)
      expect((yield* uploads.resume(id, { source: "file:size=196608;ino=1" })).source).toEqual(Option.some("file:size=196608;ino=1"))
      expect((yield* uploads.resume(id)).received).toBe(0)
    }).pipe(Effect.provide(layer())))

  it.effect("a re-sent landed segment: the same bytes are skipped, other bytes refused with nothing staged, part of it refused", () =>
    Effect.gen(function*() {
      const uploads = yield* Uploads.Uploads
      const f = randomBytes(3 * segmentSize, 1)
      const g = randomBytes(3 * segmentSize, 2)
      const id = yield* uploads.begin({ size: f.length })
      // The first file's first segment lands; a resume then sends another file's bytes from 0 (issue #16: a mixed blob).
      yield* uploads.write(id, 0, Stream.make(f.subarray(0, segmentSize)))
      const mixed = yield* Effect.flip(uploads.write(id, 0, Stream.make(g)))
      expect(mixed._tag).toBe("SourceChanged")
      expect((yield* uploads.status(id)).received).toBe(segmentSize)
      const partial = yield* Effect.flip(uploads.write(id, 100, Stream.make(f.subarray(100, segmentSize))))
      expect(partial._tag === "BlobError" && partial.reason).toBe("InvalidInput")
      // The same bytes again: checked, not written again, and the rest goes on.
      const again = yield* uploads.write(id, 0, Stream.make(f))
      expect(again.written).toBe(2 * segmentSize)
      const result = yield* uploads.complete(id)
      expect(sameBytes(yield* collect((yield* BlobStore).get(result.key)), f)).toBe(true)
      expect(yield* uploadKeys).toEqual([])
    }).pipe(Effect.provide(layer())))

  it.effect("segment digests are not uploads: list shows the upload once, abort removes its digests", () =>
    Effect.gen(function*() {
      const uploads = yield* Uploads.Uploads
      const id = yield* uploads.begin({})
      yield* uploads.write(id, 0, Stream.make(randomBytes(2 * segmentSize + 5, 3)))
      expect((yield* uploadKeys).length).toBe(4)
      expect(Array.from(yield* Stream.runCollect(uploads.list), (s) => s.id)).toEqual([id])
      expect(yield* uploads.expire).toEqual([])
      yield* uploads.abort(id)
      expect(yield* uploadKeys).toEqual([])
    }).pipe(Effect.provide(layer())))
})

describe("Uploads: the largest upload", () => {
  it.effect("a declared size over maxUploadSize is refused", () =>
    Effect.gen(function*() {
      const uploads = yield* Uploads.Uploads
      const e = yield* Effect.flip(uploads.begin({ size: maxUploadSize + 1 }))
      expect(e.reason).toBe("InvalidInput")
    }).pipe(Effect.provide(layer())))

  it.effect("with an unknown size, an offset or bytes past maxUploadSize are refused (InvalidInput)", () =>
    Effect.gen(function*() {
      const uploads = yield* Uploads.Uploads
      const id = yield* uploads.begin({})
      // #15 finding 7: any safe-integer offset was accepted (a huge sparse staging file that complete reads whole).
      const far = yield* Effect.flip(uploads.write(id, Number.MAX_SAFE_INTEGER - 10, Stream.make(new Uint8Array(4))))
      expect(far._tag === "BlobError" && far.reason).toBe("InvalidInput")
      const across = yield* Effect.flip(uploads.write(id, maxUploadSize - 2, Stream.make(new Uint8Array(4))))
      expect(across._tag === "BlobError" && across.reason).toBe("InvalidInput")
      expect((yield* uploads.write(id, maxUploadSize - 4, Stream.make(new Uint8Array(4)))).written).toBe(4)
    }).pipe(Effect.provide(layer())))
})
