/**
 * The S3 store: S3BlobStore with its UploadStaging (the CLI's `--store s3`),
 * and resumable uploads with a LevelDB sidecar. See docs/backends/s3.md.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as ConfigError from "effect/ConfigError"
import * as NodePath from "node:path"
import { BlobError, type MetadataError, type ObjectStoreError } from "../core/Errors.js"
import type { BackendEvents } from "../ports/BackendEvents.js"
import type { BlobStore } from "../ports/BlobStore.js"
import type { MetricsRegistry } from "../ports/MetricsRegistry.js"
import type { UploadStaging } from "../ports/UploadStaging.js"
import * as Events from "../kit/Events.js"
import * as Metrics from "../kit/Metrics.js"
import * as Uploads from "../uploads/Uploads.js"
import * as S3BlobStore from "../backends/s3/S3BlobStore.js"
import * as S3Client from "../backends/s3/S3Client.js"
import { fromEnv } from "../backends/s3/S3Config.js"
import * as S3UploadStaging from "../backends/s3/S3UploadStaging.js"


/** What the CLI needs from a store (UploadStaging: resumable uploads as native multipart uploads). */
export type StoreServices = BlobStore | UploadStaging | MetricsRegistry | BackendEvents

/**
 * The `--store s3` store: S3BlobStore configured from the `GRAVITON_S3_*`
 * environment, with its UploadStaging (S3UploadStaging, options from
 * S3UploadStaging.fromEnv), a metrics registry and an event bus they report to. Blobs
 * are stored one object each; the chunked layout needs a KeyValueStore and
 * is refused with reason Unsupported.
 */
export const storeLayerFromEnv = (
  settings: { readonly layout?: "monolithic" | "chunked" | undefined } = {}
): Layer.Layer<StoreServices, BlobError | ObjectStoreError | ConfigError.ConfigError> =>
  settings.layout === "chunked"
    ? Layer.fail(
      new BlobError({
        reason: "Unsupported",
        backend: "s3",
        method: "store",
        description: "the s3 store keeps one object per blob; --layout chunked needs a KeyValueStore (use --store embedded)"
      })
    )
    : Layer.unwrapEffect(Effect.map(S3UploadStaging.fromEnv, (options) =>
      Layer.merge(S3BlobStore.layer(options), S3UploadStaging.layerFromClient(options)).pipe(
        Layer.provide(S3Client.layerConfig(fromEnv))
      ))).pipe(Layer.provideMerge(Layer.merge(Metrics.layer, Events.layer)))

/** Key namespaces of the upload sidecar (each its own LevelDB sublevel). */
export const UPLOADS_NAMESPACES: ReadonlyArray<string> = ["uploads", "ranges"]

/**
 * `storeLayerFromEnv` with resumable uploads: the parts are native
 * multipart parts on S3 (S3UploadStaging), and the upload records and
 * ranges, which S3 cannot keep, live in a LevelDB sidecar at `<home>/meta`
 * (a second process opening it fails with MetadataError Unavailable).
 */
export const uploadsLayerFromEnv = (
  settings: { readonly home: string; readonly layout?: "monolithic" | "chunked" | undefined }
): Layer.Layer<StoreServices | Uploads.Uploads, BlobError | ObjectStoreError | MetadataError | ConfigError.ConfigError> =>
  // LevelDB is loaded only here, not for every command on the s3 store.
  Layer.unwrapEffect(Effect.map(Effect.promise(() => import("../backends/level/LevelLayers.js")), (LevelLayers) =>
    Uploads.layer().pipe(
      // The sidecar is not exposed: the upload records are Uploads' own.
      Layer.provide(LevelLayers.live({ path: NodePath.join(settings.home, "meta"), namespaces: UPLOADS_NAMESPACES })),
      Layer.provideMerge(storeLayerFromEnv(settings))
    )))
