/**
 * CasBlobStore over PostgreSQL objects + PostgreSQL KV + PostgreSQL replica
 * index: the BlobStore conformance suite in both layouts, 20 concurrent puts
 * of the same content storing one object, and the claim-move-publish step
 * of a put committing as one transaction through the UnitOfWork.
 */
import { expect } from "@effect/vitest"
import { SqlClient } from "@effect/sql/SqlClient"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { createHash } from "node:crypto"
import * as Pg from "../../../src/stores/PgStore.js"
import * as BinaryKey from "../../../src/core/BinaryKey.js"
import * as BlobLocator from "../../../src/core/BlobLocator.js"
import { BlobStore } from "../../../src/ports/BlobStore.js"
import { KeyValueStore } from "../../../src/ports/KeyValueStore.js"
import { MutableObjectStore } from "../../../src/ports/ObjectStore.js"
import { ReplicaIndex } from "../../../src/ports/ReplicaIndex.js"
import { UnitOfWork } from "../../../src/ports/UnitOfWork.js"
import * as CasBlobStore from "../../../src/blobs/CasBlobStore.js"
import { chunked, collect, randomBytes, sameBytes, utf8 } from "../../../src/testing/bytes.js"
import { testBlobStore } from "../../../src/testing/BlobStore.js"
import { describePg, freshDatabase, pgLayer, skipReason, usePostgres } from "../../harness/postgres.js"

usePostgres()
const skip = skipReason()

const options = { scheme: "pg", bucket: "blobs" } as const
const cas = (label: string, extra: CasBlobStore.Options = {}) =>
  CasBlobStore.layer({ ...options, ...extra }).pipe(Layer.provideMerge(pgLayer(label)))

testBlobStore("cas over pg, monolithic", cas("cas_mono"), { skipAll: skip })
testBlobStore(
  "cas over pg, chunked 16/64/256 KiB",
  cas("cas_chunked", { layout: CasBlobStore.chunked({ min: 16 * 1024, avg: 64 * 1024, max: 256 * 1024 }) }),
  { skipAll: skip }
)

const objectRows = Effect.flatMap(SqlClient, (sql) =>
  sql<{ path: string; content_id: string }>`
    SELECT path, content_id::text AS content_id FROM objects WHERE scheme = 'pg' AND bucket = 'blobs' ORDER BY path`)

describePg("CasBlobStore over PostgreSQL", cas("cas_pg"), (test) => {
  test("20 concurrent puts of the same content store one object, and nothing staged remains", () =>
    Effect.gen(function*() {
      const store = yield* BlobStore
      const bytes = randomBytes(300_000, Math.floor(Math.random() * 1e9))
      const digest = createHash("sha256").update(bytes).digest("hex")
      const results = yield* Effect.forEach(
        Array.from({ length: 20 }, (_, i) => i),
        (i) => Stream.run(chunked(bytes, { seed: i + 1 }), store.put()),
        { concurrency: "unbounded" }
      )
      expect(new Set(results.map((r) => r.key.digest))).toEqual(new Set([digest]))
      expect(results.filter((r) => !r.deduplicated).length).toBe(1)
      const rows = yield* objectRows
      const mine = rows.filter((r) => r.path.includes(digest))
      expect(mine.length).toBe(1)
      // One content row holds the bytes once; no staging object is left behind.
      expect(rows.filter((r) => r.path.startsWith("staging/")).length).toBe(0)
      const sql = yield* SqlClient
      const chunks = yield* sql<{ n: string }>`
        SELECT count(*)::text AS n FROM object_chunks WHERE content_id = ${mine[0]!.content_id}::bigint`
      expect(chunks[0]!.n).toBe("1")
      expect(sameBytes(yield* collect(store.get(results[0]!.key)), bytes)).toBe(true)
    }), 60_000)

  test("the claim-move-publish step in one UnitOfWork: all of it or none of it", () =>
    Effect.gen(function*() {
      // The same port calls CasBlobStore makes to publish a staged object, run atomically.
      const objects = yield* MutableObjectStore
      const kv = yield* KeyValueStore
      const replicas = yield* ReplicaIndex
      const { atomically } = yield* UnitOfWork
      const bytes = utf8(`content ${Math.random()}`)
      const digest = createHash("sha256").update(bytes).digest("hex")
      const key = Either.getOrThrow(BinaryKey.make("sha256", digest, bytes.length))
      const blobKey = `blobs/sha256:${digest}:${bytes.length}`
      const staging = Either.getOrThrow(BlobLocator.make("pg", "blobs", `staging/${digest}`))
      const target = Either.getOrThrow(BlobLocator.make("pg", "blobs", `sha256/${digest.slice(0, 2)}/${digest}`))
      yield* Stream.run(Stream.make(bytes), objects.put(staging))
      const publish = (failAfterMove: boolean) =>
        atomically(Effect.gen(function*() {
          expect(yield* kv.compareAndSet(blobKey, Option.none(), Option.some(utf8("pending")))).toBe(true)
          yield* objects.move(staging, target)
          if (failAfterMove) return yield* Effect.fail("crash" as const)
          expect(yield* kv.compareAndSet(blobKey, Option.some(utf8("pending")), Option.some(utf8("live")))).toBe(true)
          yield* replicas.add(key, target)
        }))
      // A failure after the move: the claim and the move are both undone.
      expect(yield* Effect.either(publish(true))).toEqual(Either.left("crash"))
      expect(yield* kv.get(blobKey)).toEqual(Option.none())
      expect(Option.isSome(yield* objects.head(staging))).toBe(true)
      expect(Option.isNone(yield* objects.head(target))).toBe(true)
      expect(yield* replicas.replicas(key)).toEqual([])
      // Success: everything at once.
      yield* publish(false)
      expect(Option.map(yield* kv.get(blobKey), (b) => new TextDecoder().decode(b))).toEqual(Option.some("live"))
      expect(Option.isNone(yield* objects.head(staging))).toBe(true)
      expect(sameBytes(yield* collect(objects.get(target)), bytes)).toBe(true)
      expect((yield* replicas.replicas(key)).map(BlobLocator.render)).toEqual([BlobLocator.render(target)])
    }))

  test("--store pg: PgStore.layerConfig builds the whole store from GRAVITON_PG_* and GRAVITON_LAYOUT", () =>
    Effect.gen(function*() {
      const db = yield* freshDatabase("cas_env")
      for (const layout of ["monolithic", "chunked"] as const) {
        const env = ConfigProvider.fromMap(
          new Map([["GRAVITON_PG_URL", db.url], ["GRAVITON_PG_MIGRATE", "true"], ["GRAVITON_LAYOUT", layout]])
        )
        const bytes = randomBytes(200_000, layout.length)
        const back = yield* Effect.gen(function*() {
          const store = yield* BlobStore
          const result = yield* Stream.run(chunked(bytes), store.put())
          const kv = yield* KeyValueStore
          expect(Option.isSome(yield* kv.get(`blobs/${BinaryKey.render(result.key)}`))).toBe(true)
          return yield* collect(store.get(result.key))
        }).pipe(Effect.provide(Pg.layerConfig()), Effect.withConfigProvider(env))
        expect(sameBytes(back, bytes)).toBe(true)
      }
    }).pipe(Effect.scoped))
})
