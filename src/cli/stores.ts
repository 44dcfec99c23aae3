/**
 * The stores the CLI can talk to: a small registry from the `--store` name
 * to a store of src/stores (its `layerConfig`, or `layerWithUploadsConfig`
 * for resumable uploads, with the CLI's --home and --layout applied).
 * Everything else in the CLI only sees the services listed in
 * `StoreServices`.
 *
 * Backends are imported when their store is chosen (`lazy`), not when the
 * CLI starts: loading the AWS SDK, the PostgreSQL driver and LevelDB for
 * every command would cost start-up time and memory for nothing.
 */
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as path from "node:path"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as MemoryLayers from "../backends/memory/MemoryLayers.js"
import * as MemoryObjectStore from "../backends/memory/MemoryObjectStore.js"
import { BlobStore } from "../ports/BlobStore.js"
import * as CasBlobStore from "../blobs/CasBlobStore.js"
import * as Events from "../kit/Events.js"
import * as Metrics from "../kit/Metrics.js"
import * as Uploads from "../uploads/Uploads.js"
import type { StoreServices } from "../stores/Store.js"
import { ExitCode, fail as cliFail } from "./exitCodes.js"

/** Settings a store factory may use (from options, the environment, or defaults). */
export interface StoreSettings {
  /** Directory of a local store (`--home`, GRAVITON_HOME). */
  readonly home: string
  /** Layout of newly stored blobs (`--layout`, GRAVITON_LAYOUT). */
  readonly layout: "monolithic" | "chunked"
}

/**
 * What every store gives the CLI (see src/stores/Store.ts). A store may
 * provide more: when it also provides a `KeyValueStore`, the CLI keeps
 * cumulative metrics in it.
 */
export type { StoreServices }

/** One `--store` choice. */
export interface StoreEntry {
  /** A few words for `--help`. */
  readonly description: string
  /** Builds the store; failures are reported by their reason (see exitCodes.ts). */
  readonly layer: (settings: StoreSettings) => Layer.Layer<StoreServices, unknown>
  /** The store with its resumable uploads; absent when the store cannot keep upload state. */
  readonly uploads?: (settings: StoreSettings) => Layer.Layer<StoreServices | Uploads.Uploads, unknown>
}

/** A layer whose module is imported only when the layer is built. */
export const lazy = <M, A = StoreServices>(
  load: () => Promise<M>,
  make: (module: M) => Layer.Layer<A, unknown>
): Layer.Layer<A, unknown> => Layer.unwrapEffect(Effect.map(Effect.promise(load), make))

/** Maps the CLI's layout word to the CasBlobStore layout. */
export const casLayout = (layout: StoreSettings["layout"]): CasBlobStore.Layout =>
  layout === "chunked" ? CasBlobStore.chunked() : CasBlobStore.monolithic

/** CasBlobStore over fresh in-memory ports. */
const memoryStore = (settings: StoreSettings) =>
  CasBlobStore.layer({ layout: casLayout(settings.layout) }).pipe(
    Layer.provideMerge(Layer.merge(MemoryLayers.metadata, MemoryObjectStore.layer)),
    Layer.provideMerge(Layer.merge(Metrics.layer, Events.layer))
  )

/** A store module of src/stores: its environment config, and its layers from a config. */
interface StoreModule<O> {
  readonly config: Config.Config<O>
  readonly layerConfig: (config: Config.Config<O>) => Layer.Layer<StoreServices, unknown>
  readonly layerWithUploadsConfig: (config: Config.Config<O>) => Layer.Layer<StoreServices | Uploads.Uploads, unknown>
}

/**
 * The registry entry of a store module, loaded on first use: its options
 * from the environment, then the CLI's settings applied by `apply`.
 */
