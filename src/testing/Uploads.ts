/**
 * Conformance suite for resumable uploads (uploads/Uploads) over one
 * backend: every store runs it from its own test file with its staging.
 *
 * Covers: a whole upload in one write; spans written out of order and in
 * parallel; overlapping re-sent spans; `status` (landed and missing);
 * `complete` with a gap (IncompleteUpload naming it); `expectedKey`
 * mismatch (nothing stored, nothing staged); dedup against a stored blob;
 * writes past the size; a failing input stream; an interrupted write
 * (only whole segments count); `abort` and expiry leaving no staged data;
 * a second Uploads instance over the same stores (a new process) resuming.
 */
import { describe, expect, it as baseIt, layer as sharedLayer, type Vitest } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import type * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { createHash } from "node:crypto"
import { BinaryKey } from "../core/BinaryKey.js"
import type { BlobError } from "../core/Errors.js"
import * as RangeSet from "../core/RangeSet.js"
import { BlobStore } from "../ports/BlobStore.js"
import * as UploadsModule from "../uploads/Uploads.js"
import { Uploads } from "../uploads/Uploads.js"
import { chunked, collect, firstDifference, randomBytes, sameBytes } from "./bytes.js"
import { type Capabilities, gate } from "./capabilities.js"

/** What a backend gives the suite. */
export interface UploadsFixture<R> {
  /** Uploads and the BlobStore it completes into, plus whatever `staged` needs. */
  readonly layer: Layer.Layer<Uploads | BlobStore | R, unknown>
  /** A second Uploads over the same stores, built afresh (what a new process would do). */
  readonly fresh: Effect.Effect<Uploads["Type"], never, Uploads | BlobStore | R>
  /** Segment size of the staging (spans are cut at its multiples). */
  readonly segmentSize: number
  /** How many staged artifacts (objects, multipart uploads) exist for `id` right now. */
  readonly staged: (id: string) => Effect.Effect<number, unknown, Uploads | BlobStore | R>
}

const sha256Key = (bytes: Uint8Array): BinaryKey =>
  new BinaryKey({ algorithm: "sha256", digest: createHash("sha256").update(bytes).digest("hex"), size: bytes.length })

const freshSeed = (): number => 1 + Math.floor(Math.random() * 0x7ffffff0)

const expectBlobError = <A, E, R>(effect: Effect.Effect<A, E, R>, reason: BlobError["reason"]) =>
  Effect.gen(function*() {
    const error = yield* Effect.flip(effect)
    expect((error as { _tag?: string })._tag).toBe("BlobError")
    expect((error as unknown as BlobError).reason, String((error as { message?: string }).message)).toBe(reason)
    return error as unknown as BlobError
  })

/** Registers the suite for one backend. */
export const testUploads = <R>(name: string, fixture: UploadsFixture<R>, capabilities: Capabilities = {}): void => {
  const title = `Uploads[${name}]`
  if (capabilities.skipAll !== undefined) {
    describe(title, () => suite(baseIt as unknown as Vitest.MethodsNonLive<Uploads | BlobStore | R, true>, fixture, capabilities))
  } else {
    sharedLayer(fixture.layer, { excludeTestServices: true })(title, (it) => suite(it, fixture, capabilities))
  }
}

