/**
 * The MetricsRegistry port on Effect's own metrics: every value recorded
 * here lands in Effect's global metric registry under exactly the name and
 * tags it was recorded with (so `Metric.snapshot`, `@effect/opentelemetry`'s
 * metric exporter and from it Prometheus or OTLP see Graviton's series as
 * they are documented), while `snapshot` / `prometheus` report only what
 * this registry recorded.
 *
 * Several registries in one process. Effect's registry is global, keyed by
 * name + type + tags: two registries recording
 * `graviton_bytes_ingested{backend="fs"}` add to one global series, which is
 * what an exporter should see (one process, one set of series). Each
 * registry also keeps its own state per series, a standalone Effect
 * `MetricHook` updated in the same synchronous call as the global one, so
 * its `snapshot` (what `graviton metrics` and the gateway print) counts its
 * own calls only. An app that runs several stores and wants their series
 * apart in the exporter too chooses a tag: `Options.tags` (e.g.
 * `{ store: "archive" }`) goes on every series of that registry, or
 * `Effect.tagMetrics` around the calls. (The first round added a hidden
 * `graviton_registry=<uuid>` label instead, which every exporter then saw.)
 */
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as MetricHook from "effect/MetricHook"
import * as MetricKey from "effect/MetricKey"
import type * as MetricKeyType from "effect/MetricKeyType"
import * as MetricLabel from "effect/MetricLabel"
import * as MetricState from "effect/MetricState"
import { type MetricSample, MetricsRegistry, type MetricTags } from "../ports/MetricsRegistry.js"
import * as MetricKeys from "./MetricKeys.js"
import * as Prometheus from "./Prometheus.js"

/**
 * Default histogram bounds for durations in seconds: 0.5 ms to 60 s in a
 * 1-2.5-5 progression (roughly exponential, and the bounds print cleanly).
 */
export const latencyBoundaries: ReadonlyArray<number> = [
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60
]

/** Default histogram bounds for sizes (names ending in `_bytes`): 1 KiB to 4 GiB, factor 4. */
export const sizeBoundaries: ReadonlyArray<number> = Array.from({ length: 12 }, (_, i) => 1024 * 4 ** i)

/** Options of a registry. */
export interface Options {
  /** Histogram upper bounds per metric name (+Inf is added); overrides MetricKeys and the defaults. */
  readonly boundaries?: Readonly<Record<string, ReadonlyArray<number>>>
  /** Help text per metric name; overrides MetricKeys. */
  readonly help?: Readonly<Record<string, string>>
  /**
   * Tags on every series this registry records, in its snapshot and in Effect's registry
   * (e.g. `{ store: "archive" }`); a call's own tags win over them.
   */
  readonly tags?: MetricTags
}

/** The histogram bounds a registry with `options` uses for `name`. */
export const boundariesFor = (name: string, options: Options = {}): ReadonlyArray<number> =>
  options.boundaries?.[name] ??
    MetricKeys.describe(name)?.boundaries ??
    (name.endsWith("_bytes") ? sizeBoundaries : latencyBoundaries)

type Kind = MetricKeys.MetricKind

interface Series {
  readonly name: string
  readonly kind: Kind
  /** The series' tags, keys sorted. */
  readonly tags: ReadonlyArray<readonly [string, string]>
  /** The series in Effect's global registry (what exporters see). */
  readonly metric: Metric.Metric<MetricKeyType.MetricKeyType<number, unknown>, number, unknown>
  /** This registry's own state of the series (what `snapshot` reports). */
  readonly own: MetricHook.MetricHook<number, MetricState.MetricState.Untyped>
}

/** Updates both copies of a series: one synchronous call, so they cannot drift. */
const update = (series: Series, value: number): void => {
  series.metric.unsafeUpdate(value, [])
  series.own.update(value)
}

const compareStrings = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

const compareTags = (a: Series["tags"], b: Series["tags"]): number => {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const c = compareStrings(a[i]![0], b[i]![0]) || compareStrings(a[i]![1], b[i]![1])
    if (c !== 0) return c
  }
  return a.length - b.length
}

