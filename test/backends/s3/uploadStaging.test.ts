/**
 * S3UploadStaging on every S3 server: segments as native multipart parts
 * (out of order, in parallel, re-sent), pieces for unaligned or short
 * segments, resuming from ListParts in a new instance with only the state
 * string, completion into the S3 blob store (key, dedup, expected-key
 * mismatch), and aborts that leave no multipart upload and no pieces.
 */
import * as S3 from "@aws-sdk/client-s3"
import { expect } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { createHash, randomUUID } from "node:crypto"
import { S3ClientInstance } from "../../../src/backends/s3/S3Client.js"
import * as S3Client from "../../../src/backends/s3/S3Client.js"
import * as S3UploadStaging from "../../../src/backends/s3/S3UploadStaging.js"
import { BinaryKey } from "../../../src/core/BinaryKey.js"
import * as RangeSet from "../../../src/core/RangeSet.js"
import { BlobStore } from "../../../src/ports/BlobStore.js"
import { UploadStaging } from "../../../src/ports/UploadStaging.js"
import { type Capability, unsupported } from "../../../src/testing/capabilities.js"
import { chunked, collect, firstDifference, MiB, randomBytes, sameBytes } from "../../../src/testing/bytes.js"
import * as Harness from "../../harness/s3.js"
import { eachServer, openUploads, storeLayer, useServers } from "./fixtures.js"
import { spy } from "./sdk.js"

useServers()

/** Part size of every test (S3's minimum; moto enforces it like AWS). */
const P = 5 * MiB

/** ListParts, which this staging relies on to prove and complete parts. */
const listParts = (c: Harness.Candidate): Capability =>
  c.name === "s3rver" ? unsupported("s3rver has no ListParts (405): use the object staging there") : true

let shared: Uint8Array | undefined
/** Two whole parts and a short last one, generated once. */
const content = () => (shared ??= randomBytes(2 * P + 12_345, 77))

const newId = () => randomUUID().replaceAll("-", "")
const keyOf = (bytes: Uint8Array) =>
  new BinaryKey({ algorithm: "sha256", digest: createHash("sha256").update(bytes).digest("hex"), size: bytes.length })
const spanOf = (start: number, end: number) => RangeSet.unsafeSpan(start, end)

const expectSame = (got: Uint8Array, want: Uint8Array) => {
  if (!sameBytes(got, want)) expect.fail(firstDifference(got, want))
}

/** A staging instance on the client in context. */
const staging = S3UploadStaging.make()

/** Writes `bytes[start, end)` as one segment, in uneven chunks. */
const write = (s: UploadStaging["Type"], id: string, state: string, bytes: Uint8Array, start: number, end: number, size?: number) =>
  s.writeSegment(id, state, start, chunked(bytes.subarray(start, end), { min: 1, max: 300_000 }), size)

/** Keys of every object under the upload's staging key (the completed object and the pieces). */
const stagedObjects = (id: string) =>
  Effect.flatMap(S3ClientInstance, ({ client, settings }) =>
    Effect.promise(() =>
      client.send(new S3.ListObjectsV2Command({ Bucket: settings.bucket, Prefix: `${settings.prefix}uploads/${id}` }))
    )).pipe(Effect.map((out) => (out.Contents ?? []).map((o) => o.Key ?? "")))

const stagingKey = (id: string) => Effect.map(S3ClientInstance, ({ settings }) => `${settings.prefix}uploads/${id}`)

const readBlob = (key: BinaryKey) => Effect.flatMap(BlobStore, (b) => collect(b.get(key)))

