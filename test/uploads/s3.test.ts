/**
 * The Uploads suite over the S3 store as the CLI builds it
 * (`S3Store.layerWithUploadsConfig`, configured by GRAVITON_S3_*): segments as native
 * multipart parts (S3UploadStaging, 5 MiB parts), records and ranges in the
 * LevelDB sidecar under the home. Runs on every harness server that lists
 * multipart parts; the others are skipped with the reason in the title.
 */
import * as S3 from "@aws-sdk/client-s3"
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { createHash } from "node:crypto"
import * as NFS from "node:fs"
import * as NodePath from "node:path"
import * as LevelLayers from "../../src/backends/level/LevelLayers.js"
import * as S3Backend from "../../src/stores/S3Store.js"
import * as CasBlobStore from "../../src/blobs/CasBlobStore.js"
import * as S3Client from "../../src/backends/s3/S3Client.js"
import { S3ClientInstance } from "../../src/backends/s3/S3Client.js"
import { BinaryKey } from "../../src/core/BinaryKey.js"
import * as RangeSet from "../../src/core/RangeSet.js"
import { BlobStore } from "../../src/ports/BlobStore.js"
import { UploadStaging } from "../../src/ports/UploadStaging.js"
import * as Uploads from "../../src/uploads/Uploads.js"
import { tempDir } from "../blobs/fixtures.js"
import { chunked, collect, MiB, randomBytes, sameBytes } from "../../src/testing/bytes.js"
import { gate } from "../../src/testing/capabilities.js"
import { testUploads } from "../../src/testing/Uploads.js"
import * as Harness from "../harness/s3.js"

afterAll(Harness.stopAll, 30_000)

/** Part size, and so segment size (S3's minimum, which moto enforces). */
const P = 5 * MiB

/** Why this staging cannot run on `c`, if it cannot. */
const skipOf = (c: Harness.Candidate): string | undefined =>
  c.skip ?? (c.name === "s3rver" ? "s3rver has no ListParts (405): the s3 store has no resumable uploads there" : undefined)

/** The GRAVITON_S3_* environment of a running server and place. */
const envOf = (r: Harness.Running, place: Harness.Place): Map<string, string> =>
  new Map([
    ["GRAVITON_S3_BUCKET", place.bucket],
    ["GRAVITON_S3_PREFIX", place.prefix],
    ["GRAVITON_S3_REGION", r.region],
    ["GRAVITON_S3_ENDPOINT", r.endpoint],
    ["GRAVITON_S3_FORCE_PATH_STYLE", "true"],
    ["GRAVITON_S3_ACCESS_KEY_ID", r.accessKeyId],
    ["GRAVITON_S3_SECRET_ACCESS_KEY", r.secretAccessKey],
    ["GRAVITON_S3_CHECKSUM", "WHEN_REQUIRED"],
    ["GRAVITON_S3_PART_SIZE", String(P)]
  ])

/** Where a server runs and the bucket of one suite: started and created once per layer build. */
const placeOf = (c: Harness.Candidate, label: string) =>
  Effect.promise(async () => {
    const running = await Harness.server(c)
    const place = await Harness.prepare(running, Harness.freshBucket(`${label}-${c.name}`))
    return { running, place }
  })

/** `layerWithUploadsConfig` on a server, in `home`. */
const uploadsFromEnv = (running: Harness.Running, place: Harness.Place, home: string) =>
  S3Backend.layerWithUploadsConfig().pipe(
    Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map([...envOf(running, place), ["GRAVITON_HOME", home]]))))
  )

/**
 * What `layerWithUploadsConfig` composes (the env-configured store, its staging,
 * the sidecar, Uploads), with the sidecar exposed so the suite can build a
 * fresh Uploads on it, plus a client of its own (same bucket and prefix) to
 * look at what is staged.
 */
const suiteLayer = (c: Harness.Candidate) =>
  Layer.unwrapEffect(Effect.map(placeOf(c, "uploads"), ({ place, running }) =>
    Uploads.layer().pipe(
      Layer.provideMerge(LevelLayers.live({ path: NodePath.join(tempDir("uploads-s3-"), "meta") })),
      Layer.provideMerge(S3Backend.layerConfig()),
      Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(envOf(running, place)))),
      Layer.merge(S3Client.layer(Harness.clientOptions(c, running, place)))
    )))

