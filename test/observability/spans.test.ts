/**
 * Spans as an Effect app running `@effect/opentelemetry` sees them: the tree
 * of a CAS put and get over memory, embedded (fs + LevelDB) and PostgreSQL,
 * and of an S3 multipart put with SSE-C, recorded by an in-memory exporter;
 * names, parents and attributes asserted, and no attribute (nor event or
 * status) carrying the PostgreSQL password or the SSE-C key.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as MemoryLayers from "../../src/backends/memory/MemoryLayers.js"
import * as MemoryObjectStore from "../../src/backends/memory/MemoryObjectStore.js"
import * as S3BlobStore from "../../src/backends/s3/S3BlobStore.js"
import * as CasBlobStore from "../../src/blobs/CasBlobStore.js"
import * as BinaryKey from "../../src/core/BinaryKey.js"
import type { BlobWriteResult } from "../../src/core/Models.js"
import * as Metrics from "../../src/kit/Metrics.js"
import { BlobStore } from "../../src/ports/BlobStore.js"
import * as EmbeddedStore from "../../src/stores/EmbeddedStore.js"
import * as PgStore from "../../src/stores/PgStore.js"
import { chunked, collect, MiB, randomBytes, sameBytes } from "../../src/testing/bytes.js"
import { gate } from "../../src/testing/capabilities.js"
import * as Harness from "../harness/s3.js"
import { createDatabase, dropDatabase, skipReason, usePostgres } from "../harness/postgres.js"
import { descendants, find, hasPath, leaks, makeTracing, type Node, render, root } from "./fixtures.js"

usePostgres()
afterAll(Harness.stopAll, 30_000)

/** Puts `bytes` in uneven chunks and reads them back, each under a root span of the test's own. */
const putAndGet = (bytes: Uint8Array) =>
  Effect.gen(function*() {
    const blobs = yield* BlobStore
    const stored: BlobWriteResult = yield* Stream.run(chunked(bytes, { seed: 3 }), blobs.put()).pipe(Effect.withSpan("test.put"))
    const back = yield* collect(blobs.get(stored.key)).pipe(Effect.withSpan("test.get"))
    expect(sameBytes(back, bytes)).toBe(true)
    return stored
  })

/** Runs `putAndGet` over `store` with the in-memory exporter installed; returns the spans and the result. */
const traced = <E>(store: Layer.Layer<BlobStore, E>, bytes: Uint8Array) =>
  Effect.gen(function*() {
    const tracing = makeTracing()
    return yield* Effect.gen(function*() {
      const stored = yield* putAndGet(bytes)
      return { spans: yield* tracing.spans, stored }
    }).pipe(Effect.provide(Layer.merge(store, tracing.layer)))
  })

/** What every store's put and get trees share. */
const expectCasTrees = (
  spans: Parameters<typeof root>[0],
  stored: BlobWriteResult,
  size: number,
  objects: string
) => {
  const put = find(root(spans, "test.put"), "graviton.BlobStore.put")
  expect(put.attributes).toMatchObject({
    "graviton.backend": "cas",
    "graviton.outcome": "success",
    "graviton.blob.key": BinaryKey.render(stored.key),
    "graviton.blob.deduplicated": false,
    "graviton.bytes": size
  })
  const stage = find(put, "graviton.BlobStore.stage")
  const staged = find(stage, "graviton.ObjectStore.put")
  expect(staged.attributes).toMatchObject({ "graviton.backend": objects, "graviton.outcome": "success", "graviton.bytes": size })
  expect(String(staged.attributes["graviton.locator"])).toMatch(/\S+:\/\/\S+\/\S+/)
  const publish = find(put, "graviton.BlobStore.publish")
  expect(publish.attributes["graviton.blob.key"]).toBe(BinaryKey.render(stored.key))
  expect(descendants(publish).some((n) => n.name.startsWith("graviton.KeyValueStore."))).toBe(true)
  // Stage before publish, both inside the put.
  expect(put.children.map((n) => n.name)).toEqual(
    expect.arrayContaining(["graviton.BlobStore.stage", "graviton.BlobStore.publish"])
  )

  const get = find(root(spans, "test.get"), "graviton.BlobStore.get")
  // The stream's span ends when the stream ends: it has counted every byte read, and it
  // ends after the object store's read under it.
  expect(get.attributes).toMatchObject({
    "graviton.backend": "cas",
    "graviton.outcome": "success",
    "graviton.bytes": size,
    "graviton.blob.key": BinaryKey.render(stored.key)
  })
  const read = find(get, "graviton.ObjectStore.get")
  expect(read.attributes).toMatchObject({ "graviton.backend": objects, "graviton.bytes": size })
  const endOf = (n: Node) => n.span.endTime[0] * 1e9 + n.span.endTime[1]
  expect(endOf(get)).toBeGreaterThanOrEqual(endOf(read))
  return { put, get }
}