/** Tags as key-sorted pairs: the call's tags, then fiber metric labels, then the registry's own tags. */
const mergeTags = (
  fiberLabels: ReadonlyArray<MetricLabel.MetricLabel>,
  tags: MetricTags | undefined,
  registryTags: MetricTags | undefined
): Series["tags"] => {
  const pairs = new Map<string, string>()
  if (tags !== undefined) for (const key of Object.keys(tags)) pairs.set(key, String(tags[key]))
  for (const label of fiberLabels) if (!pairs.has(label.key)) pairs.set(label.key, label.value)
  if (registryTags !== undefined) {
    for (const key of Object.keys(registryTags)) if (!pairs.has(key)) pairs.set(key, String(registryTags[key]))
  }
  return Array.from(pairs).sort((a, b) => compareStrings(a[0], b[0]))
}

/** The identity of a series within a registry (control characters cannot clash with readable names). */
const seriesKey = (name: string, tags: Series["tags"]): string => {
  let key = name
  for (const [k, v] of tags) key += `\u0000${k}\u0001${v}`
  return key
}

const toSample = (series: Series): MetricSample => {
  const state = series.own.get()
  const tags: MetricTags = Object.fromEntries(series.tags)
  if (MetricState.isHistogramState(state)) {
    return { _tag: "Histogram", name: series.name, tags, buckets: state.buckets, count: state.count, sum: state.sum }
  }
  if (MetricState.isGaugeState(state)) {
    return { _tag: "Gauge", name: series.name, tags, value: Number(state.value) }
  }
  return {
    _tag: "Counter",
    name: series.name,
    tags,
    value: MetricState.isCounterState(state) ? Number(state.count) : 0
  }
}

