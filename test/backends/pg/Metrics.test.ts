/**
 * PgMetrics and retries: operation counters and latency by port and method,
 * failures by SQLSTATE class, pool gauges, bytes moved; transient failures
 * (a statement timeout while another session holds a row lock) retried with
 * the shared schedule, permanent ones not.
 */
import { expect } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as PgLayers from "../../../src/backends/pg/PgLayers.js"
import * as PgMetrics from "../../../src/backends/pg/PgMetrics.js"
import * as BlobLocator from "../../../src/core/BlobLocator.js"
import { BackendEvents } from "../../../src/ports/BackendEvents.js"
import { KeyValueStore } from "../../../src/ports/KeyValueStore.js"
import { type MetricSample, MetricsRegistry } from "../../../src/ports/MetricsRegistry.js"
import { ImmutableObjectStore, MutableObjectStore } from "../../../src/ports/ObjectStore.js"
import * as Events from "../../../src/kit/Events.js"
import * as MetricKeys from "../../../src/kit/MetricKeys.js"
import * as Metrics from "../../../src/kit/Metrics.js"
import { collect, randomBytes, utf8 } from "../../../src/testing/bytes.js"
import { uniquePrefix } from "../../../src/testing/KeyValueStore.js"
import { describePg, pgLayer, usePostgres } from "../../harness/postgres.js"

usePostgres()

const layer = pgLayer("metrics", { statementTimeout: "250 millis", poolSize: 4 }).pipe(
  Layer.provideMerge(Layer.merge(Metrics.layer, Events.layer))
)

const samples = Effect.flatMap(MetricsRegistry, (m) => m.snapshot)
const find = (all: ReadonlyArray<MetricSample>, name: string, tags: Record<string, string>) =>
  all.filter((s) => s.name === name && Object.entries(tags).every(([k, v]) => s.tags[k] === v))
const total = (all: ReadonlyArray<MetricSample>, name: string, tags: Record<string, string>) =>
  find(all, name, tags).reduce((n, s) => n + (s._tag === "Histogram" ? s.count : s.value), 0)

/** Holds a row lock on `key` from another session until the returned effect is run. */
const lockRow = (key: string) =>
  Effect.gen(function*() {
    const pool = yield* PgLayers.PgPool
    const client = yield* Effect.promise(() => pool.connect())
    yield* Effect.promise(() => client.query("BEGIN"))
    yield* Effect.promise(() => client.query("SELECT 1 FROM kv WHERE key = $1 FOR UPDATE", [key]))
    return Effect.promise(async () => {
      await client.query("COMMIT")
      client.release()
    })
  })

/** A fiber that ends with the first RetryAttempted event of `method` published from now on. */
const firstRetry = (method: string) =>
  Effect.gen(function*() {
    const events = yield* BackendEvents
    const stream = yield* events.subscribe
    return yield* Effect.fork(
      Effect.map(
        Stream.runHead(Stream.filter(stream, (e) => e._tag === "RetryAttempted" && e.method === method)),
        Option.getOrThrow
      )
    )
  })

