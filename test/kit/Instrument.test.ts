import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Sink from "effect/Sink"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import { type ErrorReason, MetadataError } from "../../src/core/Errors.js"
import { type BackendEvent, BackendEvents, ObjectDeleted } from "../../src/ports/BackendEvents.js"
import { type MetricSample, MetricsRegistry } from "../../src/ports/MetricsRegistry.js"
import * as Events from "../../src/kit/Events.js"
import * as Instrument from "../../src/kit/Instrument.js"
import * as MetricKeys from "../../src/kit/MetricKeys.js"
import * as Metrics from "../../src/kit/Metrics.js"
import * as Retry from "../../src/kit/Retry.js"

const Services = Layer.merge(Metrics.layer, Events.layer)
const error = (reason: ErrorReason, description?: string) =>
  new MetadataError({ reason, backend: "test", method: "get", ...(description === undefined ? {} : { description }) })
const sentinel = new ObjectDeleted({ backend: "sentinel", at: new Date(0), locator: "mem://b/end" })

/** Builds the instrument and an event subscription established before anything runs. */
const setup = Effect.gen(function*() {
  const events = yield* BackendEvents
  const subscription = yield* events.subscribe
  const instrument = yield* Instrument.make("test", "KeyValueStore")
  const metrics = yield* MetricsRegistry
  /** Every event published so far (publishes a sentinel to know where they end). */
  const published = Effect.gen(function*() {
    yield* events.publish(sentinel)
    const all = yield* Stream.runCollect(Stream.takeUntil(subscription, (e) => e === sentinel))
    return Chunk.toArray(all).filter((e) => e !== sentinel)
  })
  return { instrument, metrics, published }
})

/** The snapshot without values: name and tags only, for "what was recorded" checks. */
const series = (samples: ReadonlyArray<MetricSample>) => samples.map((s) => `${s.name}${JSON.stringify(s.tags)}`)
const sameTags = (a: Record<string, string>, b: Record<string, string>) =>
  JSON.stringify(Object.entries(a).sort()) === JSON.stringify(Object.entries(b).sort())
const value = (samples: ReadonlyArray<MetricSample>, name: string, tags: Record<string, string>) => {
  const s = samples.find((x) => x.name === name && sameTags(x.tags, tags))
  return s === undefined ? undefined : s._tag === "Histogram" ? s.count : s.value
}
const op = (method: string) => ({ backend: "test", port: "KeyValueStore", method })

