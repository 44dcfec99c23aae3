/**
 * The metric names Graviton records, with their kind, help text and labels,
 * in one place (like `ClusterMetrics.ts` in @effect/cluster). Backends pass
 * these names to `MetricsRegistry` / `Instrument`; the registry takes help
 * text and histogram boundaries from here when it renders Prometheus text.
 *
 * The first four keep the names of the original Graviton; counter names get
 * no automatic `_total` suffix, so what is written here is what is exported.
 */

/** How a metric aggregates its observations. */
export type MetricKind = "counter" | "gauge" | "histogram"

/** Everything known about one metric name. */
export interface MetricDefinition {
  readonly name: string
  readonly kind: MetricKind
  /** The `# HELP` text. */
  readonly help: string
  /** Labels the metric is recorded with (documentation; not enforced). */
  readonly labels: ReadonlyArray<string>
  /** Histogram upper bounds (+Inf is implied); absent = the registry's default for the name. */
  readonly boundaries?: ReadonlyArray<number>
}

/** Label names used across metrics. */
export const labels = {
  backend: "backend",
  port: "port",
  method: "method",
  outcome: "outcome",
  reason: "reason"
} as const

/** Values of the `outcome` label. */
export const outcome = { success: "success", failure: "failure" } as const
export type Outcome = typeof outcome[keyof typeof outcome]

/** Bytes of content ingested (stored or deduplicated) by a blob store. Counter. */
export const bytesIngested = "graviton_bytes_ingested"
/** Blobs (blocks) ingested by a blob store. Counter. */
export const blocksIngested = "graviton_blocks_ingested"
/** Wall time of a whole upload, from first byte to stored key, in seconds. Histogram. */
export const uploadDurationSeconds = "graviton_upload_duration_seconds"
/** Backend calls that failed for good, by reason. Counter: backend, port, method, reason. */
export const backendFailuresTotal = "graviton_backend_failures_total"
/** Backend calls by outcome. Counter: backend, port, method, outcome (success | failure). */
export const backendOperationsTotal = "graviton_backend_operations_total"
/** Latency of backend calls in seconds. Histogram: backend, port, method. */
export const backendLatencySeconds = "graviton_backend_latency_seconds"
/** Retries of transient failures. Counter: backend, port, method, reason. */
export const backendRetriesTotal = "graviton_backend_retries_total"
/** Content bytes read from a backend. Counter: backend. */
export const bytesReadTotal = "graviton_bytes_read_total"
/** Content bytes written to a backend. Counter: backend. */
export const bytesWrittenTotal = "graviton_bytes_written_total"
/** Puts whose content was already stored (deduplicated). Counter: backend. */
export const dedupHitsTotal = "graviton_dedup_hits_total"

// Shorter aliases, so that either spelling reads naturally at call sites.
/** Reads served by a replica because the primary copy failed, by target and outcome. Counter. */
export const fallbackReadsTotal = "graviton_fallback_reads_total"
/** Repairs of a primary copy, by outcome. Counter. */
export const repairsTotal = "graviton_repairs_total"
/** Copies of a blob to a replication target, by target and outcome. Counter. */
export const replicationsTotal = "graviton_replications_total"
/** Bytes landed in resumable uploads. Counter. */
export const uploadBytesReceivedTotal = "graviton_upload_bytes_received_total"
/** Resumable uploads removed before completing, by why (aborted, expired ...). Counter. */
export const uploadsAbortedTotal = "graviton_uploads_aborted_total"
/** Resumable uploads begun. Counter. */
export const uploadsBegunTotal = "graviton_uploads_begun_total"
/** Resumable uploads completed into a blob. Counter. */
export const uploadsCompletedTotal = "graviton_uploads_completed_total"

