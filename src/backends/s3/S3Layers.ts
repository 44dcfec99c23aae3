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
import type * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { ObjectStoreError } from "../../core/Errors.js"
import type { BlobStore } from "../../ports/BlobStore.js"
import type { ImmutableObjectStore, MutableObjectStore } from "../../ports/ObjectStore.js"
import type { UploadStaging } from "../../ports/UploadStaging.js"
import * as S3BlobStore from "./S3BlobStore.js"
import * as S3Client from "./S3Client.js"
import { fromEnv, type S3ClientOptions } from "./S3Config.js"
import * as S3ObjectStore from "./S3ObjectStore.js"
import * as S3UploadStaging from "./S3UploadStaging.js"

/** The ports S3Layers provides. */
export type S3Services = BlobStore | MutableObjectStore | ImmutableObjectStore | UploadStaging | S3Client.S3ClientInstance

/** Options of the blob namespace and of the upload staging (both use `blobPrefix`). */
export type S3LayersOptions = S3BlobStore.S3BlobStoreOptions & S3UploadStaging.S3UploadStagingOptions

/** The four ports over the S3ClientInstance in context. */
export const fromClient = (
  options: S3LayersOptions = {}
): Layer.Layer<BlobStore | MutableObjectStore | ImmutableObjectStore | UploadStaging, ObjectStoreError, S3Client.S3ClientInstance> =>
  Layer.mergeAll(S3BlobStore.layer(options), S3ObjectStore.layerFromClient, S3UploadStaging.layerFromClient(options))

/** The four ports (and the client) from options. */
export const live = (options: S3ClientOptions & S3LayersOptions): Layer.Layer<S3Services, ObjectStoreError> =>
  fromClient(options).pipe(Layer.provideMerge(S3Client.layer(options)))

/** The four ports (and the client) from a Config of the client options. */
export const liveConfig = (
  config: Config.Config.Wrap<S3ClientOptions>,
  options: S3LayersOptions = {}
): Layer.Layer<S3Services, ObjectStoreError | ConfigError.ConfigError> =>
  fromClient(options).pipe(Layer.provideMerge(S3Client.layerConfig(config)))

/**
 * The four ports (and the client) from the `GRAVITON_S3_*` environment
 * variables (see S3Config.fromEnv, and S3UploadStaging.fromEnv for
 * GRAVITON_S3_UPLOAD_PREFIX and GRAVITON_S3_UPLOAD_PART_SIZE).
 */
export const liveFromEnv: Layer.Layer<S3Services, ObjectStoreError | ConfigError.ConfigError> = Layer.unwrapEffect(
  Effect.map(S3UploadStaging.fromEnv, (options) => liveConfig(fromEnv, options))
)
