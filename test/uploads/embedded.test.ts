/**
 * The Uploads suite over the embedded store: each upload one file written in
 * place (FsUploadStaging), records and ranges in LevelDB, the file adopted as
 * the blob on complete. Then a crash window of the embedded store, whose file
 * staging cannot prove what landed (only the RangeTracker says it).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { createHash } from "node:crypto"
import * as Layer from "effect/Layer"
import * as RangeSet from "../../src/core/RangeSet.js"
import { BlobStore } from "../../src/ports/BlobStore.js"
import { KeyValueStore } from "../../src/ports/KeyValueStore.js"
import { RangeTracker } from "../../src/ports/RangeTracker.js"
import * as EmbeddedStore from "../../src/stores/EmbeddedStore.js"
import * as Uploads from "../../src/uploads/Uploads.js"
import { chunked, collect, randomBytes, sameBytes } from "../../src/testing/bytes.js"
import { tempDir } from "../blobs/fixtures.js"
import { testUploads } from "../../src/testing/Uploads.js"
import { stagedObjects } from "./fixtures.js"

const segmentSize = 256 * 1024

const embedded = () =>
  Uploads.layer({ segmentSize }).pipe(Layer.provideMerge(EmbeddedStore.layer({ home: tempDir("uploads-embedded-"), uploadSegmentSize: segmentSize })))

testUploads("embedded (fs + LevelDB)", {
  layer: embedded(),
  fresh: Uploads.make({ segmentSize }),
  segmentSize,
  staged: stagedObjects("file", "blobs", "staging/uploads/")
})

describe("Uploads[embedded]: a writer killed between a segment's digest and its range", () => {
  // A write records each landed segment's digest beside merging its range into the RangeTracker; a
  // process killed between the two leaves a digest for a segment `status` calls missing. The resume
  // re-sends that segment: it matches the digest, so nothing is stored again, but its range must
  // still be merged, or `complete` finds it missing forever (test/cli/uploadResume.test.ts saw this
  // as "8388608 bytes missing" once on a loaded machine).
  it.effect("the re-sent segment counts as landed and the upload completes", () =>
    Effect.gen(function*() {
      const uploads = yield* Uploads.Uploads
      const ranges = yield* RangeTracker
      const bytes = randomBytes(2 * segmentSize, 7)
      const id = yield* uploads.begin({ size: bytes.length })
      yield* uploads.write(id, 0, chunked(bytes, { seed: 1 }))
      // The crash: the second segment's digest was recorded, its range never merged.
      yield* ranges.clear(id)
      yield* ranges.merge(id, new RangeSet.Span({ start: 0, end: segmentSize }))
      const before = yield* uploads.status(id)
      expect(before.missing).toEqual([new RangeSet.Span({ start: segmentSize, end: 2 * segmentSize })])

      // A new process resumes: it sends what status calls missing.
      const fresh = yield* Uploads.make({ segmentSize })
      const again = yield* fresh.write(id, segmentSize, chunked(bytes.subarray(segmentSize), { seed: 2 }))
      expect(again.status.missing).toEqual([])
      const result = yield* fresh.complete(id)
      const back = yield* collect((yield* BlobStore).get(result.key))
      expect(sameBytes(back, bytes)).toBe(true)
    }).pipe(Effect.provide(embedded())), 60_000)

  // The file staging records an XXH3-128 digest per segment (taken as the bytes go by); records an
  // older version wrote are sha256: both decide whether re-sent bytes are those that landed.
  it.effect("re-sent segments are checked against XXH3-128 records and against older sha256 records", () =>
    Effect.gen(function*() {
      const uploads = yield* Uploads.Uploads
      const kv = yield* KeyValueStore
      const bytes = randomBytes(2 * segmentSize, 11)
      const other = randomBytes(segmentSize, 12)
      const id = yield* uploads.begin({ size: bytes.length })
      yield* uploads.write(id, 0, chunked(bytes, { seed: 3 }))
      const records = Chunk.toReadonlyArray(yield* Stream.runCollect(kv.list(`uploads/${id}/segments/`)))
      expect(records.map(([, v]) => new TextDecoder().decode(v))).toEqual([
        expect.stringMatching(new RegExp(`^${segmentSize}:xxh128:[0-9a-f]{32}$`)),
        expect.stringMatching(new RegExp(`^${2 * segmentSize}:xxh128:[0-9a-f]{32}$`))
      ])
      // The second segment's record as an older version wrote it.
      const sha256 = createHash("sha256").update(bytes.subarray(segmentSize)).digest("hex")
      yield* kv.put(records[1]![0], new TextEncoder().encode(`${2 * segmentSize}:${sha256}`))

      for (const start of [0, segmentSize]) {
        const same = yield* uploads.write(id, start, chunked(bytes.subarray(start, start + segmentSize), { seed: 4 }))
        expect(same.written).toBe(0)
        const refused = yield* Effect.flip(uploads.write(id, start, chunked(other, { seed: 5 })))
        expect(refused._tag).toBe("SourceChanged")
      }
      const result = yield* uploads.complete(id)
      const back = yield* collect((yield* BlobStore).get(result.key))
      expect(sameBytes(back, bytes)).toBe(true)
    }).pipe(Effect.provide(embedded())), 60_000)
})
