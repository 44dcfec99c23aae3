/**
 * The embedded store: everything in one local directory, no server.
 *
 *   <home>/blobs   object bytes (FsObjectStore, scheme `file`)
 *   <home>/meta    LevelDB: blob metadata, the dedup index, ranges, replicas
 *
 * `layer` composes those with CasBlobStore, one MetricsRegistry and one
 * BackendEvents bus shared by every layer, and exposes the underlying ports
 * too (so tools can use the same stores), with the UploadStaging of the fs
 * store (FsUploadStaging: an upload is one file, renamed into place on
 * completion); `layerWithUploads` adds the resumable Uploads. LevelDB allows
 * one process at a time per directory: a second process opening the same
 * home fails with reason Unavailable.
 */
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as path from "node:path"
import type { HashAlgorithm } from "../core/BinaryKey.js"
import type { BlobError, MetadataError, ObjectStoreError } from "../core/Errors.js"
import type { BlobAssembly } from "../ports/BlobAssembly.js"
import type { KeyValueStore } from "../ports/KeyValueStore.js"
import type { ImmutableObjectStore, MutableObjectStore } from "../ports/ObjectStore.js"
import type { RangeTracker } from "../ports/RangeTracker.js"
import type { ReplicaIndex } from "../ports/ReplicaIndex.js"
import type { UploadStaging } from "../ports/UploadStaging.js"
import * as CasBlobStore from "../blobs/CasBlobStore.js"
import * as Events from "../kit/Events.js"
import * as Metrics from "../kit/Metrics.js"
import * as Uploads from "../uploads/Uploads.js"
import * as FsObjectStore from "../backends/fs/FsObjectStore.js"
import * as FsUploadStaging from "../backends/fs/FsUploadStaging.js"
import type * as LevelDatabase from "../backends/level/LevelDatabase.js"
import * as LevelLayers from "../backends/level/LevelLayers.js"
import { layoutConfig, type StoreServices } from "./Store.js"

/** Options of the embedded store. */
export interface Options {
  /** Directory holding everything (created when missing). */
  readonly home: string
  /** Layout of newly stored blobs; default monolithic (one object per blob). */
  readonly layout?: CasBlobStore.Layout | undefined
  /** Hash algorithm of new keys; default sha256. */
  readonly algorithm?: HashAlgorithm | undefined
  /** fsync each object before it becomes visible (durability over speed); default false. */
  readonly fsync?: boolean | undefined
  /** Segment size of resumable uploads (FsUploadStaging); default 8 MiB. */
  readonly uploadSegmentSize?: number | undefined
}

/** Every service `layer` provides. */
export type Services =
  | StoreServices
  | BlobAssembly
  | MutableObjectStore
  | ImmutableObjectStore
  | KeyValueStore
  | RangeTracker
  | ReplicaIndex
  | UploadStaging
  | LevelDatabase.LevelDatabase

/** What building the store may fail with. */
type Failure = ObjectStoreError | MetadataError | BlobError

/** Locator scheme of the embedded object store. */
export const SCHEME = "file"

/** Where the object bytes live under `home`. */
export const blobsDir = (home: string): string => path.join(home, "blobs")

/** Where the LevelDB metadata lives under `home` (Graviton's namespaces, each its own sublevel). */
export const metaDir = (home: string): string => path.join(home, "meta")

/** BlobStore and every underlying port, in `options.home`. */
export const layer = (options: Options): Layer.Layer<Services, Failure> => {
  const shared = Layer.merge(Metrics.layer, Events.layer)
  const ports = Layer.mergeAll(
    FsObjectStore.layer({ root: blobsDir(options.home), scheme: SCHEME, fsync: options.fsync }),
    LevelLayers.live({ path: metaDir(options.home) })
  )
  const blobs = CasBlobStore.layer({
    scheme: SCHEME,
    ...(options.layout === undefined ? {} : { layout: options.layout }),
    ...(options.algorithm === undefined ? {} : { algorithm: options.algorithm })
  })
  const staging = FsUploadStaging.layer({ root: blobsDir(options.home), segmentSize: options.uploadSegmentSize, fsync: options.fsync })
  return staging.pipe(
    Layer.provideMerge(blobs),
    Layer.provideMerge(ports),
    Layer.provideMerge(shared)
  )
}

/** `layer` with resumable uploads (segments in one file each, records and ranges in LevelDB). */
export const layerWithUploads = (options: Options): Layer.Layer<Services | Uploads.Uploads, Failure> =>
  Uploads.layer().pipe(Layer.provideMerge(layer(options)))

/** Settings read from the environment: GRAVITON_HOME (default `./.graviton`), GRAVITON_LAYOUT (monolithic | chunked). */
export const config: Config.Config<Options> = Config.all({
  home: Config.string("GRAVITON_HOME").pipe(
    Config.withDefault("./.graviton"),
    Config.withDescription("Directory of the embedded store (blobs/ and meta/ inside)")
  ),
  layout: layoutConfig
})

/** Like `layer`, with options read from `Config` (by default `config`, i.e. GRAVITON_HOME and GRAVITON_LAYOUT). */
export const layerConfig = (
  options: Config.Config.Wrap<Options> = config
): Layer.Layer<Services, Failure | ConfigError.ConfigError> => Layer.unwrapEffect(Effect.map(Config.unwrap(options), layer))

/** Like `layerWithUploads`, with options read from `Config` (by default `config`). */
export const layerWithUploadsConfig = (
  options: Config.Config.Wrap<Options> = config
): Layer.Layer<Services | Uploads.Uploads, Failure | ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(options), layerWithUploads))
