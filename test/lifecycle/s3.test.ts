/** The lifecycle suite on S3 bytes with PostgreSQL or LevelDB metadata (moto, or GRAVITON_TEST_S3_ENDPOINT). */
import * as S3 from "@aws-sdk/client-s3"
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
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
import * as S3Proxy from "../harness/s3Proxy.js"
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

describe("a failed abort on S3 + LevelDB (through the fault proxy)", () => {
  gate(it.live, noServer)("the multipart upload an outage left open is aborted by gc once the endpoint comes back, and only that", () =>
    Effect.scoped(Effect.gen(function*() {
      const running = yield* Effect.promise(() => Harness.server(server!))
      const place = yield* Effect.promise(() => Harness.prepare(running, Harness.freshBucket("lifecycle-abort")))
      const proxy = yield* S3Proxy.scoped(running.endpoint)
      const direct = yield* Effect.acquireRelease(Effect.sync(() => Harness.rawClient(running)), (d) => Effect.sync(() => d.destroy()))
      const openUploads = Effect.promise(async () =>
        (await direct.send(new S3.ListMultipartUploadsCommand({ Bucket: place.bucket, Prefix: place.prefix }))).Uploads ?? []
      )
      const s3 = Harness.clientOptions(server!, running, place, { endpoint: proxy.endpoint })
      // Monolithic (the default layout): a blob above the part size is one multipart upload to the staging area.
      const store = LevelS3Store.layerWithUploads({ level: { path: tempDir("lifecycle-abort-") }, s3 })
      yield* Effect.gen(function*() {
        const lc = yield* Lifecycle.make()
        const blobs = yield* BlobStore
        const live = randomBytes(3_000, 1)
        const kept = (yield* Stream.run(chunked(live), blobs.put())).key
        // Down from part 2 on until reopened: the put fails, and so does its abort.
        const outage = proxy.add({ operation: "UploadPart", where: S3Proxy.part(2), fault: { _tag: "Refuse" } })
        const error = yield* Effect.flip(Stream.run(chunked(randomBytes(3 * s3.partSize! + 1_000, 2)), blobs.put()))
        yield* Effect.promise(() => proxy.reopen())
        outage.remove()
        expect(error.reason).toBe("Unavailable")
        const left = yield* openUploads
        expect(left.length).toBe(1)
        expect(left[0]!.Key!.startsWith(`${place.prefix}staging/`)).toBe(true)
        yield* Effect.sleep(Duration.millis(1100))

        const count = (r: Lifecycle.GcReport) => Object.fromEntries(Object.entries(r.reclaimed).map(([k, t]) => [k, t.count]))
        const expected = { staging: 0, pending: 0, uploads: 0, blocks: 0, orphans: 0, multipart: 1 }
        const dry = yield* lc.gc({ grace: Duration.millis(50), dryRun: true })
        expect(count(dry)).toEqual(expected)
        expect((yield* openUploads).length).toBe(1)
        const real = yield* lc.gc({ grace: Duration.millis(50) })
        expect(count(real)).toEqual(expected)
        expect(yield* openUploads).toEqual([])
        expect((yield* lc.gc({ grace: Duration.millis(50) })).total.count).toBe(0)
        const checked = yield* lc.check({ grace: Duration.millis(50), readData: true })
        expect(checked.problems).toEqual([])
        expect(checked.blobs).toBe(1)
        expect(sameBytes(yield* collect(blobs.get(kept)), live)).toBe(true)
      }).pipe(Effect.provide(store))
    })), 180_000)
})
