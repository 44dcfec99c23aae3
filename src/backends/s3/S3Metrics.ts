/**
 * What the S3 backend records through `MetricsRegistry`, in one place.
 *
 * Latency per operation, failures by reason and retries come from
 * `Instrument` (the shared `graviton_backend_*` series, tagged
 * `backend="s3"`, with `method` = the port method or the S3 call such as
 * `UploadPart`); the series below are the S3-specific ones.
 */
import * as MetricKeys from "../../kit/MetricKeys.js"

/** Content bytes received from S3 (get). Counter, tag backend. */
export const bytesIn = MetricKeys.bytesReadTotal
/** Content bytes sent to S3 (put bodies and parts, counted once per successful request). Counter, tag backend. */
export const bytesOut = MetricKeys.bytesWrittenTotal
/** Latency of every S3 call in seconds. Histogram, tags backend, port, method. */
export const latency = MetricKeys.backendLatencySeconds
/** Calls that failed for good, by reason (the failure class). Counter, tags backend, port, method, reason. */
export const failures = MetricKeys.backendFailuresTotal
/** Retries of transient failures. Counter, tags backend, port, method, reason. */
export const retries = MetricKeys.backendRetriesTotal

/** Multipart uploads started. Counter, tag backend. */
export const multipartUploads = "graviton_s3_multipart_uploads_total"
/** Parts uploaded (or copied) successfully. Counter, tags backend, kind (upload | copy). */
export const multipartParts = "graviton_s3_multipart_parts_total"
/** Multipart uploads aborted after a failure or an interruption. Counter, tags backend, outcome (success | failure). */
export const multipartAborts = "graviton_s3_multipart_aborts_total"
/** Size of each part uploaded, in bytes. Histogram, tag backend. */
export const partBytes = "graviton_s3_part_bytes"

/** Help text of the S3-specific series, in the shape of `MetricKeys.definitions`. */
export const definitions: ReadonlyArray<MetricKeys.MetricDefinition> = [
  {
    name: multipartAborts,
    kind: "counter",
    help: "Multipart uploads aborted after a failed or interrupted put, by outcome of the abort.",
    labels: ["backend", "outcome"]
  },
  {
    name: multipartParts,
    kind: "counter",
    help: "Multipart parts uploaded or copied successfully.",
    labels: ["backend", "kind"]
  },
  { name: multipartUploads, kind: "counter", help: "Multipart uploads started.", labels: ["backend"] },
  { name: partBytes, kind: "histogram", help: "Size of each multipart part uploaded, in bytes.", labels: ["backend"] }
]
