/**
 * The LevelDB + S3 store: CasBlobStore with the bytes in S3
 * (S3ObjectStore) and the metadata in a local LevelDB (LevelLayers.metadata:
 * KeyValueStore, RangeTracker, ReplicaIndex), e.g. at the edge. LevelDB has
 * no object store, so the bytes can only go to S3. Resumable uploads stage
 * segments as S3 objects (ObjectStaging), with records and ranges in
 * LevelDB. One process at a time per LevelDB directory.
 */
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { MetadataError, ObjectStoreError } from "../core/Errors.js"
import type { BlobAssembly } from "../ports/BlobAssembly.js"
import type { ImmutableObjectStore, MutableObjectStore } from "../ports/ObjectStore.js"
import * as CasBlobStore from "../blobs/CasBlobStore.js"
import * as Metrics from "../kit/Metrics.js"
import * as Uploads from "../uploads/Uploads.js"
import * as LevelLayers from "../backends/level/LevelLayers.js"
import * as S3Client from "../backends/s3/S3Client.js"
import * as S3Config from "../backends/s3/S3Config.js"
import { casOverS3 } from "./casOverS3.js"
import { layoutConfig, type StoreServices } from "./Store.js"

/** Options of the store: the LevelDB metadata database, the S3 bucket of the bytes, the layout. */
export interface Options {
  readonly level: LevelLayers.Options
  readonly s3: S3Config.S3ClientOptions
  /** Layout of newly stored blobs; default monolithic (one object per blob). */
  readonly layout?: CasBlobStore.Layout | undefined
}

/** Every service `layer` provides. */
export type Services =
  | StoreServices
  | BlobAssembly
  | MutableObjectStore
  | ImmutableObjectStore
  | S3Client.S3ClientInstance
  | LevelLayers.MetadataPorts

type Failure = MetadataError | ObjectStoreError

/** CasBlobStore over S3 objects and LevelDB metadata, with a metrics registry and an event bus. */
export const layer = (options: Options): Layer.Layer<Services, Failure> =>
  casOverS3(options.s3, options.layout, LevelLayers.metadata(options.level), Metrics.layer)

/** `layer` with resumable uploads: segments as S3 objects, records and ranges in LevelDB. */
export const layerWithUploads = (options: Options): Layer.Layer<Services | Uploads.Uploads, Failure> =>
  Uploads.layer().pipe(Layer.provideMerge(layer(options)))

/** Options from the environment: GRAVITON_LEVEL_*, GRAVITON_S3_* and GRAVITON_LAYOUT. */
export const config: Config.Config<Options> = Config.all({
  level: LevelLayers.config,
  s3: S3Config.config,
  layout: layoutConfig
})

/** Like `layer`, with options from `Config` (by default `config`). */
export const layerConfig = (
  options: Config.Config.Wrap<Options> = config
): Layer.Layer<Services, Failure | ConfigError.ConfigError> => Layer.unwrapEffect(Effect.map(Config.unwrap(options), layer))

/** Like `layerWithUploads`, with options from `Config` (by default `config`). */
export const layerWithUploadsConfig = (
  options: Config.Config.Wrap<Options> = config
): Layer.Layer<Services | Uploads.Uploads, Failure | ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(options), layerWithUploads))
