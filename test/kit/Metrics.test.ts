import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as MetricState from "effect/MetricState"
import { type MetricSample, MetricsRegistry } from "../../src/ports/MetricsRegistry.js"
import * as MetricKeys from "../../src/kit/MetricKeys.js"
import * as Metrics from "../../src/kit/Metrics.js"
import * as Prometheus from "../../src/kit/Prometheus.js"

const find = (samples: ReadonlyArray<MetricSample>, name: string, tags: Record<string, string> = {}) =>
  samples.find((s) => s.name === name && JSON.stringify(s.tags) === JSON.stringify(tags))

describe("Metrics", () => {
  it.effect("counters add (default 1), ignore negative increments, and keep tags per series", () =>
    Effect.gen(function*() {
      const m = yield* Metrics.make
      yield* m.counter("c_total", 2, { backend: "fs" })
      yield* m.counter("c_total", undefined, { backend: "fs" })
      yield* m.counter("c_total", -5, { backend: "fs" })
      yield* m.counter("c_total", 10, { backend: "pg" })
      yield* m.counter("c_total")
      const snap = yield* m.snapshot
      expect(snap).toEqual([
        { _tag: "Counter", name: "c_total", tags: {}, value: 1 },
        { _tag: "Counter", name: "c_total", tags: { backend: "fs" }, value: 3 },
        { _tag: "Counter", name: "c_total", tags: { backend: "pg" }, value: 10 }
      ])
    }))

  it.effect("gauges keep the last value; tag order does not make a new series", () =>
    Effect.gen(function*() {
      const m = yield* Metrics.make
      yield* m.gauge("g", 5, { a: "1", b: "2" })
      yield* m.gauge("g", 3, { b: "2", a: "1" })
      expect(yield* m.snapshot).toEqual([{ _tag: "Gauge", name: "g", tags: { a: "1", b: "2" }, value: 3 }])
    }))

  it.effect("histograms use latency bounds by default, cumulative buckets ending in +Infinity", () =>
    Effect.gen(function*() {
      const m = yield* Metrics.make
      for (const v of [0.0001, 0.003, 0.003, 7, 100]) yield* m.histogram("lat_seconds", v, { method: "get" })
      const h = find(yield* m.snapshot, "lat_seconds", { method: "get" })
      if (h?._tag !== "Histogram") throw new Error("expected a histogram")
      expect(h.buckets.map(([b]) => b)).toEqual([...Metrics.latencyBoundaries, Infinity])
      const at = (bound: number) => h.buckets.find(([b]) => b === bound)![1]
      expect(at(0.0005)).toBe(1)
      expect(at(0.0025)).toBe(1)
      expect(at(0.005)).toBe(3)
      expect(at(5)).toBe(3)
      expect(at(10)).toBe(4)
      expect(at(60)).toBe(4)
      expect(at(Infinity)).toBe(5)
      expect(h.count).toBe(5)
      expect(h.sum).toBeCloseTo(107.0061, 10)
    }))

  it.effect("names ending in _bytes get size bounds (1 KiB .. 4 GiB); custom bounds per name", () =>
    Effect.gen(function*() {
      const m = yield* Metrics.makeWith({ boundaries: { custom: [1, 2, 3] } })
      yield* m.histogram("object_size_bytes", 5000)
      yield* m.histogram("custom", 2)
      const snap = yield* m.snapshot
      const size = find(snap, "object_size_bytes")
      const custom = find(snap, "custom")
      if (size?._tag !== "Histogram" || custom?._tag !== "Histogram") throw new Error("expected histograms")
      expect(size.buckets[0]).toEqual([1024, 0])
      expect(size.buckets[1]).toEqual([4096, 0])
      expect(size.buckets[2]).toEqual([16384, 1])
      expect(size.buckets[size.buckets.length - 2]).toEqual([4 * 1024 ** 3, 1])
      expect(custom.buckets).toEqual([[1, 0], [2, 1], [3, 1], [Infinity, 1]])
    }))

  it.effect("snapshot is sorted by name, then by tags", () =>
    Effect.gen(function*() {
      const m = yield* Metrics.make
      yield* m.counter("b", 1, { x: "2" })
      yield* m.gauge("a", 1)
      yield* m.counter("b", 1, { x: "1" })
      yield* m.counter("b", 1, { w: "9" })
      yield* m.counter("b", 1)
      const snap = yield* m.snapshot
      expect(snap.map((s) => [s.name, s.tags])).toEqual([
        ["a", {}],
        ["b", {}],
        ["b", { w: "9" }],
        ["b", { x: "1" }],
        ["b", { x: "2" }]
      ])
    }))

  it.effect("two registries in one process do not see each other's values", () =>
    Effect.gen(function*() {
      const one = yield* Metrics.make
      const two = yield* Metrics.make
      yield* one.counter(MetricKeys.bytesIngested, 100, { backend: "memory" })
      yield* two.counter(MetricKeys.bytesIngested, 7, { backend: "memory" })
      yield* one.histogram("h", 1)
      expect(yield* one.snapshot).toEqual([
        { _tag: "Counter", name: MetricKeys.bytesIngested, tags: { backend: "memory" }, value: 100 },
        expect.objectContaining({ _tag: "Histogram", name: "h", count: 1 })
      ])
      expect(yield* two.snapshot).toEqual([
        { _tag: "Counter", name: MetricKeys.bytesIngested, tags: { backend: "memory" }, value: 7 }
      ])
    }))

  it.effect("values live in Effect's metric system too, under exactly their own tags", () =>
    Effect.gen(function*() {
      const m = yield* Metrics.make
      const name = `effect_visible_${Math.random().toString(36).slice(2)}`
      yield* m.counter(name, 4, { backend: "fs" })
      const pairs = (yield* Metric.snapshot).filter((p) => p.metricKey.name === name)
      expect(pairs).toHaveLength(1)
      const labels = Object.fromEntries(pairs[0]!.metricKey.tags.map((l) => [l.key, l.value]))
      expect(labels).toEqual({ backend: "fs" })
      const state = pairs[0]!.metricState
      expect(MetricState.isCounterState(state) && state.count).toBe(4)
    }))

  it.effect("two registries add to one series in Effect's registry; registry tags keep apps' stores apart", () =>
    Effect.gen(function*() {
      const name = `effect_shared_${Math.random().toString(36).slice(2)}`
      const one = yield* Metrics.make
      const two = yield* Metrics.make
      const archive = yield* Metrics.makeWith({ tags: { store: "archive" } })
      yield* one.counter(name, 1, { backend: "fs" })
      yield* two.counter(name, 2, { backend: "fs" })
      yield* archive.counter(name, 5, { backend: "fs" })
      const global = (yield* Metric.snapshot)
        .filter((p) => p.metricKey.name === name)
        .map((p) => [
          Object.fromEntries(p.metricKey.tags.map((l) => [l.key, l.value])),
          MetricState.isCounterState(p.metricState) ? p.metricState.count : undefined
        ])
        .sort((a, b) => Object.keys(a[0]!).length - Object.keys(b[0]!).length)
      expect(global).toEqual([[{ backend: "fs" }, 3], [{ backend: "fs", store: "archive" }, 5]])
      expect(yield* one.snapshot).toEqual([{ _tag: "Counter", name, tags: { backend: "fs" }, value: 1 }])
      expect(yield* archive.snapshot).toEqual([{ _tag: "Counter", name, tags: { backend: "fs", store: "archive" }, value: 5 }])
    }))

  it.effect("labels from Effect.tagMetrics are included; explicit tags win", () =>
    Effect.gen(function*() {
      const m = yield* Metrics.make
      yield* m.counter("tagged", 1, { backend: "fs" }).pipe(Effect.tagMetrics({ tenant: "t1", backend: "ignored" }))
      expect(yield* m.snapshot).toEqual([
        { _tag: "Counter", name: "tagged", tags: { backend: "fs", tenant: "t1" }, value: 1 }
      ])
    }))

  it.effect("a name keeps the kind it was first recorded with; other kinds are ignored", () =>
    Effect.gen(function*() {
      const m = yield* Metrics.make
      yield* m.counter("dual", 2)
      yield* m.gauge("dual", 50)
      yield* m.histogram("dual", 1)
      expect(yield* m.snapshot).toEqual([{ _tag: "Counter", name: "dual", tags: {}, value: 2 }])
    }))

  it.effect("the layer provides a working registry", () =>
    Effect.gen(function*() {
      const m = yield* MetricsRegistry
      yield* m.counter("via_layer", 3)
      expect(yield* m.snapshot).toEqual([{ _tag: "Counter", name: "via_layer", tags: {}, value: 3 }])
    }).pipe(Effect.provide(Metrics.layer)))
})

