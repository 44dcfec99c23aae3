/** The LevelDB backend: KeyValueStore on classic-level with namespaces as sublevels, RangeTracker and ReplicaIndex over it (LevelLayers.live), compaction and metrics. */
export * as LevelConfig from "./LevelConfig.js"
export * as LevelDatabase from "./LevelDatabase.js"
export * as LevelErrors from "./errors.js"
export * as LevelKeyValueStore from "./LevelKeyValueStore.js"
export * as LevelLayers from "./LevelLayers.js"
export * as LevelMetrics from "./LevelMetrics.js"
