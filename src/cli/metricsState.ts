/**
 * Cumulative metrics across CLI runs. Each `graviton` process records into
 * its own in-memory MetricsRegistry; at exit the CLI folds that snapshot
 * into one value in the store's KeyValueStore (with compareAndSet, so two
 * processes never lose each other's counts), and `graviton metrics` prints
 * the accumulated series. Stores without a KeyValueStore show only the
 * current process. Saving is best effort: it never fails a command.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { KeyValueStore } from "../ports/KeyValueStore.js"
import { MetricsRegistry, type MetricSample, type MetricTags } from "../ports/MetricsRegistry.js"
import * as MetricKeys from "../kit/MetricKeys.js"
import * as Prometheus from "../kit/Prometheus.js"

/** Where the accumulated series live (namespace `cli`). */
export const KEY = "cli/metrics"

const CAS_ATTEMPTS = 8

const seriesId = (s: { readonly _tag: string; readonly name: string; readonly tags: MetricTags }): string =>
  JSON.stringify([s._tag, s.name, Object.entries(s.tags).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))])

const sameBounds = (a: ReadonlyArray<readonly [number, number]>, b: ReadonlyArray<readonly [number, number]>) =>
  a.length === b.length && a.every(([bound], i) => bound === b[i]![0])

/** Adds `next` into `base`: counters and histograms sum, gauges take the newer value. */
export const merge = (base: ReadonlyArray<MetricSample>, next: ReadonlyArray<MetricSample>): Array<MetricSample> => {
  const out = new Map<string, MetricSample>(base.map((s) => [seriesId(s), s]))
  for (const s of next) {
    const id = seriesId(s)
    const prev = out.get(id)
    if (prev === undefined || s._tag === "Gauge") {
      out.set(id, s)
    } else if (s._tag === "Counter" && prev._tag === "Counter") {
      out.set(id, { ...s, value: prev.value + s.value })
    } else if (s._tag === "Histogram" && prev._tag === "Histogram") {
      out.set(
        id,
        sameBounds(prev.buckets, s.buckets)
          ? {
            ...s,
            buckets: s.buckets.map(([bound, n], i) => [bound, n + prev.buckets[i]![1]] as const),
            count: prev.count + s.count,
            sum: prev.sum + s.sum
          }
          // Bucket bounds changed between versions: the newer series replaces the old one.
          : s
      )
    }
  }
  return [...out.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : seriesId(a) < seriesId(b) ? -1 : 1))
}

/** The stored form: JSON, where the +Inf bucket bound (no JSON number) is null. */
export const encode = (samples: ReadonlyArray<MetricSample>): Uint8Array =>
  new TextEncoder().encode(JSON.stringify(samples, (_, v) => (v === Infinity ? null : v)))

const isSample = (u: unknown): u is MetricSample => {
  const s = u as MetricSample | null
  return typeof s === "object" && s !== null && typeof s.name === "string" && typeof s.tags === "object" &&
    (s._tag === "Counter" || s._tag === "Gauge" || s._tag === "Histogram")
}

/** Decodes a stored value; anything unreadable counts as no history. */
export const decode = (bytes: Uint8Array): Array<MetricSample> => {
  try {
    const parsed: unknown = JSON.parse(new TextDecoder().decode(bytes))
    if (!Array.isArray(parsed)) return []
    return parsed.filter(isSample).map((s) =>
      s._tag === "Histogram"
        ? { ...s, buckets: s.buckets.map(([bound, n]) => [bound === null ? Infinity : bound, n] as const) }
        : s
    )
  } catch {
    return []
  }
}

/** The accumulated series of earlier runs (empty without a KeyValueStore). */
export const load: Effect.Effect<Array<MetricSample>> = Effect.serviceOption(KeyValueStore).pipe(
  Effect.flatMap(Option.match({
    onNone: () => Effect.succeed([]),
    onSome: (kv) => kv.get(KEY).pipe(Effect.map(Option.match({ onNone: () => [], onSome: decode })))
  })),
  Effect.orElseSucceed(() => [])
)

/** Folds this process's snapshot into the stored series; best effort, never fails. */
export const save: Effect.Effect<void, never, MetricsRegistry> = Effect.gen(function*() {
  const kv = yield* Effect.serviceOption(KeyValueStore)
  if (Option.isNone(kv)) return
  const snapshot = yield* (yield* MetricsRegistry).snapshot
  if (snapshot.length === 0) return
  for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
    const current = yield* kv.value.get(KEY)
    const merged = merge(Option.match(current, { onNone: () => [], onSome: decode }), snapshot)
    if (yield* kv.value.compareAndSet(KEY, current, Option.some(encode(merged)))) return
  }
}).pipe(Effect.ignore)

/** Everything: earlier runs plus this process. */
export const current: Effect.Effect<Array<MetricSample>, never, MetricsRegistry> = Effect.gen(function*() {
  const stored = yield* load
  const snapshot = yield* (yield* MetricsRegistry).snapshot
  return merge(stored, snapshot)
})

/** Renders series in the Prometheus text exposition format 0.0.4, with Graviton's help texts. */
export const prometheus = (samples: ReadonlyArray<MetricSample>): string =>
  Prometheus.render(samples, (name) => MetricKeys.help(name) ?? extraHelp[name])

/** Help for the gauges the `metrics` command measures itself. */
const extraHelp: Record<string, string> = {
  graviton_stored_blobs: "Blobs stored, counted by listing the store when `graviton metrics` ran.",
  graviton_stored_bytes: "Total size of the blobs stored, counted by listing the store when `graviton metrics` ran."
}
