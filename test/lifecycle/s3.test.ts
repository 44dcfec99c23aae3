/** The lifecycle suite on S3 bytes with PostgreSQL or LevelDB metadata (moto, or GRAVITON_TEST_S3_ENDPOINT). */
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as Lifecycle from "../../src/lifecycle/Lifecycle.js"
import { BlobStore } from "../../src/ports/BlobStore.js"
import * as LevelS3Store from "../../src/stores/LevelS3Store.js"
import * as PgS3Store from "../../src/stores/PgS3Store.js"
import { gate } from "../../src/testing/capabilities.js"
import { chunked, collect, randomBytes, sameBytes } from "../../src/testing/bytes.js"
import { tempDir } from "../blobs/fixtures.js"
import { freshDatabase, skipReason, usePostgres } from "../harness/postgres.js"
import * as Harness from "../harness/s3.js"
import { blocks, lifecycleSuite } from "./suite.js"

usePostgres()
afterAll(Harness.stopAll, 30_000)

// ListMultipartUploads is needed: s3rver lacks it.
const server = Harness.available().find((c) => c.name === "env" || c.name === "moto")
const noServer = server === undefined ? "no S3 server with ListMultipartUploads (moto or GRAVITON_TEST_S3_ENDPOINT)" : undefined

const s3Options = (label: string) =>
  Effect.promise(async () => {
    const running = await Harness.server(server!)
    const place = await Harness.prepare(running, Harness.freshBucket(label))
    return Harness.clientOptions(server!, running, place)
  })

lifecycleSuite({
  name: "S3 + PostgreSQL",
  s3: true,
  skip: skipReason() ?? noServer,
  layer: () =>
    Layer.unwrapScoped(Effect.gen(function*() {
      const db = yield* freshDatabase("lifecycle_s3")
      const s3 = yield* s3Options("lifecycle-pg")
      return PgS3Store.layerWithUploads({ pg: { url: Redacted.make(db.url), migrate: true }, s3, layout: blocks })
    }))
})

lifecycleSuite({
  name: "S3 + LevelDB",
  s3: true,
  skip: noServer,
  layer: () =>
    Layer.unwrapEffect(Effect.map(s3Options("lifecycle-level"), (s3) =>
      LevelS3Store.layerWithUploads({ level: { path: tempDir("lifecycle-level-") }, s3, layout: blocks })))
})

describe("index rebuild on S3 + PostgreSQL", () => {
  gate(it.live, skipReason() ?? noServer)("a new, empty metadata database: check --repair records every monolithic blob again", () =>
    Effect.scoped(Effect.gen(function*() {
      const s3 = yield* s3Options("lifecycle-rebuild")
      const contents = [randomBytes(40_000, 1), randomBytes(7, 2), randomBytes(200_000, 3)]
      const first = yield* freshDatabase("lifecycle_rebuild_a")
      const keys = yield* Effect.scoped(
        Effect.forEach(contents, (c) => Effect.map(Effect.flatMap(BlobStore, (s) => Stream.run(chunked(c), s.put())), (r) => r.key)).pipe(
          Effect.provide(PgS3Store.layer({ pg: { url: Redacted.make(first.url), migrate: true }, s3 }))
        )
      )
      const second = yield* freshDatabase("lifecycle_rebuild_b")
      yield* Effect.scoped(Effect.gen(function*() {
        const lc = yield* Lifecycle.make()
        expect((yield* lc.stats).blobs).toBe(0)
        const repaired = yield* lc.check({ repair: true })
        expect(repaired.repairs.reindexed).toBe(contents.length)
        for (let i = 0; i < keys.length; i++) {
          expect(sameBytes(yield* collect(Stream.unwrap(Effect.map(BlobStore, (s) => s.get(keys[i]!)))), contents[i]!)).toBe(true)
        }
        expect((yield* lc.check({ readData: true })).problems).toEqual([])
      }).pipe(Effect.provide(PgS3Store.layer({ pg: { url: Redacted.make(second.url), migrate: true }, s3 }))))
    })), 120_000)
})
