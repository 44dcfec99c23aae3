/**
 * Every port the S3 backend has, on one client (one connection pool):
 * BlobStore (S3BlobStore), MutableObjectStore and ImmutableObjectStore
 * (S3ObjectStore), plus the S3ClientInstance itself.
 *
 *   const program = myApp.pipe(Effect.provide(S3Layers.live({ bucket: "my-bucket", prefix: "graviton/" })))
 *
 * MetricsRegistry and BackendEvents are picked up when present in the
 * context the layer is built in (provide them underneath to get S3 metrics
 * and events).
 */
import type * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Layer from "effect/Layer"
import type { ObjectStoreError } from "../../core/Errors.js"
import type { BlobStore } from "../../ports/BlobStore.js"
import type { ImmutableObjectStore, MutableObjectStore } from "../../ports/ObjectStore.js"
import * as S3BlobStore from "./S3BlobStore.js"
import * as S3Client from "./S3Client.js"
import { fromEnv, type S3ClientOptions } from "./S3Config.js"
import * as S3ObjectStore from "./S3ObjectStore.js"

/** The ports S3Layers provides. */
export type S3Services = BlobStore | MutableObjectStore | ImmutableObjectStore | S3Client.S3ClientInstance

/** The three ports over the S3ClientInstance in context. */
export const fromClient = (
  options: S3BlobStore.S3BlobStoreOptions = {}
): Layer.Layer<BlobStore | MutableObjectStore | ImmutableObjectStore, ObjectStoreError, S3Client.S3ClientInstance> =>
  Layer.merge(S3BlobStore.layerFromClient(options), S3ObjectStore.layerFromClient)

/** The three ports (and the client) from options. */
export const live = (options: S3ClientOptions & S3BlobStore.S3BlobStoreOptions): Layer.Layer<S3Services, ObjectStoreError> =>
  fromClient(options).pipe(Layer.provideMerge(S3Client.layer(options)))

/** The three ports (and the client) from a Config of the client options. */
export const liveConfig = (
  config: Config.Config.Wrap<S3ClientOptions>,
  options: S3BlobStore.S3BlobStoreOptions = {}
): Layer.Layer<S3Services, ObjectStoreError | ConfigError.ConfigError> =>
  fromClient(options).pipe(Layer.provideMerge(S3Client.layerConfig(config)))

/** The three ports (and the client) from the `GRAVITON_S3_*` environment variables (see S3Config.fromEnv). */
export const liveFromEnv: Layer.Layer<S3Services, ObjectStoreError | ConfigError.ConfigError> = liveConfig(fromEnv)