const suite = <R>(
  it: Vitest.MethodsNonLive<Uploads | BlobStore | R, true>,
  fixture: UploadsFixture<R>,
  capabilities: Capabilities
): void => {
  const test = gate(it.effect, capabilities.skipAll)
  const seg = fixture.segmentSize
  const write = (id: string, bytes: Uint8Array, start: number, end: number) =>
    Effect.flatMap(Uploads, (u) => u.write(id, start, chunked(bytes.subarray(start, end), { seed: start + 1, max: 96 * 1024 })))

  const expectStored = (bytes: Uint8Array, result: { key: BinaryKey }) =>
    Effect.gen(function*() {
      expect(String(result.key)).toBe(String(sha256Key(bytes)))
      const back = yield* collect((yield* BlobStore).get(result.key))
      expect(sameBytes(back, bytes), firstDifference(back, bytes)).toBe(true)
    })

  test("one write of the whole content, then complete", () =>
    Effect.gen(function*() {
      const uploads = yield* Uploads
      const bytes = randomBytes(2 * seg + 12345, freshSeed())
      const id = yield* uploads.begin({ size: bytes.length })
      expect(id).toMatch(/^[0-9a-f]{32}$/)
      const { written, status } = yield* write(id, bytes, 0, bytes.length)
      expect(written).toBe(bytes.length)
      expect(status.missing).toEqual([])
      expect(status.received).toBe(bytes.length)
      const result = yield* uploads.complete(id)
      expect(result.deduplicated).toBe(false)
      yield* expectStored(bytes, result)
      yield* expectBlobError(uploads.status(id), "NotFound")
      expect(yield* fixture.staged(id)).toBe(0)
    }))

  test("spans out of order and in parallel", () =>
    Effect.gen(function*() {
      const uploads = yield* Uploads
      const bytes = randomBytes(5 * seg + 777, freshSeed())
      const id = yield* uploads.begin({ size: bytes.length, expectedKey: sha256Key(bytes) })
      // Segment-aligned spans of one or two segments, written last-first, three at a time.
      const spans: Array<[number, number]> = [[0, 2 * seg], [2 * seg, 3 * seg], [3 * seg, 5 * seg], [5 * seg, bytes.length]]
      yield* Effect.forEach(spans.reverse(), ([s, e]) => write(id, bytes, s, e), { concurrency: 3, discard: true })
      const status = yield* uploads.status(id)
      expect(RangeSet.format(status.landed)).toBe(`[0, ${bytes.length})`)
      const result = yield* uploads.complete(id)
      yield* expectStored(bytes, result)
      expect(yield* fixture.staged(id)).toBe(0)
    }))

  test("overlapping re-sent spans are harmless", () =>
    Effect.gen(function*() {
      const uploads = yield* Uploads
      const bytes = randomBytes(3 * seg, freshSeed())
      const id = yield* uploads.begin({ size: bytes.length })
      yield* write(id, bytes, 0, 2 * seg)
      // The same span again, and one straddling what has landed.
      yield* write(id, bytes, 0, 2 * seg)
      yield* write(id, bytes, seg, 3 * seg)
      const status = yield* uploads.status(id)
      expect(status.missing).toEqual([])
      yield* expectStored(bytes, yield* uploads.complete(id))
      expect(yield* fixture.staged(id)).toBe(0)
    }))

  test("status shows landed and missing ranges; complete with a gap names it", () =>
    Effect.gen(function*() {
      const uploads = yield* Uploads
      const bytes = randomBytes(4 * seg, freshSeed())
      const id = yield* uploads.begin({ size: bytes.length })
      yield* write(id, bytes, 0, seg)
      yield* write(id, bytes, 3 * seg, 4 * seg)
      const status = yield* uploads.status(id)
      expect(RangeSet.format(status.landed)).toBe(`[0, ${seg}) [${3 * seg}, ${4 * seg})`)
      expect(RangeSet.format(status.missing)).toBe(`[${seg}, ${3 * seg})`)
      expect(status.received).toBe(2 * seg)
      const error = yield* Effect.flip(uploads.complete(id))
      expect(error._tag).toBe("IncompleteUpload")
      const incomplete = error as UploadsModule.IncompleteUpload
      expect(RangeSet.format(incomplete.missing)).toBe(`[${seg}, ${3 * seg})`)
      expect(incomplete.message).toContain(`[${seg}, ${3 * seg})`)
      // Still resumable: fill the gap and finish.
      yield* write(id, bytes, seg, 3 * seg)
      yield* expectStored(bytes, yield* uploads.complete(id))
    }))

  test("an expectedKey mismatch stores nothing and leaves nothing staged", () =>
    Effect.gen(function*() {
      const uploads = yield* Uploads
      const store = yield* BlobStore
      const bytes = randomBytes(seg + 10, freshSeed())
      const other = randomBytes(seg + 10, freshSeed())
      const id = yield* uploads.begin({ expectedKey: sha256Key(other) })
      yield* write(id, bytes, 0, bytes.length)
      yield* expectBlobError(uploads.complete(id), "InvalidInput")
      expect(Option.isNone(yield* store.stat(sha256Key(bytes)))).toBe(true)
      expect(Option.isNone(yield* store.stat(sha256Key(other)))).toBe(true)
      yield* expectBlobError(uploads.status(id), "NotFound")
      expect(yield* fixture.staged(id)).toBe(0)
    }))

  test("content already stored completes as deduplicated", () =>
    Effect.gen(function*() {
      const uploads = yield* Uploads
      const store = yield* BlobStore
      const bytes = randomBytes(seg + 99, freshSeed())
      yield* Stream.run(Stream.make(bytes), store.put())
      const id = yield* uploads.begin({ size: bytes.length })
      yield* write(id, bytes, 0, bytes.length)
      const result = yield* uploads.complete(id)
      expect(result.deduplicated).toBe(true)
      yield* expectStored(bytes, result)
      expect(yield* fixture.staged(id)).toBe(0)
    }))

  test("bad input: writes past the size, bad offsets and ids, bad options", () =>
    Effect.gen(function*() {
      const uploads = yield* Uploads
      const id = yield* uploads.begin({ size: 10 })
      yield* expectBlobError(uploads.write(id, 0, Stream.make(new Uint8Array(11))), "InvalidInput")
      yield* expectBlobError(uploads.write(id, 11, Stream.make(new Uint8Array(1))), "InvalidInput")
      yield* expectBlobError(uploads.write(id, -1, Stream.make(new Uint8Array(1))), "InvalidInput")
      yield* expectBlobError(uploads.status("../../etc"), "InvalidInput")
      yield* expectBlobError(uploads.status("0".repeat(32)), "NotFound")
      yield* expectBlobError(uploads.begin({ size: -3 }), "InvalidInput")
      yield* expectBlobError(uploads.begin({ ttl: Duration.zero }), "InvalidInput")
      yield* uploads.abort(id)
    }))

  test("a failing input stream fails the write with its own error; landed segments stay", () =>
    Effect.gen(function*() {
      const uploads = yield* Uploads
      const bytes = randomBytes(2 * seg, freshSeed())
      const id = yield* uploads.begin({ size: 2 * seg })
      const failing = Stream.concat(Stream.make(bytes.subarray(0, seg + 100)), Stream.fail("network gone" as const))
      const error = yield* Effect.flip(uploads.write(id, 0, failing))
      expect(error).toBe("network gone")
      const status = yield* uploads.status(id)
      expect(RangeSet.format(status.landed)).toBe(`[0, ${seg})`)
      yield* uploads.abort(id)
      expect(yield* fixture.staged(id)).toBe(0)
    }))

  test("an interrupted write keeps only its whole segments", () =>
    Effect.gen(function*() {
      const uploads = yield* Uploads
      const bytes = randomBytes(2 * seg, freshSeed())
      const id = yield* uploads.begin({ size: 3 * seg })
      // 1.5 segments, then the sender hangs: only the first segment has landed when it is interrupted.
      const hanging = Stream.concat(Stream.make(bytes.subarray(0, seg + seg / 2)), Stream.never)
      const fiber = yield* Effect.fork(uploads.write(id, 0, hanging))
      yield* Effect.iterate(0, {
        while: (n) => n < seg,
        body: () => Effect.zipRight(Effect.sleep("5 millis"), Effect.map(uploads.status(id), (s) => s.received))
      })
      yield* Fiber.interrupt(fiber)
      const status = yield* uploads.status(id)
      expect(RangeSet.format(status.landed)).toBe(`[0, ${seg})`)
      yield* uploads.abort(id)
      expect(yield* fixture.staged(id)).toBe(0)
    }).pipe(Effect.timeout("60 seconds")))

  test("abort removes staged data; aborting again succeeds", () =>
    Effect.gen(function*() {
      const uploads = yield* Uploads
      const bytes = randomBytes(2 * seg, freshSeed())
      const id = yield* uploads.begin({ size: bytes.length })
      yield* write(id, bytes, 0, seg)
      expect(yield* fixture.staged(id)).toBeGreaterThan(0)
      yield* uploads.abort(id)
      expect(yield* fixture.staged(id)).toBe(0)
      yield* expectBlobError(uploads.status(id), "NotFound")
      yield* uploads.abort(id)
      expect(Array.from(yield* Stream.runCollect(uploads.list)).some((s) => s.id === id)).toBe(false)
    }))

  test("a new instance over the same stores resumes the upload", () =>
    Effect.gen(function*() {
      const first = yield* Uploads
      const bytes = randomBytes(3 * seg + 5, freshSeed())
      const id = yield* first.begin({ size: bytes.length })
      yield* write(id, bytes, 0, 2 * seg)
      const second = yield* fixture.fresh
      const status = yield* second.status(id)
      expect(RangeSet.format(status.missing)).toBe(`[${2 * seg}, ${bytes.length})`)
      const listed = Array.from(yield* Stream.runCollect(second.list)).find((s) => s.id === id)
      expect(listed?.received).toBe(2 * seg)
      for (const gap of status.missing) {
        yield* second.write(id, gap.start, Stream.make(bytes.subarray(gap.start, gap.end)))
      }
      yield* expectStored(bytes, yield* second.complete(id))
    }))

  test("expiry: past its ttl an upload is refused, and expire removes it with its data", () =>
    Effect.gen(function*() {
      const uploads = yield* Uploads
      const bytes = randomBytes(seg, freshSeed())
      const id = yield* uploads.begin({ size: bytes.length, ttl: "2 seconds" })
      yield* write(id, bytes, 0, seg)
      // Live clock (the suite's stores run on it): wait past the deadline.
      yield* Effect.sleep("2200 millis")
      yield* expectBlobError(uploads.status(id), "NotFound")
      yield* expectBlobError(uploads.complete(id), "NotFound")
      const expired = yield* uploads.expire
      expect(expired).toContain(id)
      expect(yield* fixture.staged(id)).toBe(0)
      expect(yield* uploads.expire).not.toContain(id)
    }))
}
