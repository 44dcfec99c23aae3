/**
 * PostgreSQL-specific metrics, recorded through the MetricsRegistry port
 * (when one is in the context; without it every call is a no-op).
 *
 * Operation counts and latency histograms by port and method come from the
 * shared `Instrument` (graviton_backend_operations_total,
 * graviton_backend_latency_seconds, tagged backend="pg", port, method).
 * This module adds what only PostgreSQL knows:
 *
 * - `graviton_pg_failures_total{port, method, sqlstate_class, reason}`: every
 *   failed statement by SQLSTATE class ("23", "40", "08" ..., or "none" for
 *   client-side failures such as a refused connection);
 * - `graviton_pg_pool_connections{state}`: pool gauges, state = total | idle | waiting;
 * - graviton_bytes_read_total / graviton_bytes_written_total (backend="pg"):
 *   content bytes moved by the object store.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import { MetricsRegistry } from "../../ports/MetricsRegistry.js"
import * as MetricKeys from "../../kit/MetricKeys.js"
import { BACKEND, reasonOf, sqlState } from "./PgErrors.js"

/** Failed statements by SQLSTATE class. Counter: backend, port, method, sqlstate_class, reason. */
export const failuresTotal = "graviton_pg_failures_total"
/** Connections of the pool. Gauge: backend, state (total | idle | waiting). */
export const poolConnections = "graviton_pg_pool_connections"

/** Help texts of the metrics defined here (pass to `Metrics.layerWith({ help })` for Prometheus HELP lines). */
export const help: Readonly<Record<string, string>> = {
  [failuresTotal]: "PostgreSQL statements that failed, by SQLSTATE class and failure reason.",
  [poolConnections]: "Connections of the PostgreSQL pool: total, idle, and clients waiting for one."
}

/** Pool counters as `pg.Pool` exposes them. */
export interface PoolStats {
  readonly totalCount: number
  readonly idleCount: number
  readonly waitingCount: number
}

/** Records the PostgreSQL metrics of one backend instance. */
export interface PgMetrics {
  /** Counts a failed statement of `port.method` by the SQLSTATE class of `error`. */
  readonly failure: (port: string, method: string, error: unknown) => Effect.Effect<void>
  /** Adds content bytes read from the server. */
  readonly bytesRead: (bytes: number) => Effect.Effect<void>
  /** Adds content bytes written to the server. */
  readonly bytesWritten: (bytes: number) => Effect.Effect<void>
  /** Sets the pool gauges from a pool's counters. */
  readonly pool: (stats: PoolStats) => Effect.Effect<void>
}

/** The SQLSTATE class of a failure ("none" when the failure has no SQLSTATE). */
const sqlStateClass = (error: unknown): string => sqlState(error)?.slice(0, 2) ?? "none"

/** PgMetrics over an optional registry. */
export const fromRegistry = (registry: Option.Option<MetricsRegistry["Type"]>): PgMetrics => {
  if (Option.isNone(registry)) {
    return { failure: () => Effect.void, bytesRead: () => Effect.void, bytesWritten: () => Effect.void, pool: () => Effect.void }
  }
  const m = registry.value
  return {
    failure: (port, method, error) =>
      m.counter(failuresTotal, 1, {
        backend: BACKEND,
        port,
        method,
        sqlstate_class: sqlStateClass(error),
        reason: reasonOf(error)
      }),
    bytesRead: (bytes) => (bytes > 0 ? m.counter(MetricKeys.bytesReadTotal, bytes, { backend: BACKEND }) : Effect.void),
    bytesWritten: (bytes) =>
      bytes > 0 ? m.counter(MetricKeys.bytesWrittenTotal, bytes, { backend: BACKEND }) : Effect.void,
    pool: (stats) =>
      Effect.all([
        m.gauge(poolConnections, stats.totalCount, { backend: BACKEND, state: "total" }),
        m.gauge(poolConnections, stats.idleCount, { backend: BACKEND, state: "idle" }),
        m.gauge(poolConnections, stats.waitingCount, { backend: BACKEND, state: "waiting" })
      ], { discard: true })
  }
}

/** PgMetrics over the MetricsRegistry of the context, if any. */
export const make: Effect.Effect<PgMetrics> = Effect.map(Effect.serviceOption(MetricsRegistry), fromRegistry)

/**
 * Samples the pool gauges now and then every `interval` until the scope
 * closes (a daemon fiber; nothing runs without a registry).
 */
export const samplePool = (
  pool: PoolStats,
  interval: Duration.DurationInput = Duration.seconds(5)
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function*() {
    const registry = yield* Effect.serviceOption(MetricsRegistry)
    if (Option.isNone(registry)) return
    const metrics = fromRegistry(registry)
    const sample = Effect.suspend(() => metrics.pool(pool))
    yield* sample
    yield* Effect.forkScoped(Effect.repeat(sample, Schedule.spaced(interval)))
  })