describe("spans of a CAS put and get", () => {
  it.effect("over memory: put → stage → object put, publish → KV; get → object get", () =>
    Effect.gen(function*() {
      const store = CasBlobStore.layer().pipe(
        Layer.provideMerge(Layer.mergeAll(MemoryLayers.metadata, MemoryObjectStore.layer)),
        Layer.provideMerge(Metrics.layer)
      )
      const bytes = randomBytes(100_000, 7)
      const { spans, stored } = yield* traced(store, bytes)
      const { put } = expectCasTrees(spans, stored, bytes.length, "memory")
      expect(hasPath(put, ["graviton.BlobStore.publish", "graviton.KeyValueStore.compareAndSet"]) ||
        hasPath(put, ["graviton.BlobStore.publish", "graviton.KeyValueStore.commit"]), render(put)).toBe(true)
      // The memory metadata ports run on the KV wrappers: a replica entry is a KV write under ReplicaIndex.add.
      expect(hasPath(put, ["graviton.ReplicaIndex.add", "graviton.KeyValueStore.compareAndSet"]) ||
        hasPath(put, ["graviton.ReplicaIndex.add", "graviton.KeyValueStore.get"]), render(put)).toBe(true)
    }))

  it.effect("over the embedded store (fs + LevelDB)", () =>
    Effect.gen(function*() {
      const home = mkdtempSync(join(tmpdir(), "graviton-spans-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(home, { recursive: true, force: true })))
      const bytes = randomBytes(300_000, 8)
      const { spans, stored } = yield* traced(EmbeddedStore.layer({ home }), bytes)
      const { get, put } = expectCasTrees(spans, stored, bytes.length, "fs")
      const kv = descendants(put).filter((n) => n.name.startsWith("graviton.KeyValueStore."))
      expect(kv.length).toBeGreaterThan(0)
      for (const n of kv) expect(n.attributes["graviton.backend"]).toBe("level")
      expect(find(get, "graviton.KeyValueStore.get").attributes).toMatchObject({
        "graviton.backend": "level",
        "graviton.kv.found": true
      })
    }).pipe(Effect.scoped))

  const pgSkip = skipReason()
  gate(it.scoped, pgSkip)("over PostgreSQL: one tree down to the statements, the finalize transaction included, no password", () =>
    Effect.gen(function*() {
      const db = yield* Effect.acquireRelease(
        Effect.promise(() => createDatabase("spans")),
        (d) => Effect.promise(() => dropDatabase(d.name).catch(() => undefined))
      )
      const password = decodeURIComponent(new URL(db.url).password)
      expect(password).not.toBe("")
      // Two chunk rows: the object put holds its own transaction, then the finalize step runs in another.
      const bytes = randomBytes(1.5 * MiB, 9)
      const store = PgStore.layer({ url: Redacted.make(db.url), migrate: true, chunkSize: MiB })
      const { spans, stored } = yield* traced(store, bytes)
      const { get, put } = expectCasTrees(spans, stored, bytes.length, "pg")

      // Staging: the put's own transaction, its statements under the object store's span.
      const staged = find(find(put, "graviton.BlobStore.stage"), "graviton.ObjectStore.put")
      const statements = descendants(staged).filter((n) => n.name === "sql.execute")
      expect(statements.map((n) => n.attributes["db.operation.name"])).toEqual(
        expect.arrayContaining(["BEGIN", "INSERT", "COMMIT"])
      )
      for (const n of statements) {
        expect(n.span.kind).toBe(2) // SpanKind.CLIENT
        expect(n.attributes).toMatchObject({ "db.system.name": "postgresql", "db.namespace": db.name })
        expect(typeof n.attributes["db.query.text"]).toBe("string")
      }
      // Finalize: put → publish → UnitOfWork → the SQL transaction → port calls → statements.
      // The record is written by a compare-and-set, or by a commit that also carries the space counters' delta.
      const recordWrite = (method: string) =>
        hasPath(put, ["graviton.BlobStore.publish", "graviton.UnitOfWork.atomically", "sql.transaction", `graviton.KeyValueStore.${method}`, "sql.execute"])
      expect(recordWrite("compareAndSet") || recordWrite("commit"), render(put)).toBe(true)
      expect(find(find(put, "sql.transaction"), "sql.execute").attributes["db.system.name"]).toBe("postgresql")
      // The read: the object's row, then its pages. Outside a transaction a statement is the call's own
      // work, recorded on the object store's get span as an event, not as a span of its own.
      const read = find(get, "graviton.ObjectStore.get")
      expect(descendants(read).filter((n) => n.name === "sql.execute")).toEqual([])
      const pages = read.span.events.filter((e) => e.name === "sql.execute")
      expect(pages.length).toBeGreaterThanOrEqual(2)
      for (const page of pages) {
        expect(page.attributes).toMatchObject({ "db.operation.name": "SELECT", "graviton.outcome": "success" })
        expect(typeof page.attributes?.["graviton.duration_ms"]).toBe("number")
      }
      expect(read.attributes).toMatchObject({ "db.system.name": "postgresql", "db.namespace": db.name })

      // The scan sees attribute values (the blob key is one), and finds neither the password nor the URL.
      expect(leaks(spans, [BinaryKey.render(stored.key)])).not.toEqual([])
      expect(leaks(spans, [password, db.url])).toEqual([])
    }))
})

describe("spans of an S3 multipart put", () => {
  // moto when installed (it accepts SSE-C headers), else s3rver; the spans are the client's either way.
  const server = Harness.candidates.find((c) => c.name === "moto" && c.skip === undefined) ?? Harness.candidate("s3rver")
  const customerKey = Buffer.from(randomBytes(32, 77)).toString("base64")
  const customerKeyHex = Buffer.from(customerKey, "base64").toString("hex")

  gate(it.scoped, server.skip)(`on ${server.name}: BlobStore.put → stage (Create, UploadPart) → publish (UploadPart, Complete); no SSE key`, () =>
    Effect.gen(function*() {
      const store = S3BlobStore.layer().pipe(
        Layer.provideMerge(Harness.clientLayer(server, {
          bucket: Harness.freshBucket(`spans-${server.name}`),
          overrides: { encryption: { _tag: "Customer", key: Redacted.make(customerKey) }, allowInsecureSseC: true }
        })),
        Layer.provideMerge(Metrics.layer)
      )
      const bytes = randomBytes(5 * MiB + 1000, 10)
      const { spans, stored } = yield* traced(store as Layer.Layer<BlobStore, unknown>, bytes)
      const put = find(root(spans, "test.put"), "graviton.BlobStore.put")
      expect(put.attributes).toMatchObject({
        "graviton.backend": "s3",
        "graviton.outcome": "success",
        "graviton.blob.key": BinaryKey.render(stored.key),
        "graviton.bytes": bytes.length
      })
      const calls = descendants(put).filter((n) => n.name.startsWith("S3."))
      const names = calls.map((n) => n.name)
      expect(names.filter((n) => n === "S3.CreateMultipartUpload")).toHaveLength(1)
      expect(names.filter((n) => n === "S3.UploadPart")).toHaveLength(2)
      expect(names.filter((n) => n === "S3.CompleteMultipartUpload")).toHaveLength(1)
      // Full parts go up while the bytes stream in (the staging step); the last part and the
      // completion once the input has ended and the key is known (publish).
      const under = (step: string) => descendants(find(put, step)).map((n) => n.name).filter((n) => n.startsWith("S3."))
      expect(under("graviton.BlobStore.stage")).toEqual(["S3.CreateMultipartUpload", "S3.UploadPart"])
      expect(under("graviton.BlobStore.publish")).toEqual(expect.arrayContaining(["S3.UploadPart", "S3.CompleteMultipartUpload"]))
      const parts = calls.filter((n) => n.name === "S3.UploadPart")
      const uploadId = find(put, "S3.CreateMultipartUpload").attributes["aws.s3.upload_id"]
      for (const part of parts) {
        expect(part.span.kind).toBe(2) // SpanKind.CLIENT
        expect(part.attributes).toMatchObject({
          "rpc.system": "aws-api",
          "rpc.service": "S3",
          "rpc.method": "UploadPart",
          "graviton.outcome": "success"
        })
        expect(typeof part.attributes["aws.s3.bucket"]).toBe("string")
        expect(typeof part.attributes["aws.s3.key"]).toBe("string")
        expect(typeof part.attributes["aws.s3.upload_id"]).toBe("string")
        if (uploadId !== undefined) expect(part.attributes["aws.s3.upload_id"]).toBe(uploadId)
      }
      expect(parts.map((n) => n.attributes["aws.s3.part_number"]).sort()).toEqual([1, 2])
      expect(parts.map((n) => n.attributes["graviton.bytes"]).sort((a, b) => Number(a) - Number(b))).toEqual([1000, 5 * MiB])

      expect(leaks(spans, [BinaryKey.render(stored.key)])).not.toEqual([])
      expect(leaks(spans, [customerKey, customerKeyHex])).toEqual([])
    }), 120_000)
})