describe("Prometheus text", () => {
  it.effect("renders HELP, TYPE, escaped labels, gauges and cumulative histograms exactly", () =>
    Effect.gen(function*() {
      const m = yield* Metrics.makeWith({
        boundaries: { request_seconds: [0.1, 1] },
        help: { request_seconds: "Request time.\nSecond line with \\ backslash." }
      })
      yield* m.counter(MetricKeys.backendFailuresTotal, 2, {
        backend: "pg",
        port: "KeyValueStore",
        method: "get",
        reason: "say \"hi\"\\\nbye"
      })
      yield* m.gauge("queue_depth", 3.5)
      yield* m.histogram("request_seconds", 0.05, { method: "put" })
      yield* m.histogram("request_seconds", 0.5, { method: "put" })
      yield* m.histogram("request_seconds", 2, { method: "put" })
      const text = yield* m.prometheus
      expect(text).toBe(
        [
          "# HELP graviton_backend_failures_total Backend calls that failed for good (after any retries), by failure reason.",
          "# TYPE graviton_backend_failures_total counter",
          "graviton_backend_failures_total{backend=\"pg\",method=\"get\",port=\"KeyValueStore\",reason=\"say \\\"hi\\\"\\\\\\nbye\"} 2",
          "# TYPE queue_depth gauge",
          "queue_depth 3.5",
          "# HELP request_seconds Request time.\\nSecond line with \\\\ backslash.",
          "# TYPE request_seconds histogram",
          "request_seconds_bucket{method=\"put\",le=\"0.1\"} 1",
          "request_seconds_bucket{method=\"put\",le=\"1\"} 2",
          "request_seconds_bucket{method=\"put\",le=\"+Inf\"} 3",
          "request_seconds_sum{method=\"put\"} 2.55",
          "request_seconds_count{method=\"put\"} 3",
          ""
        ].join("\n")
      )
    }))

  it.effect("an empty registry renders as empty text", () =>
    Effect.gen(function*() {
      const m = yield* Metrics.make
      expect(yield* m.prometheus).toBe("")
    }))

  it("renders NaN and infinities, sanitizes names, and renames a user 'le' label on histograms", () => {
    const text = Prometheus.render([
      { _tag: "Gauge", name: "weird-name.x", tags: { "bad-label": "v" }, value: NaN },
      { _tag: "Gauge", name: "inf", tags: {}, value: Infinity },
      { _tag: "Gauge", name: "ninf", tags: {}, value: -Infinity },
      { _tag: "Histogram", name: "h", tags: { le: "x" }, buckets: [[1, 0]], count: 2, sum: 3 }
    ])
    expect(text).toBe(
      [
        "# TYPE weird_name_x gauge",
        "weird_name_x{bad_label=\"v\"} NaN",
        "# TYPE inf gauge",
        "inf +Inf",
        "# TYPE ninf gauge",
        "ninf -Inf",
        "# TYPE h histogram",
        "h_bucket{le_=\"x\",le=\"1\"} 0",
        "h_bucket{le_=\"x\",le=\"+Inf\"} 2",
        "h_sum{le_=\"x\"} 3",
        "h_count{le_=\"x\"} 2",
        ""
      ].join("\n")
    )
  })

  it("MetricKeys defines each name once, with help text and a kind", () => {
    const names = MetricKeys.definitions.map((d) => d.name)
    expect(new Set(names).size).toBe(names.length)
    expect(names).toEqual(
      expect.arrayContaining([
        "graviton_bytes_ingested",
        "graviton_blocks_ingested",
        "graviton_upload_duration_seconds",
        "graviton_backend_failures_total",
        "graviton_backend_operations_total",
        "graviton_backend_latency_seconds",
        "graviton_backend_retries_total",
        "graviton_bytes_read_total",
        "graviton_bytes_written_total",
        "graviton_dedup_hits_total"
      ])
    )
    expect(MetricKeys.describe(MetricKeys.uploadDurationSeconds)?.kind).toBe("histogram")
    expect(MetricKeys.describe(MetricKeys.backendFailuresTotal)?.labels).toEqual(["backend", "port", "method", "reason"])
    for (const d of MetricKeys.definitions) expect(d.help.length).toBeGreaterThan(0)
  })
})
