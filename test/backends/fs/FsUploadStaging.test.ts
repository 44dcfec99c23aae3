/**
 * FsUploadStaging through Uploads on the embedded store, beyond the Uploads
 * conformance suite (test/uploads/embedded.test.ts): one file per upload,
 * adopted as the blob's own object; bytes past the landed end cut off;
 * re-sent spans with other bytes never stored under a stale key; uploads of
 * another staging refused with a clear error and still abortable.
 */
import { describe, expect, it, layer as sharedLayer } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as TestClock from "effect/TestClock"
import * as Stream from "effect/Stream"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import * as EmbeddedStore from "../../../src/stores/EmbeddedStore.js"
import * as FsUploadStaging from "../../../src/backends/fs/FsUploadStaging.js"
import { BinaryKey } from "../../../src/core/BinaryKey.js"
import { type BlobError, MetadataError } from "../../../src/core/Errors.js"
import { BlobAssembly } from "../../../src/ports/BlobAssembly.js"
import { BlobStore } from "../../../src/ports/BlobStore.js"
import type { KeyValueStore } from "../../../src/ports/KeyValueStore.js"
import { RangeTracker } from "../../../src/ports/RangeTracker.js"
import { MutableObjectStore } from "../../../src/ports/ObjectStore.js"
import { UploadStaging } from "../../../src/ports/UploadStaging.js"
import * as Uploads from "../../../src/uploads/Uploads.js"
import { tempDir } from "../../blobs/fixtures.js"
import { chunked, collect, randomBytes, sameBytes } from "../../../src/testing/bytes.js"
import { stagedObjects } from "../../uploads/fixtures.js"

const seg = 64 * 1024
const home = tempDir("fs-upload-staging-")
const layer = Uploads.layer().pipe(Layer.provideMerge(EmbeddedStore.layer({ home, uploadSegmentSize: seg })))
const staged = stagedObjects("file", "blobs", "staging/uploads/")
const dataFileIn = (home: string) => (id: string) => path.join(home, "blobs", "staging", "uploads", id, FsUploadStaging.DATA)
const dataFile = dataFileIn(home)
/** Waits until the upload's file holds at least `bytes` (a writer in flight has written that far). */
const untilFileHolds = (id: string, bytes: number) =>
  Effect.iterate(0, {
    while: (n) => n < bytes,
    body: () => Effect.zipRight(Effect.sleep("5 millis"), Effect.sync(() => fs.statSync(dataFile(id)).size))
  })

const sha256Key = (bytes: Uint8Array): BinaryKey =>
  new BinaryKey({ algorithm: "sha256", digest: createHash("sha256").update(bytes).digest("hex"), size: bytes.length })

const write = (id: string, bytes: Uint8Array, at: number) =>
  Effect.flatMap(Uploads.Uploads, (u) => u.write(id, at, chunked(bytes, { seed: at + 1, max: 20 * 1024 })))

/** Set to make the RangeTracker's next `clear` fail: a complete stops right after its staging's work. */
const failClear = Effect.runSync(Ref.make(false))
const flakyRanges = Layer.effect(
  RangeTracker,
  Effect.map(RangeTracker, (ranges) => ({
    ...ranges,
    clear: (id: string) =>
      Effect.flatMap(Ref.getAndSet(failClear, false), (fail) =>
        fail ? Effect.fail(new MetadataError({ reason: "Unavailable", backend: "test", method: "clear", description: "clear failed" })) : ranges.clear(id))
  }))
)
const crashHome = tempDir("fs-upload-staging-crash-")
const flakyClearLayer = Uploads.layer().pipe(
  Layer.provide(flakyRanges),
  Layer.provideMerge(EmbeddedStore.layer({ home: crashHome, uploadSegmentSize: seg }))
)

const expectNotFound = <A, R>(effect: Effect.Effect<A, BlobError, R>) =>
  Effect.map(Effect.flip(effect), (e) => expect(e.reason).toBe("NotFound"))