describe("Instrument", () => {
  it.scoped("records latency and a success outcome", () =>
    Effect.gen(function*() {
      const { instrument, metrics, published } = yield* setup
      const fiber = yield* Effect.fork(instrument.observe("get")(Effect.as(Effect.sleep("250 millis"), 42)))
      yield* TestClock.adjust("250 millis")
      expect(yield* Fiber.join(fiber)).toBe(42)
      const snap = yield* metrics.snapshot
      expect(value(snap, MetricKeys.backendOperationsTotal, { ...op("get"), outcome: "success" })).toBe(1)
      const latency = snap.find((s) => s.name === MetricKeys.backendLatencySeconds)
      if (latency?._tag !== "Histogram") throw new Error("expected a latency histogram")
      expect(latency.tags).toEqual(op("get"))
      expect(latency.sum).toBeCloseTo(0.25, 9)
      expect(latency.buckets.find(([b]) => b === 0.25)![1]).toBe(1)
      expect(latency.buckets.find(([b]) => b === 0.1)![1]).toBe(0)
      expect(snap.some((s) => s.name === MetricKeys.backendFailuresTotal)).toBe(false)
      expect(yield* published).toEqual([])
    }).pipe(Effect.provide(Services)))

  it.scoped("records a storage failure by reason and publishes OperationFailed", () =>
    Effect.gen(function*() {
      const { instrument, metrics, published } = yield* setup
      const failure = error("NotFound", "no such key")
      const exit = yield* Effect.exit(instrument.observe("get")(Effect.fail(failure)))
      expect(exit).toEqual(Exit.fail(failure))
      const snap = yield* metrics.snapshot
      expect(value(snap, MetricKeys.backendOperationsTotal, { ...op("get"), outcome: "failure" })).toBe(1)
      expect(value(snap, MetricKeys.backendFailuresTotal, { ...op("get"), reason: "NotFound" })).toBe(1)
      expect(value(snap, MetricKeys.backendLatencySeconds, op("get"))).toBe(1)
      const events = yield* published
      expect(events).toHaveLength(1)
      expect(events[0]).toMatchObject({
        _tag: "OperationFailed",
        backend: "test",
        method: "get",
        reason: "NotFound",
        description: "NotFound: test.get: no such key"
      })
    }).pipe(Effect.provide(Services)))

  it.scoped("a defect is a failure with reason Unknown", () =>
    Effect.gen(function*() {
      const { instrument, metrics, published } = yield* setup
      yield* Effect.exit(instrument.observe("put")(Effect.die(new Error("bug"))))
      const snap = yield* metrics.snapshot
      expect(value(snap, MetricKeys.backendFailuresTotal, { ...op("put"), reason: "Unknown" })).toBe(1)
      expect(yield* published).toMatchObject([{ _tag: "OperationFailed", reason: "Unknown", description: "bug" }])
    }).pipe(Effect.provide(Services)))

  it.scoped("interruption is neither a success nor a failure", () =>
    Effect.gen(function*() {
      const { instrument, metrics, published } = yield* setup
      const fiber = yield* Effect.fork(instrument.observe("get")(Effect.never))
      yield* TestClock.adjust("1 second")
      yield* Fiber.interrupt(fiber)
      expect(yield* metrics.snapshot).toEqual([])
      expect(yield* published).toEqual([])
    }).pipe(Effect.provide(Services)))

  it.scoped("retry counts retries, publishes RetryAttempted, and observe sees one call", () =>
    Effect.gen(function*() {
      const { instrument, metrics, published } = yield* setup
      let attempts = 0
      const flaky = Effect.suspend(() => {
        attempts++
        return attempts <= 2 ? Effect.fail(error(attempts === 1 ? "Unavailable" : "Throttled")) : Effect.succeed("ok")
      })
      const schedule = Retry.policy({ base: "10 millis", jitter: false })
      const fiber = yield* Effect.fork(instrument.observeRetry("get", schedule)(flaky))
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(fiber)).toBe("ok")
      expect(attempts).toBe(3)
      const snap = yield* metrics.snapshot
      expect(value(snap, MetricKeys.backendRetriesTotal, { ...op("get"), reason: "Unavailable" })).toBe(1)
      expect(value(snap, MetricKeys.backendRetriesTotal, { ...op("get"), reason: "Throttled" })).toBe(1)
      expect(value(snap, MetricKeys.backendOperationsTotal, { ...op("get"), outcome: "success" })).toBe(1)
      expect(snap.some((s) => s.tags.outcome === "failure")).toBe(false)
      expect(yield* published).toMatchObject([
        { _tag: "RetryAttempted", backend: "test", method: "get", attempt: 1, reason: "Unavailable" },
        { _tag: "RetryAttempted", backend: "test", method: "get", attempt: 2, reason: "Throttled" }
      ])
    }).pipe(Effect.provide(Services)))

  it.scoped("retry does not retry or count a permanent error", () =>
    Effect.gen(function*() {
      const { instrument, metrics, published } = yield* setup
      let attempts = 0
      const exit = yield* Effect.exit(instrument.retry("get")(Effect.suspend(() => {
        attempts++
        return Effect.fail(error("Conflict"))
      })))
      expect(exit).toEqual(Exit.fail(error("Conflict")))
      expect(attempts).toBe(1)
      expect(yield* metrics.snapshot).toEqual([])
      expect(yield* published).toEqual([])
    }).pipe(Effect.provide(Services)))

  it.scoped("passthroughs tag with the backend; publish reaches subscribers", () =>
    Effect.gen(function*() {
      const { instrument, metrics, published } = yield* setup
      yield* instrument.counter(MetricKeys.bytesIngested, 10)
      yield* instrument.counter(MetricKeys.blocksIngested)
      yield* instrument.gauge("open_handles", 3, { kind: "file" })
      yield* instrument.histogram(MetricKeys.uploadDurationSeconds, 0.5)
      const event = new ObjectDeleted({ backend: "test", at: new Date(0), locator: "mem://b/x" })
      yield* instrument.publish(event)
      expect(yield* metrics.snapshot).toMatchObject([
        { name: MetricKeys.blocksIngested, tags: { backend: "test" }, value: 1 },
        { name: MetricKeys.bytesIngested, tags: { backend: "test" }, value: 10 },
        { name: MetricKeys.uploadDurationSeconds, tags: { backend: "test" }, count: 1, sum: 0.5 },
        { name: "open_handles", tags: { backend: "test", kind: "file" }, value: 3 }
      ])
      expect(yield* published).toEqual([event])
    }).pipe(Effect.provide(Services)))

  it.scoped("observeFailures records only failures: no latency or success counts", () =>
    Effect.gen(function*() {
      const { instrument, metrics, published } = yield* setup
      expect(yield* instrument.observeFailures("get")(Effect.succeed(1))).toBe(1)
      const exit = yield* Effect.exit(instrument.observeFailures("put")(Effect.fail(error("Unavailable", "down"))))
      expect(Exit.isFailure(exit)).toBe(true)
      const snap = yield* metrics.snapshot
      expect(snap.map((x) => x.name)).toEqual([MetricKeys.backendFailuresTotal])
      expect(value(snap, MetricKeys.backendFailuresTotal, { ...op("put"), reason: "Unavailable" })).toBe(1)
      const events = yield* published
      expect(events.map((e) => e._tag)).toEqual(["OperationFailed"])
    }).pipe(Effect.provide(Services)))

  it.effect("metrics recorded with a reused tags object land in one series", () =>
    Effect.gen(function*() {
      const registry = yield* Metrics.make
      const tags = { backend: "x" }
      yield* registry.counter("c_total", 1, tags)
      yield* registry.counter("c_total", 2, tags)
      yield* registry.counter("c_total", 4, { backend: "x" })
      yield* registry.counter("c_total", 8, { backend: "y" })
      const snap = yield* registry.snapshot
      expect(value(snap, "c_total", { backend: "x" })).toBe(7)
      expect(value(snap, "c_total", { backend: "y" })).toBe(8)
    }))

  it.effect("works without MetricsRegistry and BackendEvents", () =>
    Effect.gen(function*() {
      const instrument = yield* Instrument.make("bare", "BlobStore")
      expect(yield* instrument.observe("get")(Effect.succeed(1))).toBe(1)
      expect(yield* Effect.exit(instrument.observe("get")(Effect.fail(error("NotFound"))))).toEqual(
        Exit.fail(error("NotFound"))
      )
      yield* instrument.counter("c", 1)
      yield* instrument.publish(sentinel)
      const streamed = yield* Stream.runCollect(instrument.observeStream("list")(Stream.make(1, 2)))
      expect(Chunk.toArray(streamed)).toEqual([1, 2])
    }))

  it.effect("reports to the services present when it was made, not later ones", () =>
    Effect.gen(function*() {
      const before = yield* Instrument.make("early", "BlobStore")
      const registry = yield* Metrics.make
      yield* before.observe("get")(Effect.void).pipe(Effect.provideService(MetricsRegistry, registry))
      expect(yield* registry.snapshot).toEqual([])
      const after = yield* Instrument.make("late", "BlobStore").pipe(Effect.provideService(MetricsRegistry, registry))
      yield* after.observe("get")(Effect.void)
      expect(series(yield* registry.snapshot)).toEqual([
        `${MetricKeys.backendLatencySeconds}{"backend":"late","method":"get","port":"BlobStore"}`,
        `${MetricKeys.backendOperationsTotal}{"backend":"late","method":"get","outcome":"success","port":"BlobStore"}`
      ])
    }))
})

