/**
 * Every port of the LevelDB backend over one database (the original
 * `PgLayers.live` idea): the KeyValueStore, the KV-backed RangeTracker and
 * ReplicaIndex of the runtime (under `ranges/` and `replicas/`, their own
 * sublevels by default), and the LevelDatabase service for compaction and
 * statistics.
 *
 *   LevelLayers.live({ path: "./meta", namespaces: ["blobs", "ranges", "replicas"] })
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

/** Every service `live` provides. */
export type Services = KeyValueStore | RangeTracker | ReplicaIndex | LevelDatabase.LevelDatabase

/** Every port on the database at `options.path`, opened once and closed with the layer. */
export const live = (options: LevelConfig.LevelOptions): Layer.Layer<Services, MetadataError> =>
  Layer.mergeAll(KvRangeTracker.layer, KvReplicaIndex.layer).pipe(
    Layer.provideMerge(LevelKeyValueStore.layerFromDatabase),
    Layer.provideMerge(LevelDatabase.layer(options))
  )

/** Like `live`, with options from `Config` (by default the GRAVITON_LEVEL_* variables). */
export const layerConfig = (
  options: Config.Config.Wrap<LevelConfig.LevelOptions> = LevelConfig.config
): Layer.Layer<Services, MetadataError | ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(options), live))
