/**
 * Metrics of the LevelDB backend, on top of the generic per-call ones that
 * `Instrument` records (`graviton_backend_*{backend="level"}`): operation
 * counts and latency by operation and namespace (sublevel), compactions,
 * and gauges read from LevelDB's own properties. Everything goes to the
 * MetricsRegistry in the context, if there is one; without one nothing is
 * recorded and nothing is paid.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as Metrics from "../../kit/Metrics.js"
import { MetricsRegistry, type MetricTags } from "../../ports/MetricsRegistry.js"
import { BACKEND } from "./errors.js"

/** LevelDB operations by namespace and outcome. Counter: backend, op, namespace, outcome. */
export const operationsTotal = "graviton_level_operations_total"
/** Latency of LevelDB operations in seconds. Histogram: backend, op, namespace. */
export const operationDurationSeconds = "graviton_level_operation_duration_seconds"
/** Compactions run through `compact`. Counter: backend, namespace ("*" = whole database). */
export const compactionsTotal = "graviton_level_compactions_total"
/** Duration of compactions in seconds. Histogram: backend, namespace. */
export const compactionDurationSeconds = "graviton_level_compaction_duration_seconds"
/** `approximateSize` of the compacted range just before the last compaction. Gauge: backend, namespace. */
export const compactionSizeBeforeBytes = "graviton_level_compaction_size_before_bytes"
/** `approximateSize` of the compacted range just after the last compaction. Gauge: backend, namespace. */
export const compactionSizeAfterBytes = "graviton_level_compaction_size_after_bytes"
/** `approximateSize` of each namespace's sublevel (table files only, not the memtable). Gauge: backend, namespace. */
export const approximateSizeBytes = "graviton_level_approximate_size_bytes"
/** Table file bytes of the whole database. Gauge: backend. */
export const totalSizeBytes = "graviton_level_total_size_bytes"
/** `leveldb.approximate-memory-usage`: memtables and block cache. Gauge: backend. */
export const memoryUsageBytes = "graviton_level_memory_usage_bytes"
/** `leveldb.num-files-at-level<N>`. Gauge: backend, level. */
export const filesAtLevel = "graviton_level_files"

/** Label value of a commit or listing that spans several namespaces. */
export const MIXED = "*"

/** Help text of every metric above, for `Metrics.layerWith({ help })`. */
export const help: Readonly<Record<string, string>> = {
  [operationsTotal]: "LevelDB operations by operation, namespace (sublevel) and outcome.",
  [operationDurationSeconds]: "Latency of LevelDB operations in seconds, by operation and namespace.",
  [compactionsTotal]: "LevelDB compactions run, by namespace (* = whole database).",
  [compactionDurationSeconds]: "Duration of LevelDB compactions in seconds, by namespace.",
  [compactionSizeBeforeBytes]: "Approximate table bytes of the compacted range before the last compaction.",
  [compactionSizeAfterBytes]: "Approximate table bytes of the compacted range after the last compaction.",
  [approximateSizeBytes]: "Approximate table bytes of each namespace's sublevel.",
  [totalSizeBytes]: "Approximate table bytes of the whole LevelDB database.",
  [memoryUsageBytes]: "LevelDB's approximate memory usage (memtables, block cache).",
  [filesAtLevel]: "LevelDB table files per level."
}

/**
 * Histogram bounds suited to an embedded store, for `Metrics.layerWith({
 * boundaries })`: operations take microseconds, below the registry's
 * default first bound of 0.5 ms.
 */
export const boundaries: Readonly<Record<string, ReadonlyArray<number>>> = {
  [operationDurationSeconds]: [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1],
  [compactionDurationSeconds]: [0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300]
}

/** Records this backend's metrics into an optional registry. */
export interface Recorder {
  /** False without a MetricsRegistry: callers may skip their own bookkeeping. */
  readonly enabled: boolean
  /**
   * Times `self` and counts it by operation, namespace and outcome (interruption is not counted);
   * `onFailure` runs too when it fails (the caller's own failure accounting, in the same step).
   */
  readonly observe: (
    op: string,
    namespace: string,
    onFailure?: (cause: Cause.Cause<unknown>) => Effect.Effect<void>
  ) => <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** Like `observe` for a stream, from its start to its end. */
  readonly observeStream: (
    op: string,
    namespace: string
  ) => <A, E, R>(self: Stream.Stream<A, E, R>) => Stream.Stream<A, E, R>
  readonly counter: (name: string, value: number, tags: Record<string, string>) => Effect.Effect<void>
  readonly gauge: (name: string, value: number, tags: Record<string, string>) => Effect.Effect<void>
  readonly histogram: (name: string, value: number, tags: Record<string, string>) => Effect.Effect<void>
}