eachServer("S3UploadStaging", (c) => storeLayer(c, "ups"), (test, server) => {
  const multipart = listParts(server)

  test.scoped(multipart)("parts written out of order and in parallel, one re-sent, complete into a byte-exact blob", () =>
    Effect.gen(function*() {
      const s = yield* staging
      const bytes = content()
      const size = bytes.length
      const id = newId()
      const state = yield* s.begin(id, size)
      expect(s.name).toBe("s3-multipart")
      expect(s.segmentSize).toBe(P)
      expect(JSON.parse(state)).toMatchObject({ key: yield* stagingKey(id), partSize: P })
      const spans = yield* Effect.all([
        write(s, id, state, bytes, 2 * P, size, size),
        write(s, id, state, bytes, P, 2 * P, size),
        write(s, id, state, bytes, 0, P, size)
      ], { concurrency: "unbounded" })
      expect(spans.map(Option.getOrThrow)).toEqual([spanOf(2 * P, size), spanOf(P, 2 * P), spanOf(0, P)])
      // Re-sending a part replaces it with the same bytes: harmless.
      expect(yield* write(s, id, state, bytes, P, 2 * P, size)).toEqual(Option.some(spanOf(P, 2 * P)))
      expect(yield* s.landed(id, state)).toEqual([spanOf(0, size)])
      // Every segment was a whole part (or the last): no piece objects.
      expect(yield* stagedObjects(id)).toEqual([])

      const result = yield* s.complete(id, state, size, {})
      expect(result.key).toEqual(keyOf(bytes))
      expect(result.size).toBe(size)
      expect(result.deduplicated).toBe(false)
      expectSame(yield* readBlob(result.key), bytes)
      // Nothing staged remains: no object at the staging key, no pieces, no open multipart upload.
      expect(yield* stagedObjects(id)).toEqual([])
      if (server.capabilities.multipartAbort === true) expect(yield* openUploads(yield* stagingKey(id))).toEqual([])
    }), 120_000)

  test.scoped(multipart, server.capabilities.uploadPartCopy)(
    "unaligned and short pieces (size unknown until complete) are turned into parts at complete",
    () =>
      Effect.gen(function*() {
        const s = yield* staging
        const { client } = yield* S3ClientInstance
        const bytes = randomBytes(2 * P + 100, 5)
        const size = bytes.length
        const id = newId()
        const state = yield* s.begin(id, undefined)
        // Part 1 arrives as two pieces, part 2 whole, and the last part short while the size is unknown.
        yield* write(s, id, state, bytes, 0, P / 2)
        yield* write(s, id, state, bytes, P / 2, P)
        yield* write(s, id, state, bytes, P, 2 * P)
        yield* write(s, id, state, bytes, 2 * P, size)
        // A re-sent piece replaces itself.
        yield* write(s, id, state, bytes, P / 2, P)
        expect((yield* stagedObjects(id)).length).toBe(3)
        expect(yield* s.landed(id, state)).toEqual([spanOf(0, size)])

        const seen = yield* spy(client)
        const result = yield* s.complete(id, state, size, {})
        expect(result.key).toEqual(keyOf(bytes))
        // Part 1 from two pieces goes through us once; the last part is one piece, copied by S3.
        expect(seen.count("UploadPart")).toBe(1)
        expect(seen.count("UploadPartCopy")).toBe(1)
        expectSame(yield* readBlob(result.key), bytes)
        expect(yield* stagedObjects(id)).toEqual([])
      }),
    120_000
  )

  test.scoped(multipart)("a new instance on a new client resumes from ListParts with only the state string", () =>
    Effect.gen(function*() {
      const first = yield* staging
      const { settings } = yield* S3ClientInstance
      const bytes = content()
      const size = bytes.length
      const id = newId()
      const state = yield* first.begin(id, size)
      yield* write(first, id, state, bytes, P, 2 * P, size)
      yield* write(first, id, state, bytes, 2 * P, size, size)

      // "Another process": its own client (connection pool) and staging instance, nothing shared but the state.
      const fresh = yield* S3Client.fromSettings(settings)
      const second = yield* S3UploadStaging.make().pipe(Effect.provideService(S3ClientInstance, fresh))
      expect(yield* second.landed(id, state)).toEqual([spanOf(P, size)])
      yield* write(second, id, state, bytes, 0, P, size)
      expect(yield* second.landed(id, state)).toEqual([spanOf(0, size)])
      const result = yield* second.complete(id, state, size, { expectedKey: keyOf(bytes) })
      expect(result.key).toEqual(keyOf(bytes))
      expectSame(yield* readBlob(result.key), bytes)
    }), 120_000)

  test.scoped(multipart)("an expected-key mismatch stores nothing; abort then leaves nothing", () =>
    Effect.gen(function*() {
      const s = yield* staging
      const blobs = yield* BlobStore
      const bytes = randomBytes(P + 10, 9)
      const other = randomBytes(P + 10, 10)
      const id = newId()
      const state = yield* s.begin(id, bytes.length)
      yield* write(s, id, state, bytes, 0, P, bytes.length)
      yield* write(s, id, state, bytes, P, bytes.length, bytes.length)
      const error = yield* Effect.flip(s.complete(id, state, bytes.length, { expectedKey: keyOf(other) }))
      expect(error.reason).toBe("InvalidInput")
      expect(Option.isNone(yield* blobs.stat(keyOf(bytes)))).toBe(true)
      expect(Option.isNone(yield* blobs.stat(keyOf(other)))).toBe(true)
      yield* s.abort(id, state)
      expect(yield* stagedObjects(id)).toEqual([])
      if (server.capabilities.multipartAbort === true) expect(yield* openUploads(yield* stagingKey(id))).toEqual([])
    }), 120_000)

  test.scoped(multipart)("complete can be repeated after the multipart upload was completed but not adopted", () =>
    Effect.gen(function*() {
      const s = yield* staging
      const bytes = randomBytes(P + 20, 14)
      const id = newId()
      const state = yield* s.begin(id, bytes.length)
      yield* write(s, id, state, bytes, 0, P, bytes.length)
      yield* write(s, id, state, bytes, P + 5, bytes.length, bytes.length)
      yield* write(s, id, state, bytes, P, P + 5, bytes.length)
      // The adoption refuses (wrong expected key) after CompleteMultipartUpload: the object stays staged.
      yield* Effect.flip(s.complete(id, state, bytes.length, { expectedKey: keyOf(randomBytes(P + 20, 15)) }))
      expect(yield* stagedObjects(id)).toEqual([yield* stagingKey(id)])
      expect(yield* s.landed(id, state)).toEqual([spanOf(0, bytes.length)])
      const result = yield* s.complete(id, state, bytes.length, { expectedKey: keyOf(bytes) })
      expectSame(yield* readBlob(result.key), bytes)
      expect(yield* stagedObjects(id)).toEqual([])
    }), 120_000)

  test.scoped(multipart)("abort removes the multipart upload and the pieces, and may be repeated", () =>
    Effect.gen(function*() {
      const s = yield* staging
      const bytes = randomBytes(P + 1000, 11)
      const id = newId()
      const state = yield* s.begin(id, undefined)
      yield* write(s, id, state, bytes, 0, P)
      yield* write(s, id, state, bytes, P + 10, P + 1000)
      expect(yield* s.landed(id, state)).toEqual([spanOf(0, P), spanOf(P + 10, P + 1000)])
      if (server.capabilities.multipartAbort === true) {
        expect(yield* openUploads(yield* stagingKey(id))).toEqual([yield* stagingKey(id)])
      }
      yield* s.abort(id, state)
      yield* s.abort(id, state)
      expect(yield* stagedObjects(id)).toEqual([])
      if (server.capabilities.multipartAbort === true) expect(yield* openUploads(yield* stagingKey(id))).toEqual([])
      expect(yield* s.landed(id, state)).toEqual([])
    }), 120_000)

  test.scoped(multipart)("small and empty uploads; the same content twice is stored once; a matching hint skips the read", () =>
    Effect.gen(function*() {
      const s = yield* staging
      const { client } = yield* S3ClientInstance
      const bytes = randomBytes(1000, 12)
      const empty = new Uint8Array(0)

      const id0 = newId()
      const state0 = yield* s.begin(id0, 0)
      expect(yield* s.landed(id0, state0)).toEqual([])
      const none = yield* s.complete(id0, state0, 0, {})
      expect(none.key).toEqual(keyOf(empty))
      expect((yield* readBlob(none.key)).length).toBe(0)

      const results = []
      for (const trusted of [false, true]) {
        const id = newId()
        const state = yield* s.begin(id, bytes.length)
        yield* write(s, id, state, bytes, 0, bytes.length, bytes.length)
        const seen = yield* spy(client)
        const hint = trusted ? { key: keyOf(bytes), segments: [{ span: spanOf(0, bytes.length), key: keyOf(bytes) }] } : undefined
        results.push(yield* s.complete(id, state, bytes.length, {}, hint))
        // Without a hint the staged object is read back to be hashed; with one that matches the parts, not.
        expect(seen.count("GetObject")).toBe(trusted ? 0 : 1)
        expect(yield* stagedObjects(id)).toEqual([])
      }
      expect(results.map((r) => [r.key, r.deduplicated])).toEqual([[keyOf(bytes), false], [keyOf(bytes), true]])
      expectSame(yield* readBlob(keyOf(bytes)), bytes)
    }), 120_000)

  test.effect()("its layer provides it over the client in context, with the configured part size", () =>
    Effect.gen(function*() {
      const shape = yield* S3ClientInstance
      const s = yield* Effect.provide(
        UploadStaging,
        S3UploadStaging.layer({ uploadPartSize: 2 * P }).pipe(Layer.provide(Layer.succeed(S3ClientInstance, shape)))
      )
      expect([s.name, s.segmentSize]).toEqual(["s3-multipart", 2 * P])
      const error = yield* Effect.flip(
        S3UploadStaging.make({ uploadPartSize: P - 1 }).pipe(Effect.provideService(S3ClientInstance, shape))
      )
      expect(error.reason).toBe("InvalidInput")
    }))

  test.effect(multipart)("malformed input fails with InvalidInput, never a defect", () =>
    Effect.gen(function*() {
      const s = yield* staging
      const id = newId()
      const state = yield* s.begin(id, undefined)
      const errors = yield* Effect.all([
        Effect.flip(s.begin("../escape", 10)),
        Effect.flip(s.landed(id, "not json")),
        Effect.flip(s.writeSegment(id, state, -1, Stream.make(new Uint8Array(1)), undefined)),
        // A segment may not cross a part boundary.
        Effect.flip(s.writeSegment(id, state, 0, Stream.make(new Uint8Array(P + 1)), undefined))
      ])
      expect(errors.map((e) => e.reason)).toEqual(["InvalidInput", "InvalidInput", "InvalidInput", "InvalidInput"])
      // An empty stream writes nothing.
      expect(yield* s.writeSegment(id, state, 0, Stream.empty, undefined)).toEqual(Option.none())
      yield* s.abort(id, state)
    }))
})

eachServer("S3UploadStaging without ListParts", (c) => storeLayer(c, "ups-nolist"), (test, server) => {
  test.scoped(listParts(server) === true ? "the server has ListParts (covered above)" : undefined)(
    "landed reports the pieces; complete fails with Unsupported",
    () =>
      Effect.gen(function*() {
        const s = yield* staging
        const bytes = randomBytes(P + 100, 13)
        const id = newId()
        const state = yield* s.begin(id, bytes.length)
        yield* write(s, id, state, bytes, 0, P, bytes.length)
        yield* write(s, id, state, bytes, P + 10, bytes.length, bytes.length)
        expect(yield* s.landed(id, state)).toEqual([spanOf(P + 10, bytes.length)])
        const error = yield* Effect.flip(s.complete(id, state, bytes.length, {}))
        expect(error.reason).toBe("Unsupported")
        yield* s.abort(id, state)
        expect(yield* stagedObjects(id)).toEqual([])
      }),
    60_000
  )
})

// The Uploads conformance suite over this staging (as the CLI composes it) is in test/uploads/s3.test.ts.
