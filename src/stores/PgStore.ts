/**
 * The PostgreSQL store: CasBlobStore over every PostgreSQL port (the CLI's
 * `--store pg`), and `graviton migrate`. See docs/backends/postgres.md.
 */
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { MetadataError, ObjectStoreError } from "../core/Errors.js"
import type { BackendEvents } from "../ports/BackendEvents.js"
import type { BlobStore } from "../ports/BlobStore.js"
import type { KeyValueStore } from "../ports/KeyValueStore.js"
import type { MetricsRegistry } from "../ports/MetricsRegistry.js"
import * as CasBlobStore from "../blobs/CasBlobStore.js"
import * as Events from "../kit/Events.js"
import * as Metrics from "../kit/Metrics.js"
import * as Uploads from "../uploads/Uploads.js"
import * as PgLayers from "../backends/pg/PgLayers.js"
import * as PgMetrics from "../backends/pg/PgMetrics.js"
import * as PgMigrations from "../backends/pg/PgMigrations.js"


/** What the CLI needs from a store (the KeyValueStore lets it keep cumulative metrics). */
export type StoreServices = BlobStore | MetricsRegistry | BackendEvents | KeyValueStore

/** Scheme and bucket of the objects CasBlobStore keeps in PostgreSQL. */
export const SCHEME = "pg"
export const BUCKET = "blobs"

/**
 * The `--store pg` store: CasBlobStore over every PostgreSQL port,
 * configured from GRAVITON_PG_* (PgLayers.config), with a metrics registry
 * (that knows the PostgreSQL metric names) and an event bus it reports to.
 */
export const storeLayerFromEnv = (
  settings: { readonly layout?: "monolithic" | "chunked" | undefined } = {}
): Layer.Layer<StoreServices, MetadataError | ObjectStoreError | ConfigError.ConfigError> => fullLayerFromEnv(settings)

/** `storeLayerFromEnv` with resumable uploads: segments as PostgreSQL objects, records and ranges in its tables. */
export const uploadsLayerFromEnv = (
  settings: { readonly layout?: "monolithic" | "chunked" | undefined } = {}
): Layer.Layer<StoreServices | Uploads.Uploads, MetadataError | ObjectStoreError | ConfigError.ConfigError> =>
  Uploads.layer().pipe(Layer.provideMerge(fullLayerFromEnv(settings)))

const fullLayerFromEnv = (settings: { readonly layout?: "monolithic" | "chunked" | undefined }) =>
  CasBlobStore.layer({
    scheme: SCHEME,
    bucket: BUCKET,
    layout: settings.layout === "chunked" ? CasBlobStore.chunked() : CasBlobStore.monolithic
  }).pipe(
    Layer.provideMerge(PgLayers.layerConfig()),
    Layer.provideMerge(Layer.merge(Metrics.layerWith({ help: PgMetrics.help }), Events.layer))
  )

/**
 * `graviton migrate`: applies pending migrations to the database of
 * GRAVITON_PG_URL (in GRAVITON_PG_SCHEMA when set) and returns what was
 * applied; safe to run from several processes at once.
 */
export const migrateFromEnv: Effect.Effect<
  ReadonlyArray<readonly [number, string]>,
  MetadataError | ConfigError.ConfigError
> = Effect.gen(function*() {
  const options = yield* PgLayers.config
  return yield* PgMigrations.run({ schema: options.schema }).pipe(
    Effect.provide(PgLayers.client({ ...options, migrate: false }))
  )
})
