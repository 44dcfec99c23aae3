/**
 * Failures on every S3 server, injected through the SDK's middleware stack
 * (see sdk.ts): transient part failures retried alone, permanent failures
 * surfacing at once and aborting the upload, interrupted puts aborted,
 * consumers that stop reading early releasing their sockets, bodies cut
 * short caught by the blob store.
 */
import * as S3 from "@aws-sdk/client-s3"
import { expect } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { S3ClientInstance } from "../../../src/backends/s3/S3Client.js"
import * as S3Metrics from "../../../src/backends/s3/S3Metrics.js"
import { type BackendEvent, OperationFailed, RetryAttempted, UploadAborted } from "../../../src/ports/BackendEvents.js"
import { BlobStore } from "../../../src/ports/BlobStore.js"
import { ImmutableObjectStore, MutableObjectStore } from "../../../src/ports/ObjectStore.js"
import * as MetricKeys from "../../../src/kit/MetricKeys.js"
import { chunked, collect, firstDifference, MiB, randomBytes, sameBytes } from "../../../src/testing/bytes.js"
import { awaitEvent, counter, eachServer, locatorMaker, openUploads, putBytes, read, recordEvents, storeLayer, useServers } from "./fixtures.js"
import { recordFault } from "../../harness/reliability.js"
import { inject, spy, truncateBody } from "./sdk.js"

useServers()

const P = 5 * MiB

let bytes: Uint8Array | undefined
/** Three parts and a bit. */
const payload = () => (bytes ??= randomBytes(3 * P + 1000, 77))

const expectSame = (got: Uint8Array, want: Uint8Array) => {
  if (!sameBytes(got, want)) expect.fail(firstDifference(got, want))
}

const partNumber = (n: number) => (input: Readonly<Record<string, unknown>>) => input.PartNumber === n

const isRetry = (e: BackendEvent): e is RetryAttempted => e._tag === "RetryAttempted"
const isAborted = (e: BackendEvent): e is UploadAborted => e._tag === "UploadAborted"
const isAbortFailure = (e: BackendEvent): e is OperationFailed => e._tag === "OperationFailed" && e.method === "AbortMultipartUpload"