describe("FsUploadStaging", () => {
  sharedLayer(layer, { excludeTestServices: true })("through Uploads on the embedded store", (it) => {
    it.effect("an upload is one file written in place, adopted as the blob's own object", () =>
      Effect.gen(function*() {
        const uploads = yield* Uploads.Uploads
        const bytes = randomBytes(3 * seg + 100, 11)
        const id = yield* uploads.begin({ size: bytes.length })
        expect((yield* uploads.status(id)).staging).toBe(FsUploadStaging.NAME)
        // Out of order: the file grows to its full size with a hole first.
        yield* write(id, bytes.subarray(2 * seg), 2 * seg)
        yield* write(id, bytes.subarray(0, 2 * seg), 0)
        expect(yield* staged(id)).toBe(1)
        expect(sameBytes(new Uint8Array(fs.readFileSync(dataFile(id))), bytes)).toBe(true)
        const result = yield* uploads.complete(id)
        expect(String(result.key)).toBe(String(sha256Key(bytes)))
        // Monolithic: the blob is one object of its full size at its content address.
        const objects = yield* MutableObjectStore
        const stat = yield* objects.head(result.locator)
        expect(Option.map(stat, (s) => s.size)).toEqual(Option.some(bytes.length))
        expect(result.locator.path).not.toContain("staging")
        expect(yield* staged(id)).toBe(0)
        expect(fs.existsSync(path.dirname(dataFile(id)))).toBe(false)
        expect(sameBytes(yield* collect((yield* BlobStore).get(result.key)), bytes)).toBe(true)
      }))

    it.effect("bytes an interrupted write left past the landed end are cut off on complete", () =>
      Effect.gen(function*() {
        const uploads = yield* Uploads.Uploads
        const bytes = randomBytes(2 * seg, 12)
        // No declared size: the blob is what landed.
        const id = yield* uploads.begin()
        yield* write(id, bytes.subarray(0, seg), 0)
        const hanging = Stream.concat(Stream.make(bytes.subarray(seg, seg + seg / 2)), Stream.never)
        const fiber = yield* Effect.fork(uploads.write(id, seg, hanging))
        yield* untilFileHolds(id, seg + seg / 2)
        yield* Fiber.interrupt(fiber)
        expect(fs.statSync(dataFile(id)).size).toBe(seg + seg / 2)
        const result = yield* uploads.complete(id)
        expect(String(result.key)).toBe(String(sha256Key(bytes.subarray(0, seg))))
        expect(sameBytes(yield* collect((yield* BlobStore).get(result.key)), bytes.subarray(0, seg))).toBe(true)
      }).pipe(Effect.timeout("30 seconds")))

    it.effect("a span whose input fails midway, sent again whole: the key is that of the content", () =>
      Effect.gen(function*() {
        const uploads = yield* Uploads.Uploads
        const bytes = randomBytes(2 * seg, 15)
        const id = yield* uploads.begin({ size: bytes.length })
        yield* write(id, bytes.subarray(0, seg), 0)
        // At the frontier, so hashed as it goes by: half of it is hashed when the input fails.
        const broken = Stream.concat(Stream.make(bytes.subarray(seg, seg + seg / 2)), Stream.fail("the input broke"))
        expect(yield* Effect.flip(uploads.write(id, seg, broken))).toBe("the input broke")
        yield* write(id, bytes.subarray(seg), seg)
        const result = yield* uploads.complete(id)
        expect(String(result.key)).toBe(String(sha256Key(bytes)))
        expect(sameBytes(yield* collect((yield* BlobStore).get(result.key)), bytes)).toBe(true)
      }))

    it.effect("a re-sent landed span with other bytes is refused (SourceChanged) and overwrites nothing", () =>
      Effect.gen(function*() {
        const uploads = yield* Uploads.Uploads
        const first = randomBytes(2 * seg, 13)
        const other = randomBytes(seg, 14)
        const id = yield* uploads.begin({ size: 2 * seg })
        yield* write(id, first, 0)
        // Would overwrite landed bytes in place (a mixed blob): compared with the landed segment's digest instead.
        const refused = yield* Effect.flip(write(id, other, 0))
        expect(refused._tag).toBe("SourceChanged")
        const final = first
        const result = yield* uploads.complete(id)
        expect(String(result.key)).toBe(String(sha256Key(final)))
        expect(sameBytes(yield* collect((yield* BlobStore).get(result.key)), final)).toBe(true)
      }))

    it.effect("two writers of one span with other bytes, interleaved: the blob is still what the file holds", () =>
      Effect.gen(function*() {
        const uploads = yield* Uploads.Uploads
        const bytes = randomBytes(2 * seg, 17)
        const other = randomBytes(seg, 18)
        const id = yield* uploads.begin({ size: 2 * seg })
        // Writer A sends half of [seg, 2seg) and stalls; B sends all of it; then A finishes.
        const resume = yield* Deferred.make<void>()
        const a = yield* Effect.fork(uploads.write(id, seg, Stream.concat(
          Stream.make(bytes.subarray(seg, seg + seg / 2)),
          Stream.fromEffect(Effect.as(Deferred.await(resume), bytes.subarray(seg + seg / 2)))
        )))
        yield* untilFileHolds(id, seg + seg / 2)
        yield* uploads.write(id, seg, Stream.make(other))
        yield* Deferred.succeed(resume, undefined)
        yield* Fiber.join(a)
        yield* write(id, bytes.subarray(0, seg), 0)
        const held = new Uint8Array(fs.readFileSync(dataFile(id)))
        // The file mixes both writers; whatever it holds is what gets stored, under its own key.
        expect(sameBytes(held.subarray(seg), bytes.subarray(seg))).toBe(false)
        const result = yield* uploads.complete(id)
        expect(String(result.key)).toBe(String(sha256Key(held)))
        expect(sameBytes(yield* collect((yield* BlobStore).get(result.key)), held)).toBe(true)
      }).pipe(Effect.timeout("30 seconds")))

    it.effect("an upload begun by another staging is refused with a clear error, and abort still removes it", () =>
      Effect.gen(function*() {
        // The same stores without the file staging: Uploads falls back to one object per segment.
        const ctx = yield* Effect.context<KeyValueStore | RangeTracker | MutableObjectStore | BlobStore | BlobAssembly>()
        const objectStaged = yield* Effect.mapInputContext(
          Uploads.make({ segmentSize: seg }),
          (_: Context.Context<never>) => Context.omit(UploadStaging)(ctx)
        )
        const uploads = yield* Uploads.Uploads
        const bytes = randomBytes(2 * seg, 15)
        const id = yield* objectStaged.begin({ size: bytes.length })
        yield* objectStaged.write(id, 0, Stream.make(bytes.subarray(0, seg)))
        expect(yield* staged(id)).toBe(1)
        const error = (yield* Effect.flip(uploads.write(id, seg, Stream.make(bytes.subarray(seg))))) as BlobError
        expect(error.reason).toBe("Unsupported")
        expect(error.message).toContain(`begun with staging "objects"`)
        yield* uploads.abort(id)
        expect(yield* staged(id)).toBe(0)
      }))

    it.effect("a staged file cut short behind our back fails complete with Corrupted and stores nothing", () =>
      Effect.gen(function*() {
        const uploads = yield* Uploads.Uploads
        const bytes = randomBytes(2 * seg, 19)
        const id = yield* uploads.begin({ size: bytes.length })
        yield* write(id, bytes, 0)
        fs.truncateSync(dataFile(id), seg)
        const error = (yield* Effect.flip(uploads.complete(id))) as BlobError
        expect(error.reason).toBe("Corrupted")
        expect(error.message).toContain(`holds ${seg} bytes`)
        expect(Option.isNone(yield* (yield* BlobStore).stat(sha256Key(bytes)))).toBe(true)
        yield* uploads.abort(id)
        expect(yield* staged(id)).toBe(0)
      }))

    it.effect("a write to an upload whose file is gone fails with NotFound", () =>
      Effect.gen(function*() {
        const uploads = yield* Uploads.Uploads
        const id = yield* uploads.begin({ size: seg })
        fs.rmSync(dataFile(id))
        const error = (yield* Effect.flip(uploads.write(id, 0, Stream.make(randomBytes(seg, 16))))) as BlobError
        expect(error.reason).toBe("NotFound")
        expect(error.message).toContain("is gone")
        yield* uploads.abort(id)
      }))
  })

  it.effect("with fsync on, segments are synced before they count and the upload completes", () =>
    Effect.gen(function*() {
      const uploads = yield* Uploads.Uploads
      const bytes = randomBytes(2 * seg + 5, 20)
      const id = yield* uploads.begin({ size: bytes.length })
      yield* write(id, bytes, 0)
      const result = yield* uploads.complete(id)
      expect(String(result.key)).toBe(String(sha256Key(bytes)))
      expect(sameBytes(yield* collect((yield* BlobStore).get(result.key)), bytes)).toBe(true)
    }).pipe(
      Effect.provide(Uploads.layer().pipe(
        Layer.provideMerge(EmbeddedStore.layer({ home: tempDir("fs-upload-staging-fsync-"), uploadSegmentSize: seg, fsync: true }))
      ))
    ))

  it.effect("a complete that stopped after adopting the file (killed before its clean-up) is finished by the next one", () =>
    Effect.gen(function*() {
      const uploads = yield* Uploads.Uploads
      const bytes = randomBytes(2 * seg + 7, 21)
      const id = yield* uploads.begin({ size: bytes.length })
      yield* write(id, bytes, 0)
      expect(fs.statSync(dataFileIn(crashHome)(id)).size).toBe(bytes.length)
      // The first complete adopts the file, then fails where a kill would have stopped it.
      yield* Ref.set(failClear, true)
      const error = yield* Effect.flip(uploads.complete(id))
      expect(String((error as { message?: string }).message)).toContain("clear failed")
      expect(fs.existsSync(dataFileIn(crashHome)(id))).toBe(false)
      expect(Option.isSome(yield* (yield* BlobStore).stat(sha256Key(bytes)))).toBe(true)
      // Within the lease the claim is respected, as it would be for a complete still running.
      expect(((yield* Effect.flip(uploads.complete(id))) as BlobError).reason).toBe("Conflict")
      // Past it, a new process (no in-memory hashes) completes it from the key the first one recorded.
      // (it.effect runs on the TestClock: the upload began at its time.)
      yield* TestClock.adjust("11 minutes")
      const again = yield* (yield* Uploads.make()).complete(id)
      expect(String(again.key)).toBe(String(sha256Key(bytes)))
      expect(again.size).toBe(bytes.length)
      expect(sameBytes(yield* collect((yield* BlobStore).get(again.key)), bytes)).toBe(true)
      yield* expectNotFound(uploads.status(id))
      expect(yield* staged(id)).toBe(0)
    }).pipe(Effect.provide(flakyClearLayer)))

  it("a staging prefix is required when the BlobStore has no assembly", async () => {
    const objects = Layer.succeed(MutableObjectStore, {} as MutableObjectStore["Type"])
    const blobs = Layer.succeed(BlobStore, {} as BlobStore["Type"])
    const error = await Effect.runPromise(
      Effect.flip(Layer.build(FsUploadStaging.layer({ root: home })).pipe(
        Effect.provide(Layer.merge(objects, blobs)),
        Effect.scoped
      ))
    )
    expect(error.reason).toBe("InvalidInput")
    expect(error.message).toContain("no staging location")
  })
})
