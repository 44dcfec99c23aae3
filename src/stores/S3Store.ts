/**
 * The S3 store: S3BlobStore natively (one object per blob, at its content
 * address), with every S3 port and the UploadStaging of native multipart
 * uploads (the CLI's `--store s3`). `layerWithUploads` adds resumable
 * uploads, whose records and ranges S3 cannot keep: they live in a LevelDB
 * sidecar at `<home>/meta`. See docs/backends/s3.md.
 */
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as NodePath from "node:path"
import { BlobError, type MetadataError, type ObjectStoreError } from "../core/Errors.js"
import type * as CasBlobStore from "../blobs/CasBlobStore.js"
import * as Events from "../kit/Events.js"
import * as Metrics from "../kit/Metrics.js"
import { KeyValueStore } from "../ports/KeyValueStore.js"
import * as Uploads from "../uploads/Uploads.js"
import * as S3Layers from "../backends/s3/S3Layers.js"
import { layoutConfig, type StoreServices } from "./Store.js"

/** Options of the S3 store: the backend's, the layout and where the upload sidecar lives. */
export type Options = S3Layers.Options & {
  /** Layout of new blobs: only monolithic (one object per blob); chunked is refused with reason Unsupported. */
  readonly layout?: CasBlobStore.Layout | undefined
  /** Directory of local state: the LevelDB sidecar of `layerWithUploads` at `<home>/meta` (default `./.graviton`). */
  readonly home?: string | undefined
}

/** Every service `layer` provides. */
export type Services = StoreServices | S3Layers.Services

type Failure = BlobError | ObjectStoreError

/** Every S3 port on one client, with a metrics registry and an event bus they report to. */
export const layer = (options: Options): Layer.Layer<Services, Failure> =>
  options.layout?._tag === "Chunked"
    ? Layer.fail(
      new BlobError({
        reason: "Unsupported",
        backend: "s3",
        method: "store",
        description: "the s3 store keeps one object per blob; the chunked layout needs a KeyValueStore (use the pg-s3 or level-s3 store)"
      })
    )
    : S3Layers.live(options).pipe(Layer.provideMerge(Layer.merge(Metrics.layer, Events.layer)))

/**
 * `layer` with resumable uploads: the parts are native multipart parts on
 * S3, the upload records and ranges are in a LevelDB sidecar at
 * `<home>/meta` (a second process opening it fails with MetadataError
 * Unavailable). Its KeyValueStore is exposed too, for what keeps state
 * beside an upload (the gateway's tus records and leases).
 */
export const layerWithUploads = (
  options: Options
): Layer.Layer<Services | Uploads.Uploads | KeyValueStore, Failure | MetadataError> =>
  // LevelDB is loaded only here, not for every command on the s3 store.
  Layer.unwrapEffect(Effect.map(Effect.promise(() => import("../backends/level/LevelLayers.js")), (LevelLayers) => {
    // One sidecar (the same layer value, so it is opened once): Uploads' ports, and its KeyValueStore exposed.
    const metadata = LevelLayers.metadata({ path: NodePath.join(options.home ?? "./.graviton", "meta") })
    return Layer.merge(
      Uploads.layer().pipe(Layer.provide(metadata)),
      Layer.effect(KeyValueStore, KeyValueStore).pipe(Layer.provide(metadata))
    ).pipe(Layer.provideMerge(layer(options)))
  }))

/** Options from the environment: GRAVITON_S3_* (S3Layers.config), GRAVITON_LAYOUT and GRAVITON_HOME. */
export const config: Config.Config<Options> = Config.map(
  Config.all([
    S3Layers.config,
    layoutConfig,
    Config.string("GRAVITON_HOME").pipe(
      Config.withDefault("./.graviton"),
      Config.withDescription("Directory of local state (the upload sidecar under meta/)")
    )
  ]),
  ([s3, layout, home]) => ({ ...s3, layout, home })
)

/** Like `layer`, with options from `Config` (by default `config`). */
export const layerConfig = (
  options: Config.Config.Wrap<Options> = config
): Layer.Layer<Services, Failure | ConfigError.ConfigError> => Layer.unwrapEffect(Effect.map(Config.unwrap(options), layer))

/** Like `layerWithUploads`, with options from `Config` (by default `config`). */
export const layerWithUploadsConfig = (
  options: Config.Config.Wrap<Options> = config
): Layer.Layer<Services | Uploads.Uploads | KeyValueStore, Failure | MetadataError | ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(options), layerWithUploads))