describePg("PgMetrics", layer, (test) => {
  test("operations by port and method, latency, bytes moved and pool gauges", () =>
    Effect.gen(function*() {
      const kv = yield* KeyValueStore
      const store = yield* MutableObjectStore
      const p = uniquePrefix("m")
      yield* kv.put(`${p}a`, utf8("a"))
      yield* kv.get(`${p}a`)
      const l = Either.getOrThrow(BlobLocator.make("pg", "m", `${p}obj`))
      const bytes = randomBytes(300_000, 1)
      yield* Stream.run(Stream.make(bytes), store.put(l))
      yield* collect((yield* ImmutableObjectStore).get(l, { start: 10, end: 1010 }))
      const all = yield* samples
      const tags = { backend: "pg", port: "KeyValueStore" }
      expect(total(all, MetricKeys.backendOperationsTotal, { ...tags, method: "put", outcome: "success" })).toBeGreaterThanOrEqual(1)
      expect(total(all, MetricKeys.backendOperationsTotal, { ...tags, method: "get", outcome: "success" })).toBeGreaterThanOrEqual(1)
      expect(total(all, MetricKeys.backendLatencySeconds, { ...tags, method: "get" })).toBeGreaterThanOrEqual(1)
      expect(total(all, MetricKeys.backendOperationsTotal, { backend: "pg", port: "ObjectStore", method: "put" })).toBeGreaterThanOrEqual(1)
      expect(total(all, MetricKeys.bytesWrittenTotal, { backend: "pg" })).toBeGreaterThanOrEqual(300_000)
      expect(total(all, MetricKeys.bytesReadTotal, { backend: "pg" })).toBeGreaterThanOrEqual(1000)
      const pool = find(all, PgMetrics.poolConnections, { backend: "pg" })
      expect(pool.map((s) => s.tags.state).sort()).toEqual(["idle", "total", "waiting"])
      expect(find(all, PgMetrics.poolConnections, { state: "total" })[0]!._tag).toBe("Gauge")
    }))

  test("a statement timeout is Timeout, counted by SQLSTATE class, retried, and the put then succeeds", () =>
    Effect.gen(function*() {
      const kv = yield* KeyValueStore
      const retried = yield* firstRetry("put")
      const key = `${uniquePrefix("locked")}k`
      yield* kv.put(key, utf8("before"))
      const before = yield* samples
      const release = yield* lockRow(key)
      // The lock outlasts the first attempt (250 ms statement timeout): released once a retry is announced.
      const put = yield* Effect.fork(kv.put(key, utf8("after")))
      const event = yield* Fiber.join(retried)
      yield* release
      yield* Fiber.join(put)
      expect(Option.map(yield* kv.get(key), (b) => new TextDecoder().decode(b))).toEqual(Option.some("after"))
      const after = yield* samples
      const retries = (s: ReadonlyArray<MetricSample>) =>
        total(s, MetricKeys.backendRetriesTotal, { backend: "pg", port: "KeyValueStore", method: "put", reason: "Timeout" })
      expect(retries(after) - retries(before)).toBeGreaterThanOrEqual(1)
      const failures = (s: ReadonlyArray<MetricSample>) =>
        total(s, PgMetrics.failuresTotal, { port: "KeyValueStore", method: "put", sqlstate_class: "57", reason: "Timeout" })
      expect(failures(after) - failures(before)).toBeGreaterThanOrEqual(1)
      // The call itself succeeded in the end: no failure outcome for it.
      expect(total(after, MetricKeys.backendOperationsTotal, { port: "KeyValueStore", method: "put", outcome: "failure" }))
        .toBe(total(before, MetricKeys.backendOperationsTotal, { port: "KeyValueStore", method: "put", outcome: "failure" }))
      expect(event).toMatchObject({ _tag: "RetryAttempted", backend: "pg", method: "put", reason: "Timeout" })
    }).pipe(Effect.scoped), 60_000)

  test("compareAndSet is retried after a server-side timeout (it had no effect), and succeeds once", () =>
    Effect.gen(function*() {
      const kv = yield* KeyValueStore
      const key = `${uniquePrefix("locked")}cas`
      yield* kv.put(key, utf8("0"))
      const retried = yield* firstRetry("compareAndSet")
      const release = yield* lockRow(key)
      const cas = yield* Effect.fork(kv.compareAndSet(key, Option.some(utf8("0")), Option.some(utf8("1"))))
      expect(yield* Fiber.join(retried)).toMatchObject({ method: "compareAndSet", reason: "Timeout" })
      yield* release
      expect(yield* Fiber.join(cas)).toBe(true)
      expect(Option.map(yield* kv.get(key), (b) => new TextDecoder().decode(b))).toEqual(Option.some("1"))
    }).pipe(Effect.scoped), 60_000)

  test("permanent failures are not retried", () =>
    Effect.gen(function*() {
      const store = yield* MutableObjectStore
      const before = total(yield* samples, MetricKeys.backendRetriesTotal, { backend: "pg" })
      const missing = Either.getOrThrow(BlobLocator.make("pg", "m", `${uniquePrefix("none")}x`))
      const error = yield* Effect.flip(store.copy(missing, missing))
      expect(error.reason).toBe("NotFound")
      const failed = yield* Effect.flip(collect(store.get(missing)))
      expect(failed.reason).toBe("NotFound")
      const after = yield* samples
      expect(total(after, MetricKeys.backendRetriesTotal, { backend: "pg" })).toBe(before)
      expect(total(after, MetricKeys.backendFailuresTotal, { backend: "pg", port: "ObjectStore", method: "copy", reason: "NotFound" }))
        .toBeGreaterThanOrEqual(1)
    }))
})