/** Every object and open multipart upload whose key starts with the upload's staging key. */
const staged = (id: string) =>
  Effect.gen(function*() {
    const { client, settings } = yield* S3ClientInstance
    const Prefix = `${settings.prefix}uploads/${id}`
    const objects = yield* Effect.promise(() => client.send(new S3.ListObjectsV2Command({ Bucket: settings.bucket, Prefix })))
    const open = yield* Effect.promise(() => client.send(new S3.ListMultipartUploadsCommand({ Bucket: settings.bucket, Prefix })))
    return (objects.Contents ?? []).length + (open.Uploads ?? []).length
  })

for (const c of Harness.candidates) {
  // Counting open multipart uploads needs ListMultipartUploads (the multipartAbort capability).
  const skip = skipOf(c) ??
    (c.capabilities.multipartAbort === true ? undefined : `${c.name} cannot list multipart uploads: ${c.capabilities.multipartAbort.reason}`)
  testUploads(`s3 on ${c.name}`, {
    layer: suiteLayer(c),
    fresh: Uploads.make(),
    segmentSize: P,
    staged
  }, { skipAll: skip })
}

const keyOf = (bytes: Uint8Array) =>
  new BinaryKey({ algorithm: "sha256", digest: createHash("sha256").update(bytes).digest("hex"), size: bytes.length })

describe("S3Store.layerWithUploads", () => {
  const server = Harness.candidates.find((c) => skipOf(c) === undefined)
  gate(it.live, server === undefined ? "no S3 server here lists multipart parts" : undefined)(
    `records outlive the process, parts live in S3 (${server?.name ?? "none"})`,
    () =>
      Effect.gen(function*() {
        const { place, running } = yield* placeOf(server!, "uploads-env")
        const home = tempDir("uploads-s3-env-")
        const bytes = randomBytes(P + 4321, 31)
        const size = bytes.length

        // "First process": begins, lands the first part, and exits.
        const id = yield* Effect.scoped(Effect.gen(function*() {
          const context = yield* Layer.build(uploadsFromEnv(running, place, home))
          const uploads = Layer.succeedContext(context)
          return yield* Effect.gen(function*() {
            const u = yield* Uploads.Uploads
            expect((yield* UploadStaging).name).toBe("s3-multipart")
            const id = yield* u.begin({ size, expectedKey: keyOf(bytes) })
            yield* u.write(id, 0, chunked(bytes.subarray(0, P), { max: 256 * 1024 }))
            return id
          }).pipe(Effect.provide(uploads))
        }))

        // "Second process": a new client and a reopened sidecar; the record and the landed part are found again.
        yield* Effect.gen(function*() {
          const u = yield* Uploads.Uploads
          const before = yield* u.status(id)
          expect([before.staging, before.size]).toEqual(["s3-multipart", Option.some(size)])
          expect(before.landed).toEqual([RangeSet.unsafeSpan(0, P)])
          expect(before.missing).toEqual([RangeSet.unsafeSpan(P, size)])
          yield* u.write(id, P, chunked(bytes.subarray(P), { max: 256 * 1024 }))
          const result = yield* u.complete(id)
          expect(result.key).toEqual(keyOf(bytes))
          const back = yield* collect((yield* BlobStore).get(result.key))
          expect(sameBytes(back, bytes)).toBe(true)
          // The record is gone...
          expect((yield* Effect.flip(u.status(id))).reason).toBe("NotFound")
        }).pipe(Effect.provide(uploadsFromEnv(running, place, home)))
        // ...and so is everything staged: no pieces, no staged object, no open multipart upload.
        const raw = Harness.rawClient(running)
        const Prefix = `${place.prefix}uploads/${id}`
        const [objects, open] = yield* Effect.promise(() =>
          Promise.all([
            raw.send(new S3.ListObjectsV2Command({ Bucket: place.bucket, Prefix })),
            raw.send(new S3.ListMultipartUploadsCommand({ Bucket: place.bucket, Prefix }))
          ]).finally(() => raw.destroy())
        )
        expect((objects.Contents ?? []).length).toBe(0)
        if (server!.capabilities.multipartAbort === true) expect((open.Uploads ?? []).length).toBe(0)
      }),
    120_000
  )

  it.effect("the chunked layout is refused with Unsupported before anything is opened", () =>
    Effect.gen(function*() {
      const home = tempDir("uploads-s3-chunked-")
      const error = yield* Effect.flip(Effect.scoped(Layer.build(S3Backend.layerWithUploads({ bucket: "never-opened", home, layout: CasBlobStore.chunked() }))))
      expect(error._tag === "BlobError" ? error.reason : error._tag).toBe("Unsupported")
      // The sidecar was never created.
      expect(NFS.existsSync(NodePath.join(home, "meta"))).toBe(false)
    }))
})
