/**
 * The PostgreSQL store: CasBlobStore over every PostgreSQL port (bytes and
 * metadata in one database, the CLI's `--store pg`), and `migrate`, what
 * `graviton migrate` runs. See docs/backends/postgres.md.
 */
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { MetadataError, ObjectStoreError } from "../core/Errors.js"
import type { BlobAssembly } from "../ports/BlobAssembly.js"
import * as CasBlobStore from "../blobs/CasBlobStore.js"
import * as Events from "../kit/Events.js"
import * as Metrics from "../kit/Metrics.js"
import * as Uploads from "../uploads/Uploads.js"
import * as PgLayers from "../backends/pg/PgLayers.js"
import * as PgMetrics from "../backends/pg/PgMetrics.js"
import * as PgMigrations from "../backends/pg/PgMigrations.js"
import { layoutConfig, type StoreServices } from "./Store.js"

/** Options of the PostgreSQL store: the backend's, and the layout of new blobs. */
export interface Options extends PgLayers.Options {
  /** Layout of newly stored blobs; default monolithic (one object per blob). */
  readonly layout?: CasBlobStore.Layout | undefined
}

/** Every service `layer` provides. */
export type Services = StoreServices | BlobAssembly | PgLayers.Services

type Failure = MetadataError | ObjectStoreError

/** Scheme and bucket of the objects CasBlobStore keeps in PostgreSQL. */
export const SCHEME = "pg"
export const BUCKET = "blobs"

/** A metrics registry that knows the PostgreSQL metric names, and an event bus. */
const reporting = Layer.merge(Metrics.layerWith({ help: PgMetrics.help }), Events.layer)

/** CasBlobStore over every PostgreSQL port, with the metrics registry and event bus they report to. */
export const layer = (options: Options): Layer.Layer<Services, Failure> =>
  CasBlobStore.layer({ scheme: SCHEME, bucket: BUCKET, layout: options.layout ?? CasBlobStore.monolithic }).pipe(
    Layer.provideMerge(PgLayers.live(options)),
    Layer.provideMerge(reporting)
  )

/** `layer` with resumable uploads: segments as PostgreSQL objects, records and ranges in its tables. */
export const layerWithUploads = (options: Options): Layer.Layer<Services | Uploads.Uploads, Failure> =>
  Uploads.layer().pipe(Layer.provideMerge(layer(options)))

/** Options from the environment: GRAVITON_PG_* (PgLayers.config) and GRAVITON_LAYOUT. */
export const config: Config.Config<Options> = Config.map(
  Config.all([PgLayers.config, layoutConfig]),
  ([pg, layout]) => ({ ...pg, layout })
)

/** Like `layer`, with options from `Config` (by default `config`). */
export const layerConfig = (
  options: Config.Config.Wrap<Options> = config
): Layer.Layer<Services, Failure | ConfigError.ConfigError> => Layer.unwrapEffect(Effect.map(Config.unwrap(options), layer))

/** Like `layerWithUploads`, with options from `Config` (by default `config`). */
export const layerWithUploadsConfig = (
  options: Config.Config.Wrap<Options> = config
): Layer.Layer<Services | Uploads.Uploads, Failure | ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(options), layerWithUploads))

/**
 * `graviton migrate`: applies pending migrations to the database of
 * `options.url` (in `options.schema` when set) and returns what was
 * applied; safe to run from several processes at once.
 */
export const migrate = (
  options: PgLayers.Options,
  migrations: Omit<PgMigrations.Options, "schema"> = {}
): Effect.Effect<ReadonlyArray<readonly [number, string]>, MetadataError> =>
  PgMigrations.run({ ...migrations, schema: options.schema }).pipe(
    Effect.provide(PgLayers.client({ ...options, migrate: false }))
  )
