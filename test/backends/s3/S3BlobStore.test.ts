/**
 * The BlobStore conformance suite against S3BlobStore, and against
 * CasBlobStore over the S3 object store (memory KV and replica index), on
 * every S3 server the harness can start; then what is specific to storing
 * blobs natively on S3:
 * the requests each path makes, staging cleanup, metadata, the expected-key
 * shortcuts, and corruption detection.
 */
import * as S3 from "@aws-sdk/client-s3"
import { expect } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { createHash } from "node:crypto"
import * as MemoryKeyValueStore from "../../../src/backends/memory/MemoryKeyValueStore.js"
import * as S3BlobStore from "../../../src/backends/s3/S3BlobStore.js"
import { S3ClientInstance } from "../../../src/backends/s3/S3Client.js"
import * as S3ObjectStore from "../../../src/backends/s3/S3ObjectStore.js"
import { BinaryKey } from "../../../src/core/BinaryKey.js"
import * as BlobLocator from "../../../src/core/BlobLocator.js"
import type { BlobWritePlan } from "../../../src/core/Models.js"
import { BlobStore } from "../../../src/ports/BlobStore.js"
import * as CasBlobStore from "../../../src/blobs/CasBlobStore.js"
import * as KvReplicaIndex from "../../../src/kit/KvReplicaIndex.js"
import * as MetricKeys from "../../../src/kit/MetricKeys.js"
import { testBlobStore } from "../../../src/testing/BlobStore.js"
import { chunked, collect, MiB, randomBytes, sameBytes, utf8 } from "../../../src/testing/bytes.js"
import * as Harness from "../../harness/s3.js"
import { counter, eachServer, observations, openUploads, storeLayer, useServers } from "./fixtures.js"
import { spy } from "./sdk.js"

useServers()

for (const server of Harness.candidates) {
  const bucket = Harness.freshBucket(`blob-${server.name}`)
  testBlobStore(
    `S3BlobStore on ${server.name}`,
    S3BlobStore.layer().pipe(Layer.provide(Harness.clientLayer(server, { bucket }))),
    { skipAll: server.skip, concurrentDedup: server.capabilities.conditionalWrites }
  )
  // CasBlobStore with its bytes on S3 and its metadata in memory (KV + KvReplicaIndex), in both layouts.
  for (const [name, layout] of [["monolithic", CasBlobStore.monolithic], ["chunked", CasBlobStore.chunked()]] as const) {
    const casBucket = Harness.freshBucket(`cas-${name}-${server.name}`)
    const objects = S3ObjectStore.layer.pipe(Layer.provide(Harness.clientLayer(server, { bucket: casBucket })))
    const metadata = Layer.provideMerge(KvReplicaIndex.layer, MemoryKeyValueStore.layer)
    testBlobStore(
      `CasBlobStore over S3 on ${server.name} (${name})`,
      CasBlobStore.layer({ scheme: "s3", bucket: casBucket, layout }).pipe(Layer.provide(Layer.merge(objects, metadata))),
      { skipAll: server.skip }
    )
  }
}

const P = 5 * MiB

const fresh = () => Math.floor(Math.random() * 1e9)
const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")
const keyOf = (bytes: Uint8Array) => new BinaryKey({ algorithm: "sha256", digest: sha256(bytes), size: bytes.length })

/** Object keys in the blob namespace's staging area. */
const stagingKeys = Effect.flatMap(S3ClientInstance, ({ client, settings }) =>
  Effect.promise(() =>
    client.send(new S3.ListObjectsV2Command({ Bucket: settings.bucket, Prefix: `${settings.prefix}blobs/staging/` }))
  )).pipe(Effect.map((out) => (out.Contents ?? []).map((o) => o.Key)))

const contentKey = (key: BinaryKey) => Effect.map(S3ClientInstance, ({ settings }) => `${settings.prefix}blobs/sha256/${key.digest}`)

const rawHead = (key: BinaryKey) =>
  Effect.flatMap(Effect.zip(S3ClientInstance, contentKey(key)), ([{ client, settings }, Key]) =>
    Effect.promise(() => client.send(new S3.HeadObjectCommand({ Bucket: settings.bucket, Key }))))

/** Replaces a stored blob's bytes behind the store's back, keeping its metadata. */
const tamper = (key: BinaryKey, bytes: Uint8Array) =>
  Effect.flatMap(Effect.zip(S3ClientInstance, contentKey(key)), ([{ client, settings }, Key]) =>
    Effect.promise(() =>
      client.send(
        new S3.PutObjectCommand({
          Bucket: settings.bucket,
          Key,
          Body: bytes,
          Metadata: { "graviton-algorithm": "sha256", "graviton-digest": key.digest, "graviton-size": String(key.size) }
        })
      )
    ))