/** A recorder over the given registry (or none). */
export const fromRegistry = (registry: Option.Option<MetricsRegistry["Type"]>): Recorder => {
  if (Option.isNone(registry)) {
    return {
      enabled: false,
      observe: () => (self) => self,
      observeStream: () => (self) => self,
      counter: () => Effect.void,
      gauge: () => Effect.void,
      histogram: () => Effect.void
    }
  }
  const metrics = registry.value
  // Tags objects reused per (op, namespace, outcome): the registry finds their series by identity.
  const tagCache = new Map<string, MetricTags>()
  const tagsOf = (op: string, namespace: string, outcome?: "success" | "failure"): MetricTags => {
    const id = `${op}\u0000${namespace}\u0000${outcome ?? ""}`
    let tags = tagCache.get(id)
    if (tags === undefined) {
      tags = outcome === undefined ? { backend: BACKEND, op, namespace } : { backend: BACKEND, op, namespace, outcome }
      tagCache.set(id, tags)
    }
    return tags
  }
  const record = (op: string, namespace: string, start: bigint, exit: Exit.Exit<unknown, unknown>) => {
    if (Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)) return Effect.void
    const outcome = Exit.isSuccess(exit) ? "success" : "failure"
    return Effect.flatMap(Clock.currentTimeNanos, (end) =>
      Effect.zipRight(
        metrics.histogram(operationDurationSeconds, Number(end - start) / 1e9, tagsOf(op, namespace)),
        metrics.counter(operationsTotal, 1, tagsOf(op, namespace, outcome))
      ))
  }
  const direct = Metrics.direct(metrics)
  const observe = (op: string, namespace: string, onFailure?: (cause: Cause.Cause<unknown>) => Effect.Effect<void>) =>
  <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => {
    if (direct === undefined) {
      const observed = Effect.flatMap(Clock.currentTimeNanos, (start) => Effect.onExit(self, (exit) => record(op, namespace, start, exit)))
      return onFailure === undefined
        ? observed
        : Effect.onError(observed, (cause) => (Cause.isInterruptedOnly(cause) ? Effect.void : onFailure(cause)))
    }
    // Our own registry: the clock read and both observations are synchronous, in the fiber steps the
    // call runs anyway, instead of five or six steps more: an operation here takes a few
    // microseconds. (No closure per call is a named one: under esbuild's keepNames, as tsx runs the
    // tests and benchmarks, each would cost a defineProperty.)
    return Effect.withFiberRuntime<A, E, R>((fiber) => {
      const clock = Context.get(fiber.currentDefaultServices, Clock.Clock)
      const start = clock.unsafeCurrentTimeNanos()
      return Effect.catchAllCause(
        Effect.flatMap(self, (a) => {
          const pending = recordNow(fiber, clock, start, op, namespace, "success")
          return pending === Effect.void ? Effect.succeed(a) : Effect.as(pending, a)
        }),
        (cause) => {
          if (Cause.isInterruptedOnly(cause)) return Effect.failCause(cause)
          const pending = recordNow(fiber, clock, start, op, namespace, "failure")
          const more = onFailure === undefined ? pending : Effect.zipRight(pending, onFailure(cause))
          return Effect.zipRight(more, Effect.failCause(cause))
        }
      )
    })
  }
  /** Both observations of one finished call, recorded now (Effect.void unless a warning is due). */
  function recordNow(
    fiber: Fiber.RuntimeFiber<unknown, unknown>,
    clock: Clock.Clock,
    start: bigint,
    op: string,
    namespace: string,
    outcome: "success" | "failure"
  ): Effect.Effect<void> {
    const seconds = Number(clock.unsafeCurrentTimeNanos() - start) / 1e9
    const a = direct!.record(fiber, "histogram", operationDurationSeconds, seconds, tagsOf(op, namespace))
    const b = direct!.record(fiber, "counter", operationsTotal, 1, tagsOf(op, namespace, outcome))
    return a === Effect.void ? b : Effect.zipRight(a, b)
  }
  const observeStream = (op: string, namespace: string) => <A, E, R>(self: Stream.Stream<A, E, R>) =>
    Stream.unwrap(
      Effect.map(Clock.currentTimeNanos, (start) => Stream.ensuringWith(self, (exit) => record(op, namespace, start, exit)))
    )
  return {
    enabled: true,
    observe,
    observeStream,
    counter: (name, value, tags) => metrics.counter(name, value, { ...tags, backend: BACKEND }),
    gauge: (name, value, tags) => metrics.gauge(name, value, { ...tags, backend: BACKEND }),
    histogram: (name, value, tags) => metrics.histogram(name, value, { ...tags, backend: BACKEND })
  }
}

/** The recorder for the MetricsRegistry in the context, if any. */
export const recorder: Effect.Effect<Recorder> = Effect.map(Effect.serviceOption(MetricsRegistry), fromRegistry)
