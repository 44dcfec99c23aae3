import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"

/** Label set attached to a metric sample, e.g. `{ backend: "pg", method: "put" }`. */
export type MetricTags = Readonly<Record<string, string>>

/** One series in a snapshot. */
export type MetricSample =
  | { readonly _tag: "Counter"; readonly name: string; readonly tags: MetricTags; readonly value: number }
  | { readonly _tag: "Gauge"; readonly name: string; readonly tags: MetricTags; readonly value: number }
  | {
    readonly _tag: "Histogram"
    readonly name: string
    readonly tags: MetricTags
    /** Cumulative counts per upper bound, ascending (the last bound is +Infinity). */
    readonly buckets: ReadonlyArray<readonly [number, number]>
    readonly count: number
    readonly sum: number
  }

/** Where every backend and the runtime record their metrics. Recording never fails. */
export class MetricsRegistry extends Context.Tag("graviton/MetricsRegistry")<MetricsRegistry, {
  /** Adds `value` (default 1) to a monotonically increasing counter. */
  readonly counter: (name: string, value?: number, tags?: MetricTags) => Effect.Effect<void>
  /** Sets a gauge to `value`. */
  readonly gauge: (name: string, value: number, tags?: MetricTags) => Effect.Effect<void>
  /** Records one observation in a histogram (seconds for durations, bytes for sizes). */
  readonly histogram: (name: string, value: number, tags?: MetricTags) => Effect.Effect<void>
  /** Every series recorded through this registry, sorted by name then tags. */
  readonly snapshot: Effect.Effect<ReadonlyArray<MetricSample>>
  /** The snapshot in Prometheus text exposition format (version 0.0.4). */
  readonly prometheus: Effect.Effect<string>
}>() {}
