/**
 * Streamed uploads on every S3 server: the single-request / multipart
 * boundary, part sizing (declared sizes, growth for unknown lengths, equal
 * parts with a part limit), bounded parts in flight, multipart copy, copies
 * of keys that need URL-encoding, and the locator ↔ key mapping.
 */
import * as S3 from "@aws-sdk/client-s3"
import { expect } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { createHash } from "node:crypto"
import { S3ClientInstance } from "../../../src/backends/s3/S3Client.js"
import * as BlobLocator from "../../../src/core/BlobLocator.js"
import { MutableObjectStore } from "../../../src/ports/ObjectStore.js"
import * as MetricKeys from "../../../src/kit/MetricKeys.js"
import * as S3Metrics from "../../../src/backends/s3/S3Metrics.js"
import { chunked, collect, firstDifference, MiB, randomBytes, sameBytes, utf8 } from "../../../src/testing/bytes.js"
import { counter, eachServer, locatorMaker, observations, putBytes, read, storeLayer as fixturesLayer, useServers } from "./fixtures.js"
import { sentHeaders, spy } from "./sdk.js"

useServers()

/** The part size every test server runs with (S3's minimum). */
const P = 5 * MiB

let big: Uint8Array | undefined
/** 3.5 parts of pseudo-random bytes, generated once. */
const threeAndAHalf = () => (big ??= randomBytes(3.5 * P, 35))

const expectSame = (got: Uint8Array, want: Uint8Array) => {
  if (!sameBytes(got, want)) expect.fail(firstDifference(got, want))
}

/** Sizes (bytes of each UploadPart body) in part order. */
const partSizes = (calls: ReadonlyArray<{ readonly command: string; readonly input: Readonly<Record<string, unknown>> }>) =>
  calls
    .filter((c) => c.command === "UploadPart")
    .sort((a, b) => Number(a.input.PartNumber) - Number(b.input.PartNumber))
    .map((c) => (c.input.Body as Uint8Array).length)

