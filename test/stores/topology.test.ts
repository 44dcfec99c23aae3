/**
 * The PostgreSQL + S3 topology (PgS3Store): the bytes go to S3 and only the
 * metadata to PostgreSQL, in both layouts. The bucket holds every byte put
 * (each distinct blob, or each distinct block, once), and the PostgreSQL
 * object tables (objects, object_contents, object_chunks) stay empty while
 * the kv table holds the records. A composition in which PostgreSQL also
 * offered an object store (the old `Layer.merge(S3Objects, PgLayers.live)`)
 * fails here: the bytes land in the objects tables and not in the bucket.
 */
import * as S3 from "@aws-sdk/client-s3"
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as Pg from "pg"
import * as CasBlobStore from "../../src/blobs/CasBlobStore.js"
import { BlobStore } from "../../src/ports/BlobStore.js"
import * as LevelS3Store from "../../src/stores/LevelS3Store.js"
import * as PgS3Store from "../../src/stores/PgS3Store.js"
import { gate } from "../../src/testing/capabilities.js"
import { chunked, collect, randomBytes, sameBytes } from "../../src/testing/bytes.js"
import { tempDir } from "../blobs/fixtures.js"
import * as Harness from "../harness/s3.js"
import { freshDatabase, skipReason, usePostgres } from "../harness/postgres.js"

usePostgres()
afterAll(Harness.stopAll, 30_000)

const server = Harness.available().find((c) => c.name === "env" || c.name === "moto")
const skip = skipReason() ??
  (server === undefined ? "no S3 server (moto or GRAVITON_TEST_S3_ENDPOINT) is available" : undefined)

/** Every object under the suite's place: count and total bytes. */
const bucketContents = (running: Harness.Running, place: Harness.Place) =>
  Effect.promise(async () => {
    const client = Harness.rawClient(running)
    try {
      let count = 0
      let bytes = 0
      let token: string | undefined
      do {
        const page = await client.send(
          new S3.ListObjectsV2Command({ Bucket: place.bucket, Prefix: place.prefix, ContinuationToken: token })
        )
        for (const o of page.Contents ?? []) {
          count++
          bytes += o.Size ?? 0
        }
        token = page.NextContinuationToken
      } while (token !== undefined)
      return { count, bytes }
    } finally {
      client.destroy()
    }
  })

/** Row counts of Graviton's tables in the database at `url`. */
const rowCounts = (url: string) =>
  Effect.promise(async () => {
    const client = new Pg.Client({ connectionString: url })
    await client.connect()
    try {
      const counts: Record<string, number> = {}
      for (const table of ["objects", "object_contents", "object_chunks", "kv"]) {
        const result = await client.query(`SELECT count(*)::int AS n FROM ${table}`)
        counts[table] = result.rows[0].n
      }
      return counts
    } finally {
      await client.end()
    }
  })

describe("PgS3Store: bytes in S3, metadata in PostgreSQL", () => {
  for (const layout of ["monolithic", "chunked"] as const) {
    gate(it.live, skip)(`${layout}: every byte is an S3 object; the PostgreSQL object tables stay empty`, () =>
      Effect.scoped(Effect.gen(function*() {
        const running = yield* Effect.promise(() => Harness.server(server!))
        const place = yield* Effect.promise(() => Harness.prepare(running, Harness.freshBucket(`topology-${layout}`)))
        const db = yield* freshDatabase(`topology_${layout}`)
        const store = PgS3Store.layer({
          pg: { url: Redacted.make(db.url), migrate: true },
          s3: Harness.clientOptions(server!, running, place),
          // Small blocks, so that each blob is several objects.
          layout: layout === "chunked" ? CasBlobStore.chunked({ avg: 64 * 1024 }) : CasBlobStore.monolithic
        })
        // Distinct random contents (no block repeats across them), one of them put twice.
        const contents = [randomBytes(300_000, 1), randomBytes(700_000, 2), randomBytes(5_000, 3)]
        const total = contents.reduce((n, c) => n + c.length, 0)
        yield* Effect.gen(function*() {
          const blobs = yield* BlobStore
          const keys = []
          for (const content of [...contents, contents[0]!]) {
            keys.push((yield* Stream.run(chunked(content), blobs.put())).key)
          }
          for (let i = 0; i < contents.length; i++) {
            expect(sameBytes(yield* collect(blobs.get(keys[i]!)), contents[i]!)).toBe(true)
          }
        }).pipe(Effect.provide(store))

        const s3 = yield* bucketContents(running, place)
        expect(s3.bytes).toBe(total)
        if (layout === "monolithic") expect(s3.count).toBe(contents.length)
        else expect(s3.count).toBeGreaterThan(contents.length)
        const rows = yield* rowCounts(db.url)
        expect(rows).toMatchObject({ objects: 0, object_contents: 0, object_chunks: 0 })
        expect(rows.kv).toBeGreaterThanOrEqual(contents.length)
      })), 120_000)
  }
})

describe("LevelS3Store: bytes in S3, metadata in LevelDB", () => {
  gate(it.live, server === undefined ? "no S3 server (moto or GRAVITON_TEST_S3_ENDPOINT) is available" : undefined)(
    "chunked: every byte is an S3 object, read back through the LevelDB records",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const running = yield* Effect.promise(() => Harness.server(server!))
        const place = yield* Effect.promise(() => Harness.prepare(running, Harness.freshBucket("topology-level")))
        const content = randomBytes(400_000, 4)
        const store = LevelS3Store.layer({
          level: { path: tempDir("topology-level-") },
          s3: Harness.clientOptions(server!, running, place),
          layout: CasBlobStore.chunked({ avg: 64 * 1024 })
        })
        yield* Effect.gen(function*() {
          const blobs = yield* BlobStore
          const { key } = yield* Stream.run(chunked(content), blobs.put())
          expect(sameBytes(yield* collect(blobs.get(key)), content)).toBe(true)
        }).pipe(Effect.provide(store))
        expect((yield* bucketContents(running, place)).bytes).toBe(content.length)
      })),
    120_000
  )
})