const putBlob = (bytes: Uint8Array, plan?: BlobWritePlan) =>
  Effect.flatMap(BlobStore, (s) => Stream.run(chunked(bytes, { min: 1, max: 256 * 1024 }), s.put(plan)))

const getBlob = (key: BinaryKey) => Effect.flatMap(BlobStore, (s) => collect(s.get(key)))

eachServer("S3BlobStore natively", (c) => storeLayer(c, "native"), (test, server) => {
  test.scoped()("small content: a HEAD, then one conditional PutObject to blobs/sha256/<hex> with its metadata; stat is one HEAD", () =>
    Effect.gen(function*() {
      const { client } = yield* S3ClientInstance
      const bytes = randomBytes(100 * 1024, fresh())
      const seen = yield* spy(client)
      const result = yield* putBlob(bytes)
      expect(String(result.key)).toBe(String(keyOf(bytes)))
      expect(seen.commands()).toEqual(["HeadObject", "PutObject"])
      expect(seen.calls[1]!.input.IfNoneMatch).toBe("*")
      expect(seen.calls[1]!.input.Key).toBe(yield* contentKey(result.key))
      expect(BlobLocator.render(result.locator)).toMatch(new RegExp(`^s3://[^/]+/blobs/sha256/${result.key.digest}$`))
      expect((yield* rawHead(result.key)).Metadata).toEqual({
        "graviton-algorithm": "sha256",
        "graviton-digest": result.key.digest,
        "graviton-size": String(bytes.length)
      })
      seen.reset()
      const stat = yield* Effect.flatMap(BlobStore, (s) => s.stat(result.key))
      expect(Option.map(stat, (s) => s.size)).toEqual(Option.some(bytes.length))
      expect(seen.commands()).toEqual(["HeadObject"])
    }))

  test.scoped()("large content: staged multipart, copied server-side to its address, staging removed", () =>
    Effect.gen(function*() {
      const { client } = yield* S3ClientInstance
      const bytes = randomBytes(P + 4321, fresh())
      const seen = yield* spy(client)
      const first = yield* putBlob(bytes, { contentType: "application/x-blob" })
      expect(first.deduplicated).toBe(false)
      expect(seen.count("CreateMultipartUpload", (i) => String(i.Key).includes("blobs/staging/"))).toBe(1)
      expect(seen.count("CopyObject", (i) => i.MetadataDirective === "REPLACE")).toBe(1)
      expect(seen.count("DeleteObject", (i) => String(i.Key).includes("blobs/staging/"))).toBe(1)
      expect(yield* stagingKeys).toEqual([])
      const head = yield* rawHead(first.key)
      expect([head.ContentLength, head.ContentType, head.Metadata?.["graviton-digest"]]).toEqual([
        bytes.length,
        "application/x-blob",
        first.key.digest
      ])
      expect(sameBytes(yield* getBlob(first.key), bytes)).toBe(true)
    }), 60_000)

  test.scoped()("large content already stored: the upload is dropped before completing, nothing is copied", () =>
    Effect.gen(function*() {
      const { client } = yield* S3ClientInstance
      const bytes = randomBytes(P + 99, fresh())
      yield* putBlob(bytes)
      const hitsBefore = yield* counter(MetricKeys.dedupHits, { backend: "s3" })
      const writtenBefore = yield* counter(MetricKeys.bytesWritten, { backend: "s3" })
      const seen = yield* spy(client)
      const second = yield* putBlob(bytes)
      expect(second.deduplicated).toBe(true)
      expect(seen.distinct("AbortMultipartUpload", "UploadId")).toBe(1)
      expect(seen.count("CompleteMultipartUpload")).toBe(0)
      expect(seen.count("CopyObject")).toBe(0)
      expect(yield* stagingKeys).toEqual([])
      expect((yield* counter(MetricKeys.dedupHits, { backend: "s3" })) - hitsBefore).toBe(1)
      // The first part went out before the key was known, but nothing was stored: no bytes written.
      expect((yield* counter(MetricKeys.bytesWritten, { backend: "s3" })) - writtenBefore).toBe(0)
      if (server.capabilities.multipartAbort === true) {
        const { settings } = yield* S3ClientInstance
        expect(yield* openUploads(`${settings.prefix}blobs/`)).toEqual([])
      }
    }), 60_000)

  test.scoped()("an expected key already stored: the stream is only hashed; a new one goes straight to its address", () =>
    Effect.gen(function*() {
      const { client } = yield* S3ClientInstance
      const bytes = randomBytes(P + 7, fresh())
      const key = keyOf(bytes)
      const seen = yield* spy(client)
      const first = yield* putBlob(bytes, { expectedKey: key })
      expect(first.deduplicated).toBe(false)
      expect(seen.count("CreateMultipartUpload", (i) => String(i.Key).endsWith(`blobs/sha256/${key.digest}`))).toBe(1)
      expect(seen.count("CopyObject")).toBe(0)
      expect(seen.count("CompleteMultipartUpload", (i) => i.IfNoneMatch === "*")).toBe(1)
      seen.reset()
      const again = yield* putBlob(bytes, { expectedKey: key })
      expect(again.deduplicated).toBe(true)
      expect(seen.commands()).toEqual(["HeadObject"])
      // A mismatch on the hashed-only path is still caught.
      const other = randomBytes(P + 7, fresh())
      const error = yield* Effect.flip(putBlob(other, { expectedKey: key }))
      expect(error.reason).toBe("InvalidInput")
    }), 60_000)

  test.scoped()("a stored blob whose bytes changed fails a full read with Corrupted; stat and ranges still answer", () =>
    Effect.gen(function*() {
      const bytes = randomBytes(64 * 1024, fresh())
      const { key } = yield* putBlob(bytes)
      const flipped = Uint8Array.from(bytes)
      flipped[1234] = flipped[1234]! ^ 0xff
      yield* tamper(key, flipped)
      const error = yield* Effect.flip(getBlob(key))
      expect([error._tag, error.reason]).toEqual(["BlobError", "Corrupted"])
      expect(Option.isSome(yield* Effect.flatMap(BlobStore, (s) => s.stat(key)))).toBe(true)
      const range = yield* Effect.flatMap(BlobStore, (s) => collect(s.get(key, { start: 0, end: 10 })))
      expect(sameBytes(range, bytes.subarray(0, 10))).toBe(true)
      // Truncated behind our back, with the metadata still naming the size: Corrupted too.
      yield* tamper(key, bytes.subarray(0, 1000))
      expect((yield* Effect.flip(getBlob(key))).reason).toBe("Corrupted")
    }))

  test.scoped()("list walks only the content namespaces: staging and foreign objects are not blobs", () =>
    Effect.gen(function*() {
      const { client, settings } = yield* S3ClientInstance
      const bytes = utf8(`listed ${fresh()}`)
      const { key } = yield* putBlob(bytes)
      for (const junk of ["blobs/staging/leftover", "blobs/sha256/not-a-digest", "elsewhere/x"]) {
        yield* Effect.promise(() =>
          client.send(new S3.PutObjectCommand({ Bucket: settings.bucket, Key: settings.prefix + junk, Body: utf8("j") })))
      }
      const listed = Array.from(yield* Effect.flatMap(BlobStore, (s) => Stream.runCollect(s.list)))
      expect(listed.map((s) => String(s.key))).toContain(String(key))
      expect(listed.every((s) => /^[0-9a-f]{64}$/.test(s.key.digest))).toBe(true)
    }))

  test.scoped()("metrics: ingested and written bytes, blobs, dedup hits, upload durations, like every BlobStore", () =>
    Effect.gen(function*() {
      const read = (name: string) => counter(name, { backend: "s3" })
      const names = [MetricKeys.bytesIngested, MetricKeys.blocksIngested, MetricKeys.bytesWritten, MetricKeys.dedupHits, MetricKeys.bytesRead]
      const snapshot = Effect.forEach(names, read)
      const durations = observations(MetricKeys.uploadDurationSeconds, { backend: "s3" })
      const [durationsBefore, before] = [yield* durations, yield* snapshot]
      const delta = Effect.map(snapshot, (now) => now.map((n, i) => n - before[i]!))
      const bytes = randomBytes(3000, fresh())
      const small = yield* putBlob(bytes)
      // [ingested, blobs, written, dedup hits, read]
      expect(yield* delta).toEqual([3000, 1, 3000, 0, 0])
      const large = randomBytes(P + 10, fresh())
      yield* putBlob(large)
      expect(yield* delta).toEqual([3000 + P + 10, 2, 3000 + P + 10, 0, 0])
      // The same content again: ingested, but nothing written.
      expect((yield* putBlob(bytes)).deduplicated).toBe(true)
      expect(yield* delta).toEqual([6000 + P + 10, 3, 3000 + P + 10, 1, 0])
      expect((yield* durations) - durationsBefore).toBe(3)
      // Reads count what they emitted, once each (the S3 calls under the store do not count again).
      yield* getBlob(small.key)
      yield* Effect.flatMap(BlobStore, (s) => collect(s.get(small.key, { start: 10, end: 110 })))
      expect((yield* delta)[4]).toBe(3100)
    }), 60_000)
})