eachServer("S3 multipart boundaries", (c) => fixturesLayer(c, "mp"), (test) => {
  const cases: ReadonlyArray<readonly [string, number, ReadonlyArray<number> | "single"]> = [
    ["0 B", 0, "single"],
    ["1 B", 1, "single"],
    ["exactly one part", P, "single"],
    ["one part + 1 B", P + 1, [P, 1]],
    ["3.5 parts", 3.5 * P, [P, P, P, P / 2]]
  ]
  for (const [label, size, expected] of cases) {
    test.scoped()(`${label}: byte-exact round trip, ${expected === "single" ? "one PutObject" : `${expected.length} parts`}`, () =>
      Effect.gen(function*() {
        const { client } = yield* S3ClientInstance
        const f = yield* locatorMaker
        const bytes = size === 3.5 * P ? threeAndAHalf() : randomBytes(size, size + 7)
        const seen = yield* spy(client)
        const stat = yield* putBytes(f.at("obj"), bytes)
        expect(stat.size).toBe(size)
        if (expected === "single") {
          expect(seen.commands()).toEqual(["PutObject"])
        } else {
          expect(seen.count("CreateMultipartUpload")).toBe(1)
          expect(partSizes(seen.calls)).toEqual(expected)
          expect(seen.count("CompleteMultipartUpload")).toBe(1)
          expect(seen.count("PutObject")).toBe(0)
        }
        expectSame(yield* read(f.at("obj")), bytes)
        expect(Option.map(yield* Effect.flatMap(MutableObjectStore, (s) => s.head(f.at("obj"))), (s) => s.size))
          .toEqual(Option.some(size))
      }), 60_000)
  }

  test.scoped()("by default (payloadSigning auto) bodies sent over plain HTTP are hashed into the signature", () =>
    Effect.gen(function*() {
      const { client } = yield* S3ClientInstance
      const f = yield* locatorMaker
      const headers = yield* sentHeaders(client)
      const bytes = randomBytes(1000, 12)
      yield* putBytes(f.at("signed"), bytes)
      const put = headers.find((h) => h.command === "PutObject")
      expect(put?.headers["x-amz-content-sha256"]).toBe(createHash("sha256").update(bytes).digest("hex"))
    }))

  test.scoped()("a declared size sizes equal parts; the stream must match it", () =>
    Effect.gen(function*() {
      const { client } = yield* S3ClientInstance
      const f = yield* locatorMaker
      const bytes = threeAndAHalf()
      const seen = yield* spy(client)
      yield* putBytes(f.at("sized"), bytes, { size: bytes.length })
      expect(partSizes(seen.calls)).toEqual([P, P, P, P / 2])
      expectSame(yield* read(f.at("sized")), bytes)
      // Declared longer than the stream: refused at the end, the upload aborted, nothing visible.
      seen.reset()
      const error = yield* Effect.flip(putBytes(f.at("short"), bytes, { size: bytes.length + 1 }))
      expect(error.reason).toBe("InvalidInput")
      expect(seen.distinct("AbortMultipartUpload", "UploadId")).toBe(1)
      expect(seen.count("CompleteMultipartUpload")).toBe(0)
      expect(Option.isNone(yield* Effect.flatMap(MutableObjectStore, (s) => s.head(f.at("short"))))).toBe(true)
    }), 60_000)

  test.scoped()("a stream of unknown length, pulled lazily, round-trips", () =>
    Effect.gen(function*() {
      const f = yield* locatorMaker
      const bytes = threeAndAHalf()
      // Generated piece by piece as the sink pulls: the sink cannot know the length.
      const lazy = Stream.unfold(0, (offset) =>
        offset >= bytes.length ? Option.none() : Option.some([bytes.slice(offset, offset + 100_003), offset + 100_003] as const))
      const store = yield* MutableObjectStore
      const stat = yield* Stream.run(lazy, store.put(f.at("lazy")))
      expect(stat.size).toBe(bytes.length)
      expectSame(yield* read(f.at("lazy")), bytes)
    }), 60_000)

  test.scoped()("metrics: bytes out and in, parts, latency of put and get", () =>
    Effect.gen(function*() {
      const f = yield* locatorMaker
      const bytes = randomBytes(P + 10, 3)
      const outBefore = yield* counter(S3Metrics.bytesOut, { backend: "s3" })
      const inBefore = yield* counter(S3Metrics.bytesIn, { backend: "s3" })
      const partsBefore = yield* counter(S3Metrics.multipartParts, { backend: "s3", kind: "upload" })
      yield* putBytes(f.at("m"), bytes)
      yield* read(f.at("m"))
      expect((yield* counter(S3Metrics.bytesOut, { backend: "s3" })) - outBefore).toBe(bytes.length)
      expect((yield* counter(S3Metrics.bytesIn, { backend: "s3" })) - inBefore).toBe(bytes.length)
      expect((yield* counter(S3Metrics.multipartParts, { backend: "s3", kind: "upload" })) - partsBefore).toBe(2)
      expect(yield* observations(MetricKeys.backendLatencySeconds, { backend: "s3", method: "put" })).toBeGreaterThan(0)
      expect(yield* observations(MetricKeys.backendLatencySeconds, { backend: "s3", method: "get" })).toBeGreaterThan(0)
    }), 60_000)
})

eachServer("S3 part growth (maxParts 10)", (c) => fixturesLayer(c, "grow", { maxParts: 10, concurrency: 2 }), (test) => {
  test.scoped()("an unknown length doubles the part size per stage (5, 10 MiB, then the rest)", () =>
    Effect.gen(function*() {
      const { client } = yield* S3ClientInstance
      const f = yield* locatorMaker
      const bytes = randomBytes(16 * MiB, 16)
      const seen = yield* spy(client)
      yield* putBytes(f.at("grown"), bytes)
      // maxParts 10 makes each stage one part long: 5 MiB, 10 MiB, then 1 MiB left.
      expect(partSizes(seen.calls)).toEqual([P, 2 * P, MiB])
      expectSame(yield* read(f.at("grown")), bytes)
    }), 60_000)
})

