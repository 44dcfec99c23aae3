/**
 * Metrics as an Effect app exports them: after a put and a get, Effect's own
 * registry (`Metric.snapshot`) holds Graviton's series under the documented
 * names and labels only (no hidden per-registry label), and
 * `@effect/opentelemetry`'s metric producer hands them to an OpenTelemetry
 * MetricReader, from which any OTel exporter (OTLP, Prometheus) takes them.
 */
import { describe, expect, it } from "@effect/vitest"
import { type DataPoint, MetricReader, type ResourceMetrics } from "@opentelemetry/sdk-metrics"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as MetricState from "effect/MetricState"
import * as Stream from "effect/Stream"
import * as MemoryLayers from "../../src/backends/memory/MemoryLayers.js"
import * as MetricKeys from "../../src/kit/MetricKeys.js"
import { BlobStore } from "../../src/ports/BlobStore.js"
import { MetricsRegistry } from "../../src/ports/MetricsRegistry.js"
import { collect, randomBytes } from "../../src/testing/bytes.js"
import { makeTracing } from "./fixtures.js"

/** A reader that exports only when asked (`collect`), as a Prometheus scrape does. */
class OnDemandReader extends MetricReader {
  protected override onForceFlush(): Promise<void> {
    return Promise.resolve()
  }
  protected override onShutdown(): Promise<void> {
    return Promise.resolve()
  }
}

const putAndGet = (bytes: Uint8Array) =>
  Effect.gen(function*() {
    const blobs = yield* BlobStore
    const stored = yield* Stream.run(Stream.make(bytes), blobs.put())
    yield* collect(blobs.get(stored.key))
  })

/** Graviton's series in Effect's registry: name, labels, counter value (or histogram count). */
const gravitonSeries = Effect.map(Metric.snapshot, (pairs) =>
  pairs
    .filter((p) => p.metricKey.name.startsWith("graviton_"))
    .map((p) => ({
      name: p.metricKey.name,
      labels: Object.fromEntries(p.metricKey.tags.map((l) => [l.key, l.value])) as Record<string, string>,
      value: MetricState.isCounterState(p.metricState)
        ? Number(p.metricState.count)
        : MetricState.isHistogramState(p.metricState)
        ? p.metricState.count
        : undefined
    })))

describe("metrics in Effect's registry", () => {
  it.effect("after a put and a get: Graviton's series, documented labels only, no registry label", () =>
    Effect.gen(function*() {
      const bytes = randomBytes(10_000, 1)
      yield* putAndGet(bytes).pipe(Effect.provide(MemoryLayers.live))
      const series = yield* gravitonSeries
      expect(series.length).toBeGreaterThan(0)
      for (const s of series) {
        expect(Object.keys(s.labels), s.name).not.toContain("graviton_registry")
        const documented = MetricKeys.describe(s.name)
        // Every series Graviton records is documented, and carries only documented labels
        // (backend-specific extras such as S3's `kind` are in the backend's *Metrics module).
        if (documented !== undefined) for (const label of Object.keys(s.labels)) expect(documented.labels, s.name).toContain(label)
      }
      const find = (name: string, labels: Record<string, string>) =>
        series.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
      expect(find(MetricKeys.bytesIngested, { backend: "memory" })?.value).toBeGreaterThanOrEqual(bytes.length)
      expect(find(MetricKeys.blocksIngested, { backend: "memory" })?.value).toBeGreaterThanOrEqual(1)
      expect(find(MetricKeys.bytesReadTotal, { backend: "memory" })?.value).toBeGreaterThanOrEqual(bytes.length)
      expect(find(MetricKeys.uploadDurationSeconds, { backend: "memory" })?.value).toBeGreaterThanOrEqual(1)
      const ops = find(MetricKeys.backendOperationsTotal, { backend: "memory", port: "BlobStore", method: "put", outcome: "success" })
      expect(ops?.labels).toEqual({ backend: "memory", port: "BlobStore", method: "put", outcome: "success" })
      expect(find(MetricKeys.backendLatencySeconds, { backend: "memory", port: "BlobStore", method: "get" })?.labels)
        .toEqual({ backend: "memory", port: "BlobStore", method: "get" })
    }))

  it.effect("the registry's own snapshot still counts only its own calls", () =>
    Effect.gen(function*() {
      const bytes = randomBytes(5_000, 2)
      const snapshotAfter = Effect.flatMap(MetricsRegistry, (m) => Effect.zipRight(putAndGet(bytes), m.snapshot))
      const first = yield* snapshotAfter.pipe(Effect.provide(MemoryLayers.live))
      const second = yield* snapshotAfter.pipe(Effect.provide(MemoryLayers.live))
      const ingested = (samples: typeof first) =>
        samples.find((s) => s.name === MetricKeys.bytesIngested && s.tags.backend === "memory")
      expect(ingested(first)).toMatchObject({ _tag: "Counter", value: bytes.length })
      expect(ingested(second)).toMatchObject({ _tag: "Counter", value: bytes.length })
    }))
})

describe("metrics through @effect/opentelemetry", () => {
  it.effect("an OpenTelemetry MetricReader sees Graviton's counters and histograms with their labels", () =>
    Effect.gen(function*() {
      const reader = new OnDemandReader()
      const { layer } = makeTracing(reader)
      const bytes = randomBytes(20_000, 3)
      const collected = yield* Effect.gen(function*() {
        yield* putAndGet(bytes).pipe(Effect.provide(MemoryLayers.live))
        return yield* Effect.promise(() => reader.collect())
      }).pipe(Effect.provide(layer))
      expect(collected.errors).toEqual([])
      const metrics = (collected.resourceMetrics as ResourceMetrics).scopeMetrics.flatMap((s) => s.metrics)
      const named = (name: string) => metrics.find((m) => m.descriptor.name === name)

      const ingested = named(MetricKeys.bytesIngested)
      expect(ingested).toBeDefined()
      const point = (ingested!.dataPoints as Array<DataPoint<number>>).find((p) => p.attributes.backend === "memory")
      expect(point?.attributes).toEqual({ backend: "memory" })
      expect(point!.value).toBeGreaterThanOrEqual(bytes.length)

      const latency = named(MetricKeys.backendLatencySeconds)
      expect(latency).toBeDefined()
      const put = (latency!.dataPoints as Array<DataPoint<{ readonly count: number }>>)
        .find((p) => p.attributes.port === "BlobStore" && p.attributes.method === "put" && p.attributes.backend === "memory")
      expect(put?.attributes).toEqual({ backend: "memory", port: "BlobStore", method: "put" })
      expect(put!.value.count).toBeGreaterThanOrEqual(1)

      for (const m of metrics) {
        for (const p of m.dataPoints) expect(Object.keys(p.attributes), m.descriptor.name).not.toContain("graviton_registry")
      }
    }))
})