describe("Instrument streams and sinks", () => {
  const outcomes = (snap: ReadonlyArray<MetricSample>) =>
    snap.filter((s) => s.name === MetricKeys.backendOperationsTotal).map((s) => [s.tags.method, s.tags.outcome])

  it.scoped("a stream read to the end, or stopped early by its consumer, is a success", () =>
    Effect.gen(function*() {
      const { instrument, metrics } = yield* setup
      const source = Stream.range(1, 100)
      expect(Chunk.size(yield* Stream.runCollect(instrument.observeStream("list")(source)))).toBe(100)
      expect(Chunk.toArray(yield* Stream.runCollect(Stream.take(instrument.observeStream("get")(source), 2))))
        .toEqual([1, 2])
      expect(outcomes(yield* metrics.snapshot)).toEqual([["get", "success"], ["list", "success"]])
    }).pipe(Effect.provide(Services)))

  it.scoped("a failing stream is a failure with its reason", () =>
    Effect.gen(function*() {
      const { instrument, metrics, published } = yield* setup
      const failing = Stream.concat(Stream.make(1), Stream.fail(error("Corrupted")))
      const exit = yield* Effect.exit(Stream.runCollect(instrument.observeStream("get")(failing)))
      expect(exit).toEqual(Exit.fail(error("Corrupted")))
      const snap = yield* metrics.snapshot
      expect(outcomes(snap)).toEqual([["get", "failure"]])
      expect(value(snap, MetricKeys.backendFailuresTotal, { ...op("get"), reason: "Corrupted" })).toBe(1)
      expect(yield* published).toMatchObject([{ _tag: "OperationFailed", method: "get", reason: "Corrupted" }])
    }).pipe(Effect.provide(Services)))

  it.scoped("a failure downstream of the stream, or interruption, is not the backend's", () =>
    Effect.gen(function*() {
      const { instrument, metrics, published } = yield* setup
      const downstream = instrument.observeStream("get")(Stream.range(1, 10)).pipe(
        Stream.mapEffect((n) => (n === 3 ? Effect.fail("consumer gave up") : Effect.succeed(n)))
      )
      expect(yield* Effect.exit(Stream.runDrain(downstream))).toEqual(Exit.fail("consumer gave up"))
      const fiber = yield* Effect.fork(Stream.runDrain(instrument.observeStream("list")(Stream.never)))
      yield* TestClock.adjust("1 second")
      yield* Fiber.interrupt(fiber)
      expect(yield* metrics.snapshot).toEqual([])
      expect(yield* published).toEqual([])
    }).pipe(Effect.provide(Services)))

  it.scoped("a sink records its own result and failure, not an upstream failure", () =>
    Effect.gen(function*() {
      const { instrument, metrics, published } = yield* setup
      const sum = instrument.observeSink("put")(Sink.sum)
      expect(yield* Stream.run(Stream.make(1, 2, 3), sum)).toBe(6)
      const rejecting = instrument.observeSink("put")(Sink.fail(error("PermissionDenied")))
      expect(yield* Effect.exit(Stream.run(Stream.make(1), rejecting))).toEqual(Exit.fail(error("PermissionDenied")))
      const upstream = Stream.concat(Stream.make(1), Stream.fail("source broke"))
      expect(yield* Effect.exit(Stream.run(upstream, sum))).toEqual(Exit.fail("source broke"))
      const snap = yield* metrics.snapshot
      expect(value(snap, MetricKeys.backendOperationsTotal, { ...op("put"), outcome: "success" })).toBe(1)
      expect(value(snap, MetricKeys.backendOperationsTotal, { ...op("put"), outcome: "failure" })).toBe(1)
      expect(value(snap, MetricKeys.backendFailuresTotal, { ...op("put"), reason: "PermissionDenied" })).toBe(1)
      expect(((yield* published) as ReadonlyArray<BackendEvent>).map((e) => e._tag)).toEqual(["OperationFailed"])
    }).pipe(Effect.provide(Services)))
})