eachServer(
  "S3 part cap (maxPartSize 10 MiB, maxParts 3, concurrency 1)",
  (c) => fixturesLayer(c, "cap", { maxParts: 3, maxPartSize: 2 * P, concurrency: 1 }),
  (test) => {
    // Issue #15 finding 7: parts of an unknown length stop growing at maxPartSize (held memory is bounded),
    // and a stream beyond what that allows fails with InvalidInput instead of growing the parts on.
    test.scoped()("an unknown length grows to maxPartSize and no further; one byte beyond the plan is InvalidInput, aborted", () =>
      Effect.gen(function*() {
        const { client } = yield* S3ClientInstance
        const f = yield* locatorMaker
        const bytes = randomBytes(5 * P + 1, 51)
        const seen = yield* spy(client)
        yield* putBytes(f.at("fits"), bytes.subarray(0, 5 * P))
        expect(partSizes(seen.calls)).toEqual([P, 2 * P, 2 * P])
        seen.reset()
        const error = yield* Effect.flip(putBytes(f.at("too-long"), bytes))
        expect([error.reason, error.method]).toEqual(["InvalidInput", "put"])
        expect(error.message).toContain("maxPartSize")
        expect(Math.max(...partSizes(seen.calls))).toBe(2 * P)
        expect(seen.distinct("AbortMultipartUpload", "UploadId")).toBe(1)
        expect(Option.isNone(yield* Effect.flatMap(MutableObjectStore, (s) => s.head(f.at("too-long"))))).toBe(true)
        expectSame(yield* read(f.at("fits")), bytes.subarray(0, 5 * P))
      }), 60_000)

    test.scoped()("a declared size beyond maxParts × maxPartSize fails before any request", () =>
      Effect.gen(function*() {
        const { client } = yield* S3ClientInstance
        const f = yield* locatorMaker
        const seen = yield* spy(client)
        const error = yield* Effect.flip(putBytes(f.at("declared"), randomBytes(1000, 3), { size: 6 * P + 1 }))
        expect([error.reason, error.method]).toEqual(["InvalidInput", "put"])
        expect(error.message).toContain("maxPartSize")
        expect(seen.commands()).toEqual([])
      }))
  }
)

eachServer(
  "S3 equal parts (maxParts 2, concurrency 1)",
  (c) => fixturesLayer(c, "equal", { maxParts: 2, equalParts: true, concurrency: 1 }),
  (test) => {
    test.scoped()("at most maxParts × partSize bytes; one more fails with InvalidInput and aborts", () =>
      Effect.gen(function*() {
        const { client } = yield* S3ClientInstance
        const f = yield* locatorMaker
        const bytes = randomBytes(2 * P + 1, 2)
        const seen = yield* spy(client)
        yield* putBytes(f.at("fits"), bytes.subarray(0, 2 * P))
        expect(partSizes(seen.calls)).toEqual([P, P])
        seen.reset()
        const error = yield* Effect.flip(putBytes(f.at("too-long"), bytes))
        expect(error.reason).toBe("InvalidInput")
        expect(error.message).toContain("2 parts")
        expect(seen.distinct("AbortMultipartUpload", "UploadId")).toBe(1)
        expect(Option.isNone(yield* Effect.flatMap(MutableObjectStore, (s) => s.head(f.at("too-long"))))).toBe(true)
        expectSame(yield* read(f.at("fits")), bytes.subarray(0, 2 * P))
      }), 60_000)
  }
)

eachServer("S3 bounded uploads (concurrency 2)", (c) => fixturesLayer(c, "bound", { concurrency: 2 }), (test) => {
  test.scoped()("never more than `concurrency` parts in flight", () =>
    Effect.gen(function*() {
      const { client } = yield* S3ClientInstance
      const f = yield* locatorMaker
      const bytes = randomBytes(6 * P, 6)
      const seen = yield* spy(client)
      // Arrives as fast as it can be taken: only the slots hold the producer back.
      yield* Effect.flatMap(MutableObjectStore, (s) => Stream.run(chunked(bytes, { min: MiB, max: 2 * MiB }), s.put(f.at("six"))))
      expect(seen.count("UploadPart")).toBe(6)
      expect(seen.maxInFlight("UploadPart")).toBeGreaterThanOrEqual(1)
      expect(seen.maxInFlight("UploadPart")).toBeLessThanOrEqual(2)
      expectSame(yield* read(f.at("six")), bytes)
    }), 60_000)
})