const entry = <O>(
  description: string,
  load: () => Promise<StoreModule<O>>,
  apply: (options: O, settings: StoreSettings) => O
): StoreEntry => {
  const configured = (store: StoreModule<O>, settings: StoreSettings) =>
    Config.map(store.config, (options) => apply(options, settings))
  return {
    description,
    layer: (settings) => lazy(load, (store) => store.layerConfig(configured(store, settings))),
    uploads: (settings) => lazy(load, (store) => store.layerWithUploadsConfig(configured(store, settings)))
  }
}

/** The meta directory of the CLI's home, where the LevelDB metadata of local stores lives. */
const metaOf = (settings: StoreSettings) => path.join(settings.home, "meta")

const registry: Record<string, StoreEntry> = {
  embedded: entry(
    "local files under <home>/blobs, LevelDB metadata under <home>/meta",
    () => import("../stores/EmbeddedStore.js"),
    (options, settings) => ({ ...options, home: settings.home, layout: casLayout(settings.layout) })
  ),
  memory: {
    description: "in-process memory, gone when the command exits (for trying things out)",
    layer: (settings) => memoryStore(settings),
    uploads: (settings) => Uploads.layer().pipe(Layer.provideMerge(memoryStore(settings)))
  },
  s3: entry(
    "S3 or an S3-compatible service, configured by GRAVITON_S3_* (docs/backends/s3.md)",
    // Parts are native multipart parts; upload records and ranges live in a LevelDB sidecar under the home.
    () => import("../stores/S3Store.js"),
    (options, settings) => ({ ...options, home: settings.home, layout: casLayout(settings.layout) })
  ),
  pg: entry(
    "PostgreSQL, configured by GRAVITON_PG_* (docs/backends/postgres.md)",
    () => import("../stores/PgStore.js"),
    (options, settings) => ({ ...options, layout: casLayout(settings.layout) })
  ),
  "pg-s3": entry(
    "bytes in S3 (GRAVITON_S3_*), metadata in PostgreSQL (GRAVITON_PG_*)",
    () => import("../stores/PgS3Store.js"),
    (options, settings) => ({ ...options, layout: casLayout(settings.layout) })
  ),
  "level-s3": entry(
    "bytes in S3 (GRAVITON_S3_*), metadata in LevelDB under <home>/meta",
    () => import("../stores/LevelS3Store.js"),
    (options, settings) => ({ ...options, level: { ...options.level, path: metaOf(settings) }, layout: casLayout(settings.layout) })
  )
}

/** Registered store names, in registration order. */
export const names = (): ReadonlyArray<string> => Object.keys(registry)

/** The entry for `name`, if registered. */
export const get = (name: string): StoreEntry | undefined => registry[name]

/**
 * A second store by spec, `embedded:<dir>`, `memory`, `pg` or `s3` (the
 * registry's layer, with `home` = dir), built in the caller's scope. Its
 * BlobStore comes out as a plain value: the primary's layer provides the
 * same tags, so the two cannot share one context (replication targets).
 */
export const buildStore = (
  spec: string,
  settings: StoreSettings
): Effect.Effect<BlobStore["Type"], unknown, Scope.Scope> =>
  Effect.suspend(() => {
    const colon = spec.indexOf(":")
    const kind = colon < 0 ? spec : spec.slice(0, colon)
    const dir = colon < 0 ? undefined : spec.slice(colon + 1)
    const found = get(kind)
    if (found === undefined) {
      return Effect.fail(cliFail(ExitCode.Usage, `unknown store ${JSON.stringify(kind)} in ${JSON.stringify(spec)} (expected one of: ${names().join(", ")})`))
    }
    if (kind === "embedded" && (dir === undefined || dir.length === 0)) {
      return Effect.fail(cliFail(ExitCode.Usage, `an embedded store needs a directory: embedded:<dir>`))
    }
    if (kind !== "embedded" && dir !== undefined) {
      return Effect.fail(cliFail(ExitCode.Usage, `the ${kind} store takes no directory (${JSON.stringify(spec)})`))
    }
    const home = dir === undefined ? settings.home : path.resolve(dir)
    return Effect.map(Layer.build(found.layer({ ...settings, home })), (context) => Context.get(context, BlobStore))
  })
