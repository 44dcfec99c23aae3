/**
 * Every port the S3 backend has, on one client (one connection pool):
 * BlobStore (S3BlobStore), MutableObjectStore and ImmutableObjectStore
 * (S3ObjectStore), UploadStaging (S3UploadStaging: resumable uploads as
 * native multipart uploads), plus the S3ClientInstance itself.
 *
 *   const program = myApp.pipe(Effect.provide(S3Layers.live({ bucket: "my-bucket", prefix: "graviton/" })))
 *
 * MetricsRegistry and BackendEvents are picked up when present in the
 * context the layer is built in (provide them underneath to get S3 metrics
 * and events).
 */
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { ObjectStoreError } from "../../core/Errors.js"
import type { BlobStore } from "../../ports/BlobStore.js"
import type { ImmutableObjectStore, MutableObjectStore } from "../../ports/ObjectStore.js"
import type { UploadStaging } from "../../ports/UploadStaging.js"
import * as S3BlobStore from "./S3BlobStore.js"
import * as S3Client from "./S3Client.js"
import * as S3Config from "./S3Config.js"
import * as S3ObjectStore from "./S3ObjectStore.js"
import * as S3UploadStaging from "./S3UploadStaging.js"

/** Every service `live` provides. */
export type Services = BlobStore | MutableObjectStore | ImmutableObjectStore | UploadStaging | S3Client.S3ClientInstance

/** The client's options, the blob namespace and the upload staging (both use `blobPrefix`). */
export type Options = S3Config.S3ClientOptions & S3BlobStore.S3BlobStoreOptions & S3UploadStaging.S3UploadStagingOptions

/** Options from the environment: GRAVITON_S3_* (S3Config.config) and GRAVITON_S3_UPLOAD_* (S3UploadStaging.config). */
export const config: Config.Config<Options> = Config.map(
  Config.all([S3Config.config, S3UploadStaging.config]),
  ([client, staging]) => ({ ...client, ...staging })
)

/** The four ports over the S3ClientInstance in context. */
const ports = (
  options: Options
): Layer.Layer<BlobStore | MutableObjectStore | ImmutableObjectStore | UploadStaging, ObjectStoreError, S3Client.S3ClientInstance> =>
  Layer.mergeAll(S3BlobStore.layer(options), S3ObjectStore.layer, S3UploadStaging.layer(options))

/** The four ports and the client they share, from options. */
export const live = (options: Options): Layer.Layer<Services, ObjectStoreError> =>
  ports(options).pipe(Layer.provideMerge(S3Client.layer(options)))

/** Like `live`, with options from `Config` (by default `config`, i.e. the GRAVITON_S3_* variables). */
export const layerConfig = (
  options: Config.Config.Wrap<Options> = config
): Layer.Layer<Services, ObjectStoreError | ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(options), live))