eachServer(
  "S3 copies",
  (c) => fixturesLayer(c, "copy", { multipartCopyThreshold: P, copyPartSize: P }),
  (test, server) => {
    test.scoped(server.capabilities.uploadPartCopy)("above the threshold, copy is a multipart UploadPartCopy; type and metadata kept", () =>
      Effect.gen(function*() {
        const { client } = yield* S3ClientInstance
        const store = yield* MutableObjectStore
        const f = yield* locatorMaker
        const bytes = randomBytes(2 * P + 12345, 12)
        yield* putBytes(f.at("src"), bytes, { contentType: "application/x-test", metadata: { origin: "copy-test" } })
        const seen = yield* spy(client)
        const stat = yield* store.copy(f.at("src"), f.at("dst"))
        expect(stat.size).toBe(bytes.length)
        expect(seen.count("UploadPartCopy")).toBe(3)
        expect(seen.count("CopyObject")).toBe(0)
        expectSame(yield* read(f.at("dst")), bytes)
        const h = Option.getOrThrow(yield* store.head(f.at("dst")))
        expect([h.contentType, h.metadata]).toEqual([Option.some("application/x-test"), { origin: "copy-test" }])
        // move = copy + delete
        yield* store.move(f.at("dst"), f.at("moved"))
        expect(Option.isNone(yield* store.head(f.at("dst")))).toBe(true)
        expectSame(yield* read(f.at("moved")), bytes)
      }), 60_000)

    test.scoped()("at or below the threshold, copy is one CopyObject", () =>
      Effect.gen(function*() {
        const { client } = yield* S3ClientInstance
        const store = yield* MutableObjectStore
        const f = yield* locatorMaker
        yield* putBytes(f.at("small"), utf8("small"))
        const seen = yield* spy(client)
        yield* store.copy(f.at("small"), f.at("small-copy"))
        expect(seen.commands()).toEqual(["HeadObject", "CopyObject"])
        expectSame(yield* read(f.at("small-copy")), utf8("small"))
      }))

    test.scoped(server.capabilities.encodedCopySource)("keys with spaces, '+', '%' and non-ASCII copy and move", () =>
      Effect.gen(function*() {
        const store = yield* MutableObjectStore
        const f = yield* locatorMaker
        const odd = "dir with space/a+b%20c é ～ 😀.bin"
        yield* putBytes(f.at(odd), utf8("odd"))
        yield* store.copy(f.at(odd), f.at(`copy of ${odd}`))
        expectSame(yield* read(f.at(`copy of ${odd}`)), utf8("odd"))
        yield* store.move(f.at(`copy of ${odd}`), f.at("plain"))
        expectSame(yield* read(f.at("plain")), utf8("odd"))
        expect(Option.isNone(yield* store.head(f.at(`copy of ${odd}`)))).toBe(true)
      }))

    test.scoped()("copy onto itself keeps the object", () =>
      Effect.gen(function*() {
        const store = yield* MutableObjectStore
        const f = yield* locatorMaker
        yield* putBytes(f.at("self"), utf8("me"))
        expect((yield* store.copy(f.at("self"), f.at("self"))).size).toBe(2)
        expect((yield* store.move(f.at("self"), f.at("self"))).size).toBe(2)
        expectSame(yield* read(f.at("self")), utf8("me"))
      }))
  }
)