/** Builds a registry synchronously (see `makeWith`). */
export const unsafeMake = (options: Options = {}): MetricsRegistry["Type"] => {
  const kinds = new Map<string, Kind>()
  const series = new Map<string, Series>()
  const helpOf = (name: string): string | undefined => options.help?.[name] ?? MetricKeys.help(name)

  const createSeries = (name: string, kind: Kind, tags: Series["tags"]): Series => {
    const description = helpOf(name)
    const base: MetricKey.MetricKey<MetricKeyType.MetricKeyType<number, unknown>> = kind === "counter"
      // incremental: a counter only goes up; negative (and NaN) increments are ignored.
      ? MetricKey.counter(name, { incremental: true, description })
      : kind === "gauge"
      ? MetricKey.gauge(name, { description })
      : MetricKey.histogram(name, MetricBoundaries.fromIterable(boundariesFor(name, options)), description)
    const key = MetricKey.taggedWithLabels(base, tags.map(([k, v]) => MetricLabel.make(k, v)))
    // The same key `Metric.taggedWithLabels(Metric.counter(name), labels)` builds, but made
    // into a metric directly so that Effect resolves its hook once instead of on every update.
    const metric = Metric.fromMetricKey(key) as unknown as Series["metric"]
    // A hook of the same key, standalone (not in Effect's registry): this registry's own copy.
    const own = (kind === "counter"
      ? MetricHook.counter(key as MetricKey.MetricKey.Counter<number>)
      : kind === "gauge"
      ? MetricHook.gauge(key as MetricKey.MetricKey.Gauge<number>, 0)
      : MetricHook.histogram(key as MetricKey.MetricKey.Histogram)) as unknown as Series["own"]
    return { name, kind, tags, metric, own }
  }

  /** Records synchronously; undefined when `name` is already used with another kind. */
  const unsafeRecord = (kind: Kind, name: string, value: number, tags: Series["tags"]): Series | undefined => {
    const known = kinds.get(name)
    if (known !== undefined && known !== kind) return undefined
    if (known === undefined) kinds.set(name, kind)
    const key = seriesKey(name, tags)
    let s = series.get(key)
    if (s === undefined) {
      s = createSeries(name, kind, tags)
      series.set(key, s)
    }
    update(s, value)
    return s
  }

  // Hot path: backends pass the same (frozen in practice) tags object for a
  // given operation, so the series is found by object identity without
  // sorting or joining tags on every call. Only used when the fiber carries no
  // extra metric labels, which would change the series.
  const byTagsObject = new WeakMap<MetricTags, Map<string, Series>>()

  const warned = new Set<string>()
  // Records within a step of `fiber`: labels set with `Effect.tagMetrics` apply
  // here as to any Effect metric; explicit tags win. Effect.void unless a warning is due.
  const recordOn = (
    fiber: Fiber.RuntimeFiber<unknown, unknown>,
    kind: Kind,
    name: string,
    value: number,
    tags: MetricTags | undefined
  ): Effect.Effect<void> => {
    const labels = fiber.getFiberRef(FiberRef.currentMetricLabels)
    const cacheable = labels.length === 0 && tags !== undefined
    if (cacheable) {
      const cached = byTagsObject.get(tags)?.get(name)
      if (cached !== undefined && cached.kind === kind) {
        update(cached, value)
        return Effect.void
      }
    }
    const recorded = unsafeRecord(kind, name, value, mergeTags(labels, tags, options.tags))
    if (recorded !== undefined) {
      if (cacheable) {
        let perName = byTagsObject.get(tags)
        if (perName === undefined) byTagsObject.set(tags, perName = new Map())
        perName.set(name, recorded)
      }
      return Effect.void
    }
    // Recording never fails: a kind clash is a programming error, reported once per name.
    if (warned.has(`${name}/${kind}`)) return Effect.void
    warned.add(`${name}/${kind}`)
    return Effect.logWarning(
      `metric ${name} is a ${kinds.get(name)}; a ${kind} observation for it was ignored`
    )
  }
  // One fiber-runtime step (this runs on every backend call).
  const record = (kind: Kind, name: string, value: number, tags: MetricTags | undefined): Effect.Effect<void> =>
    Effect.withFiberRuntime<void>((fiber) => recordOn(fiber, kind, name, value, tags))

  const snapshot: Effect.Effect<ReadonlyArray<MetricSample>> = Effect.sync(() =>
    Array.from(series.values())
      .sort((a, b) => compareStrings(a.name, b.name) || compareTags(a.tags, b.tags))
      .map(toSample)
  )

  const registry = MetricsRegistry.of({
    counter: (name, value = 1, tags) => record("counter", name, value, tags),
    gauge: (name, value, tags) => record("gauge", name, value, tags),
    histogram: (name, value, tags) => record("histogram", name, value, tags),
    snapshot,
    prometheus: Effect.map(snapshot, (samples) => Prometheus.render(samples, helpOf))
  })
  directs.set(registry, { record: recordOn })
  return registry
}

/**
 * Synchronous recording into a registry of this module, for a caller that
 * records several observations per call (a latency and a count) and wants
 * to do it in a step it already runs on the fiber, instead of one fiber step
 * per observation: on a LevelDB get, which takes microseconds, those steps
 * were a third of the call. `record` returns `Effect.void` (the same object)
 * unless something must still be run: a warning about a kind clash.
 */
export interface Direct {
  readonly record: (
    fiber: Fiber.RuntimeFiber<unknown, unknown>,
    kind: Kind,
    name: string,
    value: number,
    tags: MetricTags | undefined
  ) => Effect.Effect<void>
}

const directs = new WeakMap<MetricsRegistry["Type"], Direct>()

/** The synchronous side of `registry` when it is one of this module's; undefined for any other implementation. */
export const direct = (registry: MetricsRegistry["Type"]): Direct | undefined => directs.get(registry)

/** A fresh registry with custom histogram bounds or help text. */
export const makeWith = (options: Options = {}): Effect.Effect<MetricsRegistry["Type"]> =>
  Effect.sync(() => unsafeMake(options))

/** A fresh registry (each run of this effect gives an independent one). */
export const make: Effect.Effect<MetricsRegistry["Type"]> = makeWith()

/** Provides a fresh MetricsRegistry. */
export const layer: Layer.Layer<MetricsRegistry> = Layer.effect(MetricsRegistry, make)

/** Provides a fresh MetricsRegistry with custom histogram bounds or help text. */
export const layerWith = (options: Options): Layer.Layer<MetricsRegistry> =>
  Layer.effect(MetricsRegistry, makeWith(options))
