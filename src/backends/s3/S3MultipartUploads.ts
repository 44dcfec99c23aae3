/**
 * MultipartUploads on S3: ListMultipartUploads (a page of up to 1,000 at a
 * time, pulled as the consumer asks), ListParts to size one, and
 * AbortMultipartUpload. Keys outside the client's prefix, or that no locator
 * can name, are not listed. Servers without ListMultipartUploads (s3rver)
 * fail the listing with Unsupported.
 */
import * as S3 from "@aws-sdk/client-s3"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as BlobLocator from "../../core/BlobLocator.js"
import { ObjectStoreError, toPortError } from "../../core/Errors.js"
import { MultipartUploads, type PendingMultipart } from "../../ports/MultipartUploads.js"
import * as Instrument from "../../kit/Instrument.js"
import { BACKEND, make as makeOps } from "./internal/ops.js"
import * as S3Client from "./S3Client.js"
import { locate, locatorOfKey, SCHEME } from "./S3ObjectStore.js"

type Shape = MultipartUploads["Type"]

/** Builds MultipartUploads on the S3ClientInstance in context. */
export const make: Effect.Effect<Shape, never, S3Client.S3ClientInstance> = Effect.gen(function*() {
  const shape = yield* S3Client.S3ClientInstance
  const instrument = yield* Instrument.make(BACKEND, "MultipartUploads")
  const ops = makeOps(shape, instrument)
  const { client, settings } = shape
  const Bucket = settings.bucket

  const list: Shape["list"] = (prefix) =>
    Stream.unwrap(Effect.gen(function*() {
      const p = yield* Either.mapLeft(
        BlobLocator.makePrefix(prefix.scheme, prefix.bucket, prefix.path),
        toPortError(ObjectStoreError, BACKEND, "listMultipart")
      )
      if (p.scheme !== SCHEME || p.bucket !== Bucket) {
        return yield* new ObjectStoreError({
          reason: "InvalidInput",
          backend: BACKEND,
          method: "listMultipart",
          description: `${p}: this store serves ${SCHEME}://${Bucket}/`
        })
      }
      const Prefix = settings.prefix + p.path
      type Marker = { readonly key: string | undefined; readonly id: string | undefined }
      return Stream.paginateChunkEffect({ key: undefined, id: undefined } as Marker, (marker) =>
        Effect.map(
          ops.send("ListMultipartUploads", String(p), (signal) =>
            client.send(
              new S3.ListMultipartUploadsCommand({ Bucket, Prefix, KeyMarker: marker.key, UploadIdMarker: marker.id }),
              { abortSignal: signal }
            )),
          (out) => {
            const found: Array<PendingMultipart> = []
            for (const u of out.Uploads ?? []) {
              if (u.Key === undefined || u.UploadId === undefined) continue
              const locator = locatorOfKey(settings, u.Key)
              if (Option.isNone(locator)) continue
              found.push({ locator: locator.value, uploadId: u.UploadId, initiated: Option.fromNullable(u.Initiated) })
            }
            const next: Option.Option<Marker> = out.IsTruncated === true
              ? Option.some({ key: out.NextKeyMarker, id: out.NextUploadIdMarker })
              : Option.none()
            return [Chunk.unsafeFromArray(found), next] as const
          }
        ))
    })).pipe(instrument.observeStream("listMultipart"))

  const keyOf = (method: string, upload: PendingMultipart) =>
    Effect.map(locate(settings, method, upload.locator), (l) => l.key)

  const size: Shape["size"] = (upload) =>
    Effect.gen(function*() {
      const Key = yield* keyOf("sizeMultipart", upload)
      let total = 0
      let marker: string | undefined
      while (true) {
        const out = yield* ops.send("ListParts", BlobLocator.render(upload.locator), (signal) =>
          client.send(
            new S3.ListPartsCommand({ Bucket, Key, UploadId: upload.uploadId, PartNumberMarker: marker, ...shape.sse.customer() }),
            { abortSignal: signal }
          ))
        for (const part of out.Parts ?? []) total += part.Size ?? 0
        if (out.IsTruncated !== true || out.NextPartNumberMarker === undefined) return total
        marker = out.NextPartNumberMarker
      }
    }).pipe(
      // Aborted or completed meanwhile: nothing left to count.
      Effect.catchIf((e) => e.reason === "NotFound", () => Effect.succeed(0)),
      instrument.observe("sizeMultipart")
    )

  const abort: Shape["abort"] = (upload) =>
    Effect.gen(function*() {
      const Key = yield* keyOf("abortMultipart", upload)
      yield* ops.send("AbortMultipartUpload", BlobLocator.render(upload.locator), (signal) =>
        client.send(new S3.AbortMultipartUploadCommand({ Bucket, Key, UploadId: upload.uploadId }), { abortSignal: signal }))
    }).pipe(
      Effect.catchIf((e) => e.reason === "NotFound", () => Effect.void),
      Effect.asVoid,
      instrument.observe("abortMultipart")
    )

  return MultipartUploads.of({ list, size, abort })
})

/** MultipartUploads over the S3ClientInstance in context. */
export const layer: Layer.Layer<MultipartUploads, never, S3Client.S3ClientInstance> = Layer.effect(MultipartUploads, make)