eachServer("S3 unsigned payloads", (c) => fixturesLayer(c, "unsigned", { payloadSigning: "unsigned" }), (test) => {
  test.scoped()("payloadSigning unsigned: bodies are not hashed into signatures, and the server accepts them", () =>
    Effect.gen(function*() {
      const { client } = yield* S3ClientInstance
      const f = yield* locatorMaker
      const headers = yield* sentHeaders(client)
      const bytes = randomBytes(P + 3, 31)
      yield* putBytes(f.at("single"), bytes.subarray(0, 1000))
      yield* putBytes(f.at("multi"), bytes)
      const writes = headers.filter((h) => h.command === "PutObject" || h.command === "UploadPart")
      expect(writes.length).toBe(3)
      for (const w of writes) {
        expect(w.headers["x-amz-content-sha256"]).toBe("UNSIGNED-PAYLOAD")
        expect(w.headers["authorization"]).toMatch(/^AWS4-HMAC-SHA256 /)
      }
      expectSame(yield* read(f.at("multi")), bytes)
      expectSame(yield* read(f.at("single")), bytes.subarray(0, 1000))
    }), 60_000)
})

eachServer("S3 locators and key prefix", (c) => fixturesLayer(c, "loc", { prefix: "tenant-a/" }), (test) => {
  test.scoped()("paths map to <prefix><path>; the prefix never shows in locators", () =>
    Effect.gen(function*() {
      const { client, settings } = yield* S3ClientInstance
      const store = yield* MutableObjectStore
      const f = yield* locatorMaker
      yield* putBytes(f.at("x/y"), utf8("xy"))
      const raw = yield* Effect.promise(() =>
        client.send(new S3.HeadObjectCommand({ Bucket: settings.bucket, Key: `${settings.prefix}${f.base}x/y` })))
      expect(raw.ContentLength).toBe(2)
      expect(settings.prefix.startsWith("tenant-a/")).toBe(true)
      const listed = yield* Stream.runCollect(store.list(f.prefix()))
      expect(Array.from(listed, (s) => BlobLocator.render(s.locator))).toEqual([BlobLocator.render(f.at("x/y"))])
    }))

  test.scoped()("another bucket or scheme is InvalidInput, before any request", () =>
    Effect.gen(function*() {
      const { client } = yield* S3ClientInstance
      const store = yield* MutableObjectStore
      const f = yield* locatorMaker
      const seen = yield* spy(client)
      const elsewhere = [
        new BlobLocator.BlobLocator({ scheme: "s3", bucket: "some-other-bucket", path: "x" }),
        new BlobLocator.BlobLocator({ scheme: "file", bucket: f.bucket, path: "x" })
      ]
      for (const l of elsewhere) {
        expect((yield* Effect.flip(store.head(l))).reason).toBe("InvalidInput")
        expect((yield* Effect.flip(collect(store.get(l)))).reason).toBe("InvalidInput")
        expect((yield* Effect.flip(Stream.run(Stream.make(utf8("x")), store.put(l)))).reason).toBe("InvalidInput")
        expect((yield* Effect.flip(store.delete(l))).reason).toBe("InvalidInput")
        expect((yield* Effect.flip(store.copy(f.at("a"), l))).reason).toBe("InvalidInput")
      }
      const otherPrefix = new BlobLocator.LocatorPrefix({ scheme: "s3", bucket: "some-other-bucket", path: "" })
      expect((yield* Effect.flip(Stream.runDrain(store.list(otherPrefix)))).reason).toBe("InvalidInput")
      expect(seen.calls).toEqual([])
    }))

  test.scoped()("list pages through more than 1,000 keys", () =>
    Effect.gen(function*() {
      const { client } = yield* S3ClientInstance
      const store = yield* MutableObjectStore
      const f = yield* locatorMaker
      const names = Array.from({ length: 1001 }, (_, i) => `k${String(i).padStart(4, "0")}`)
      yield* Effect.forEach(names, (n) => putBytes(f.at(`many/${n}`), utf8(n)), { concurrency: 16, discard: true })
      const seen = yield* spy(client)
      const listed = yield* Stream.runCollect(store.list(f.prefix("many/")))
      expect(Array.from(listed, (s) => s.locator.path)).toEqual(names.map((n) => `${f.base}many/${n}`))
      expect(seen.count("ListObjectsV2")).toBe(2)
      // Taking a few stops after the first page.
      seen.reset()
      expect(Array.from(yield* Stream.runCollect(Stream.take(store.list(f.prefix("many/")), 3))).length).toBe(3)
      expect(seen.count("ListObjectsV2")).toBe(1)
    }), 60_000)

})
