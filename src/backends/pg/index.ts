/**
 * The PostgreSQL backend: MutableObjectStore, ImmutableObjectStore,
 * KeyValueStore, RangeTracker, ReplicaIndex and UnitOfWork from one
 * PgClient, plus migrations. See docs/backends/postgres.md.
 */
export * as PgErrors from "./PgErrors.js"
export * as PgKeyValueStore from "./PgKeyValueStore.js"
export * as PgLayers from "./PgLayers.js"
export * as PgMetrics from "./PgMetrics.js"
export * as PgMigrations from "./PgMigrations.js"
export * as PgObjectStore from "./PgObjectStore.js"
export * as PgRangeTracker from "./PgRangeTracker.js"
export * as PgReplicaIndex from "./PgReplicaIndex.js"
export * as PgUnitOfWork from "./PgUnitOfWork.js"