/** Alias of `uploadDurationSeconds`. */
export const uploadDuration = uploadDurationSeconds
/** Alias of `backendFailuresTotal`. */
export const backendFailures = backendFailuresTotal
/** Alias of `backendOperationsTotal`. */
export const backendOperations = backendOperationsTotal
/** Alias of `backendLatencySeconds`. */
export const backendLatency = backendLatencySeconds
/** Alias of `backendRetriesTotal`. */
export const backendRetries = backendRetriesTotal
/** Alias of `bytesReadTotal`. */
export const bytesRead = bytesReadTotal
/** Alias of `bytesWrittenTotal`. */
export const bytesWritten = bytesWrittenTotal
/** Alias of `dedupHitsTotal`. */
export const dedupHits = dedupHitsTotal

const { backend, method, outcome: outcomeLabel, port, reason } = labels

/** Every metric Graviton defines, in name order. */
export const definitions: ReadonlyArray<MetricDefinition> = [
  {
    name: backendFailuresTotal,
    kind: "counter",
    help: "Backend calls that failed for good (after any retries), by failure reason.",
    labels: [backend, port, method, reason]
  },
  {
    name: backendLatencySeconds,
    kind: "histogram",
    help: "Latency of backend calls in seconds, successful or failed.",
    labels: [backend, port, method]
  },
  {
    name: backendOperationsTotal,
    kind: "counter",
    help: "Backend calls that completed, by outcome (success or failure).",
    labels: [backend, port, method, outcomeLabel]
  },
  {
    name: backendRetriesTotal,
    kind: "counter",
    help: "Retries of backend calls that failed with a transient reason.",
    labels: [backend, port, method, reason]
  },
  {
    name: blocksIngested,
    kind: "counter",
    help: "Blobs ingested by a blob store, including deduplicated ones.",
    labels: [backend]
  },
  {
    name: bytesIngested,
    kind: "counter",
    help: "Bytes of content ingested by a blob store, including deduplicated content.",
    labels: [backend]
  },
  {
    name: bytesReadTotal,
    kind: "counter",
    help: "Bytes of content read from a backend.",
    labels: [backend]
  },
  {
    name: bytesWrittenTotal,
    kind: "counter",
    help: "Bytes of content written to a backend.",
    labels: [backend]
  },
  {
    name: dedupHitsTotal,
    kind: "counter",
    help: "Puts whose content was already stored, so nothing new was written.",
    labels: [backend]
  },
  {
    name: fallbackReadsTotal,
    kind: "counter",
    help: "Reads served by a replica because the primary copy was missing, unavailable or corrupted.",
    labels: ["target", outcomeLabel]
  },
  {
    name: repairsTotal,
    kind: "counter",
    help: "Repairs of a primary copy from a replica, by outcome.",
    labels: [outcomeLabel]
  },
  {
    name: replicationsTotal,
    kind: "counter",
    help: "Verified copies of a blob to a replication target, by target and outcome.",
    labels: ["target", outcomeLabel]
  },
  {
    name: uploadBytesReceivedTotal,
    kind: "counter",
    help: "Bytes landed in resumable uploads (each segment counted once it is durable).",
    labels: [backend]
  },
  {
    name: uploadDurationSeconds,
    kind: "histogram",
    help: "Duration of whole uploads in seconds, from the first byte to the stored key.",
    labels: [backend]
  },
  {
    name: uploadsAbortedTotal,
    kind: "counter",
    help: "Resumable uploads removed with their staged bytes before completing, by why.",
    labels: [backend, "why"]
  },
  {
    name: uploadsBegunTotal,
    kind: "counter",
    help: "Resumable uploads begun.",
    labels: [backend]
  },
  {
    name: uploadsCompletedTotal,
    kind: "counter",
    help: "Resumable uploads completed into a blob.",
    labels: [backend]
  }
]

/** Definitions by metric name. */
export const byName: ReadonlyMap<string, MetricDefinition> = new Map(definitions.map((d) => [d.name, d]))

/** The definition of `name`, if Graviton defines it. */
export const describe = (name: string): MetricDefinition | undefined => byName.get(name)

/** The help text of `name`, if Graviton defines it. */
export const help = (name: string): string | undefined => byName.get(name)?.help
