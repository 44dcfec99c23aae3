/**
 * Every port of the LevelDB backend over one database (the original
 * `PgLayers.live` idea): the KeyValueStore, the KV-backed RangeTracker and
 * ReplicaIndex of the kit (under `ranges/` and `replicas/`, their own
 * sublevels), and the LevelDatabase service for compaction and statistics.
 *
 *   LevelLayers.live({ path: "./meta" })
 *
 * Graviton's own namespaces are always declared (KvKey.NAMESPACES); pass
 * `namespaces` only for keys of your own. `metadata` is the same ports
 * without the LevelDatabase, for a store whose bytes live elsewhere (S3
 * bytes, LevelDB metadata): LevelDB has no object store, so nothing routes
 * bytes here whatever the merge order.
 *
 * Metrics and events go to the MetricsRegistry and BackendEvents provided
 * to this layer, if any. A second process opening the same path fails with
 * MetadataError reason Unavailable naming the path.
 */
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { MetadataError } from "../../core/Errors.js"
import type { KeyValueStore } from "../../ports/KeyValueStore.js"
import type { RangeTracker } from "../../ports/RangeTracker.js"
import type { ReplicaIndex } from "../../ports/ReplicaIndex.js"
import * as KvRangeTracker from "../../kit/KvRangeTracker.js"
import * as KvReplicaIndex from "../../kit/KvReplicaIndex.js"
import * as LevelConfig from "./LevelConfig.js"
import * as LevelDatabase from "./LevelDatabase.js"
import * as LevelKeyValueStore from "./LevelKeyValueStore.js"

/** Options of the backend: those of its database. */
export type Options = LevelConfig.LevelOptions

/** The metadata ports: what `metadata` provides. */
export type MetadataPorts = KeyValueStore | RangeTracker | ReplicaIndex

/** Every service `live` provides. */
export type Services = MetadataPorts | LevelDatabase.LevelDatabase

/** Options from the environment: the GRAVITON_LEVEL_* variables (see LevelConfig.config). */
export const config: Config.Config<Options> = LevelConfig.config

/** Every port on the database at `options.path`, opened once and closed with the layer. */
export const live = (options: Options): Layer.Layer<Services, MetadataError> =>
  Layer.mergeAll(KvRangeTracker.layer, KvReplicaIndex.layer).pipe(
    Layer.provideMerge(LevelKeyValueStore.layer),
    Layer.provideMerge(LevelDatabase.layer(options))
  )

/** Like `live`, with options from `Config` (by default `config`). */
export const layerConfig = (
  options: Config.Config.Wrap<Options> = config
): Layer.Layer<Services, MetadataError | ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(options), live))

/** KeyValueStore, RangeTracker and ReplicaIndex on the database at `options.path` (no LevelDatabase). */
export const metadata = (options: Options): Layer.Layer<MetadataPorts, MetadataError> =>
  Layer.mergeAll(KvRangeTracker.layer, KvReplicaIndex.layer).pipe(
    Layer.provideMerge(LevelKeyValueStore.layer),
    Layer.provide(LevelDatabase.layer(options))
  )

/** Like `metadata`, with options from `Config` (by default `config`). */
export const metadataConfig = (
  options: Config.Config.Wrap<Options> = config
): Layer.Layer<MetadataPorts, MetadataError | ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(options), metadata))
