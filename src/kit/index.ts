/** What backends share: instrumentation, retries, metrics, events, and the KV-backed RangeTracker and ReplicaIndex. */
export * as Events from "./Events.js"
export * as Instrument from "./Instrument.js"
export * as KvRangeTracker from "./KvRangeTracker.js"
export * as KvReplicaIndex from "./KvReplicaIndex.js"
export * as MetricKeys from "./MetricKeys.js"
export * as Metrics from "./Metrics.js"
export * as Prometheus from "./Prometheus.js"
export * as Retry from "./Retry.js"