eachServer("S3 faults", (c) => storeLayer(c, "faults", { maxSockets: 2 }), (test, server) => {
  test.scoped()("a part failing once with 503 is retried alone; the object is exact", () =>
    Effect.gen(function*() {
      const { client } = yield* S3ClientInstance
      const f = yield* locatorMaker
      const events = yield* recordEvents
      const retriesBefore = yield* counter(MetricKeys.backendRetriesTotal, { method: "UploadPart", reason: "Unavailable" })
      const fault = yield* inject(client, { command: "UploadPart", where: partNumber(2), status: 503, code: "ServiceUnavailable" })
      const seen = yield* spy(client)
      yield* putBytes(f.at("retried"), payload())
      expect(fault.fired()).toBe(1)
      expect(seen.count("UploadPart", partNumber(2))).toBe(2)
      for (const n of [1, 3, 4]) expect(seen.count("UploadPart", partNumber(n))).toBe(1)
      expect(seen.count("CreateMultipartUpload")).toBe(1)
      expectSame(yield* read(f.at("retried")), payload())
      expect((yield* counter(MetricKeys.backendRetriesTotal, { method: "UploadPart", reason: "Unavailable" })) - retriesBefore).toBe(1)
      const retry = yield* awaitEvent(events, isRetry)
      expect([retry.backend, retry.method, retry.reason, retry.attempt]).toEqual(["s3", "UploadPart", "Unavailable", 1])
    }), 60_000)

  test.scoped()("SlowDown is Throttled and retried; a single PutObject too", () =>
    Effect.gen(function*() {
      const { client } = yield* S3ClientInstance
      const f = yield* locatorMaker
      const before = yield* counter(MetricKeys.backendRetriesTotal, { method: "PutObject", reason: "Throttled" })
      yield* inject(client, { command: "PutObject", status: 503, code: "SlowDown", times: 2 })
      const small = randomBytes(1000, 5)
      yield* putBytes(f.at("slow"), small)
      expect((yield* counter(MetricKeys.backendRetriesTotal, { method: "PutObject", reason: "Throttled" })) - before).toBe(2)
      expectSame(yield* read(f.at("slow")), small)
    }))

  test.scoped()("a part failing for good (403) fails the put at once with PermissionDenied and aborts the upload", () =>
    Effect.gen(function*() {
      const { client } = yield* S3ClientInstance
      const f = yield* locatorMaker
      const events = yield* recordEvents
      yield* inject(client, { command: "UploadPart", where: partNumber(2), status: 403, code: "AccessDenied", times: Infinity })
      const seen = yield* spy(client)
      const error = yield* Effect.flip(putBytes(f.at("denied"), payload()))
      expect(error._tag).toBe("ObjectStoreError")
      expect([error.reason, error.method]).toEqual(["PermissionDenied", "put"])
      expect(error.message).toContain("AccessDenied")
      // A permanent failure is not retried.
      expect(seen.count("UploadPart", partNumber(2))).toBe(1)
      expect(seen.count("CompleteMultipartUpload")).toBe(0)
      expect(seen.distinct("AbortMultipartUpload", "UploadId")).toBe(1)
      expect(Option.isNone(yield* Effect.flatMap(MutableObjectStore, (s) => s.head(f.at("denied"))))).toBe(true)
      if (server.capabilities.multipartAbort === true) {
        expect(yield* openUploads(f.key(""))).toEqual([])
        const aborted = yield* awaitEvent(events, isAborted)
        expect(aborted.locator).toBe(String(f.at("denied")))
        expect(aborted.why).toContain("PermissionDenied")
      } else {
        // Uploads left behind cannot be listed here: the abort's outcome is reported either way
        // (s3rver refuses it: a failure event, never thrown; MinIO aborts).
        yield* awaitEvent(events, (e): e is BackendEvent => isAborted(e) || isAbortFailure(e))
      }
    }), 60_000)

  test.scoped(server.capabilities.multipartAbort)("ListMultipartUploads shows nothing left after an aborted put", () =>
    Effect.gen(function*() {
      const { client } = yield* S3ClientInstance
      const f = yield* locatorMaker
      const abortsBefore = yield* counter(S3Metrics.multipartAborts, { outcome: "success" })
      yield* inject(client, { command: "UploadPart", where: partNumber(3), status: 400, code: "InvalidArgument", times: Infinity })
      const error = yield* Effect.flip(putBytes(f.at("invalid"), payload()))
      expect(error.reason).toBe("InvalidInput")
      expect(yield* openUploads(f.key(""))).toEqual([])
      expect((yield* counter(S3Metrics.multipartAborts, { outcome: "success" })) - abortsBefore).toBe(1)
    }), 60_000)

  test.scoped()("interrupting a put midway aborts its multipart upload; nothing is visible", () =>
    Effect.gen(function*() {
      const { client } = yield* S3ClientInstance
      const store = yield* MutableObjectStore
      const f = yield* locatorMaker
      const seen = yield* spy(client)
      const twoParts = yield* Deferred.make<void>()
      // Two and a half parts, then a stream that never ends.
      const input = Stream.concat(
        chunked(payload().subarray(0, 2.5 * P)),
        Stream.fromEffect(Deferred.succeed(twoParts, undefined)).pipe(Stream.drain, Stream.concat(Stream.never))
      )
      const fiber = yield* Effect.fork(Stream.run(input, store.put(f.at("interrupted"))))
      yield* Deferred.await(twoParts)
      // Parts 1 and 2 were handed to the uploader (part 2 once byte 5 MiB + 1 arrived).
      expect(seen.count("CreateMultipartUpload")).toBe(1)
      const exit = yield* Fiber.interrupt(fiber)
      expect(Exit.isInterrupted(exit)).toBe(true)
      expect(seen.distinct("AbortMultipartUpload", "UploadId")).toBe(1)
      expect(seen.count("CompleteMultipartUpload")).toBe(0)
      expect(Option.isNone(yield* store.head(f.at("interrupted")))).toBe(true)
      if (server.capabilities.multipartAbort === true) expect(yield* openUploads(f.key(""))).toEqual([])
    }), 60_000)

  test.scoped()("a failing abort never hides the put's own error; it is reported as OperationFailed", () =>
    Effect.gen(function*() {
      const { client } = yield* S3ClientInstance
      const f = yield* locatorMaker
      const events = yield* recordEvents
      const failedBefore = yield* counter(S3Metrics.multipartAborts, { outcome: "failure" })
      // The faults live only as long as this inner scope.
      const error = yield* Effect.scoped(Effect.gen(function*() {
        yield* inject(client, { command: "UploadPart", where: partNumber(2), status: 403, code: "AccessDenied", times: Infinity })
        yield* inject(client, { command: "AbortMultipartUpload", status: 403, code: "AccessDenied", times: Infinity })
        return yield* Effect.flip(putBytes(f.at("no-abort"), payload()))
      }))
      expect(error.reason).toBe("PermissionDenied")
      expect((yield* counter(S3Metrics.multipartAborts, { outcome: "failure" })) - failedBefore).toBe(1)
      const reported = yield* awaitEvent(events, isAbortFailure)
      expect(reported.reason).toBe("PermissionDenied")
      if (server.capabilities.multipartAbort === true) {
        // The upload really was left open; clean it up behind the adapter's back.
        const { settings } = yield* S3ClientInstance
        const open = yield* Effect.promise(() =>
          client.send(new S3.ListMultipartUploadsCommand({ Bucket: settings.bucket, Prefix: f.key("") })))
        expect((open.Uploads ?? []).map((u) => u.Key)).toEqual([f.key("no-abort")])
        for (const u of open.Uploads ?? []) {
          yield* Effect.promise(() =>
            client.send(new S3.AbortMultipartUploadCommand({ Bucket: settings.bucket, Key: u.Key, UploadId: u.UploadId })))
        }
        expect(yield* openUploads(f.key(""))).toEqual([])
      }
    }), 60_000)

  test.scoped()("a GET failing once with 500 is retried; a HEAD denied (403) fails at once", () =>
    Effect.gen(function*() {
      const { client } = yield* S3ClientInstance
      const store = yield* ImmutableObjectStore
      const f = yield* locatorMaker
      const content = randomBytes(70_000, 9)
      yield* putBytes(f.at("r"), content)
      const seen = yield* spy(client)
      yield* inject(client, { command: "GetObject", status: 500, code: "InternalError" })
      expectSame(yield* collect(store.get(f.at("r"))), content)
      expect(seen.count("GetObject")).toBe(2)
      seen.reset()
      yield* inject(client, { command: "HeadObject", status: 403, code: "AccessDenied" })
      const denied = yield* Effect.flip(store.head(f.at("r")))
      expect([denied.reason, denied.method]).toEqual(["PermissionDenied", "head"])
      expect(seen.count("HeadObject")).toBe(1)
    }))

  test.scoped()("a blob's GET body cut short fails the read with Corrupted, ranged or full; an intact one passes", () =>
    Effect.gen(function*() {
      const { client } = yield* S3ClientInstance
      const blobs = yield* BlobStore
      const content = randomBytes(200_000, Math.floor(Math.random() * 1e9))
      const { key } = yield* Stream.run(chunked(content), blobs.put())
      const range = { start: 1000, end: 150_000 }
      expectSame(yield* collect(blobs.get(key, range)), content.subarray(range.start, range.end))
      // Headers say 149,000 bytes; the body ends after 4,000 without an error from the connection.
      const cut = yield* truncateBody(client, { command: "GetObject", keep: 4000 })
      // Lengths, not bytes: a read that wrongly succeeds is reported as a number, not a 149,000-byte array.
      const ranged = yield* Effect.flip(Effect.map(collect(blobs.get(key, range)), (b) => b.length))
      expect(cut.fired()).toBe(1)
      expect([ranged._tag, ranged.reason, ranged.method]).toEqual(["BlobError", "Corrupted", "get"])
      yield* truncateBody(client, { command: "GetObject", keep: 4000 })
      expect((yield* Effect.flip(Effect.map(collect(blobs.get(key)), (b) => b.length))).reason).toBe("Corrupted")
      // The cuts are spent: the next reads are whole again.
      expectSame(yield* collect(blobs.get(key, range)), content.subarray(range.start, range.end))
      expectSame(yield* collect(blobs.get(key)), content)
    }))

  // Issue #15 finding 3: the object store's own reads (which uploads and the CAS build on) are length-checked too.
  test.scoped()("an object's GET body cut short fails the object-store read with Corrupted, ranged or full; never a clean end", () =>
    Effect.gen(function*() {
      const { client } = yield* S3ClientInstance
      const store = yield* ImmutableObjectStore
      const f = yield* locatorMaker
      const content = randomBytes(200_000, 12)
      yield* putBytes(f.at("cut"), content)
      const range = { start: 1000, end: 150_000 }
      const cut = yield* truncateBody(client, { command: "GetObject", keep: 4000 })
      const ranged = yield* Effect.flip(Effect.map(collect(store.get(f.at("cut"), range)), (b) => b.length))
      expect(cut.fired()).toBe(1)
      expect([ranged._tag, ranged.reason, ranged.method]).toEqual(["ObjectStoreError", "Corrupted", "get"])
      expect(ranged.message).toContain("4000 of the 149000 bytes")
      yield* truncateBody(client, { command: "GetObject", keep: 4000 })
      const full = yield* Effect.flip(Effect.map(collect(store.get(f.at("cut"))), (b) => b.length))
      expect([full.reason, full.method]).toEqual(["Corrupted", "get"])
      expectSame(yield* collect(store.get(f.at("cut"), range)), content.subarray(range.start, range.end))
      recordFault({
        area: "s3",
        fault: "GET body cut short (clean end, headers intact), object store",
        expected: "Corrupted, ranged or full",
        observed: `${ranged.reason} (ranged), ${full.reason} (full)`
      })
    }))

  test.scoped()("consumers that stop reading early release their sockets: the next 20 requests succeed", () =>
    Effect.gen(function*() {
      const store = yield* ImmutableObjectStore
      const f = yield* locatorMaker
      const content = randomBytes(8 * MiB, 8)
      yield* putBytes(f.at("long"), content)
      // This client has 2 sockets: two leaked responses would block every later request.
      for (let i = 0; i < 6; i++) {
        const first = yield* Stream.runHead(store.get(f.at("long")))
        expect(Option.isSome(first)).toBe(true)
        const few = yield* collect(Stream.take(store.get(f.at("long"), { start: 1000, end: 3 * MiB }), 2))
        expect(few.length).toBeGreaterThan(0)
      }
      const guard = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
        Effect.timeoutFail(effect, { duration: "20 seconds", onTimeout: () => "a request waited for a socket: one leaked" as const })
      for (let i = 0; i < 20; i++) {
        if (i % 2 === 0) {
          expect(Option.map(yield* guard(store.head(f.at("long"))), (s) => s.size)).toEqual(Option.some(content.length))
        } else {
          expectSame(yield* guard(collect(store.get(f.at("long"), { start: i, end: i + 100 }))), content.subarray(i, i + 100))
        }
      }
      expectSame(yield* guard(read(f.at("long"))), content)
    }), 60_000)

  test.scoped()("a failed stream's error is the caller's, and the upload is aborted", () =>
    Effect.gen(function*() {
      const { client } = yield* S3ClientInstance
      const store = yield* MutableObjectStore
      const f = yield* locatorMaker
      const seen = yield* spy(client)
      const broken = Stream.concat(chunked(payload().subarray(0, P + 10)), Stream.fail("disk unplugged" as const))
      const exit = yield* Effect.exit(Stream.run(broken, store.put(f.at("broken"))))
      expect(Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()).toEqual(Option.some("disk unplugged"))
      expect(seen.distinct("AbortMultipartUpload", "UploadId")).toBe(1)
      expect(Option.isNone(yield* store.head(f.at("broken")))).toBe(true)
    }), 60_000)
})

