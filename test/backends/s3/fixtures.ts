/** Shared pieces of the S3 test files: server lifetimes, the layer under test, locators, byte helpers, metrics and events. */
import * as S3 from "@aws-sdk/client-s3"
import { afterAll, describe, it as baseIt, layer as sharedLayer, type Vitest } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { randomUUID } from "node:crypto"
import * as S3BlobStore from "../../../src/backends/s3/S3BlobStore.js"
import { S3ClientInstance } from "../../../src/backends/s3/S3Client.js"
import type { S3ClientOptions } from "../../../src/backends/s3/S3Config.js"
import * as S3ObjectStore from "../../../src/backends/s3/S3ObjectStore.js"
import * as BlobLocator from "../../../src/core/BlobLocator.js"
import type { PutOptions } from "../../../src/core/Models.js"
import { type BackendEvent, BackendEvents } from "../../../src/ports/BackendEvents.js"
import type { BlobStore } from "../../../src/ports/BlobStore.js"
import { MetricsRegistry, type MetricTags } from "../../../src/ports/MetricsRegistry.js"
import { ImmutableObjectStore, MutableObjectStore } from "../../../src/ports/ObjectStore.js"
import * as Events from "../../../src/kit/Events.js"
import * as Metrics from "../../../src/kit/Metrics.js"
import { chunked, collect } from "../../../src/testing/bytes.js"
import { type Capability, gate } from "../../../src/testing/capabilities.js"
import * as Harness from "../../harness/s3.js"

/** Registers the file-level `afterAll` that stops the servers this file started; call once at the top of a test file. */
export const useServers = (): void => {
  afterAll(Harness.stopAll, 30_000)
}

/** Everything a test of the S3 backend may use. */
export type Services =
  | MutableObjectStore
  | ImmutableObjectStore
  | BlobStore
  | S3ClientInstance
  | BackendEvents
  | MetricsRegistry

/** The three S3 ports on one client to `server` (fresh bucket), with an event bus and a metrics registry. */
export const storeLayer = (
  server: Harness.Candidate,
  label: string,
  overrides?: Partial<S3ClientOptions>
): Layer.Layer<Services, unknown> =>
  Layer.merge(S3ObjectStore.layer, S3BlobStore.layer()).pipe(
    Layer.provideMerge(Harness.clientLayer(server, { bucket: Harness.freshBucket(`${label}-${server.name}`), overrides })),
    Layer.provideMerge(Layer.merge(Events.layer, Metrics.layer))
  )

/** A locator `s3://<bucket>/<random>/<path>` for one test. */
export const locatorMaker = Effect.map(S3ClientInstance, ({ settings }) => {
  const base = `t/${randomUUID()}/`
  return {
    base,
    bucket: settings.bucket,
    at: (path: string) => Either.getOrThrow(BlobLocator.make("s3", settings.bucket, base + path)),
    prefix: (path = "") => Either.getOrThrow(BlobLocator.makePrefix("s3", settings.bucket, base + path)),
    /** The object key of a path (the client's key prefix included). */
    key: (path: string) => settings.prefix + base + path
  }
})

/** Puts `bytes` in uneven chunks. */
export const putBytes = (l: BlobLocator.BlobLocator, bytes: Uint8Array, options?: PutOptions) =>
  Effect.flatMap(MutableObjectStore, (s) => Stream.run(chunked(bytes, { min: 1, max: 256 * 1024 }), s.put(l, options)))

/** Reads a whole object. */
export const read = (l: BlobLocator.BlobLocator) => Effect.flatMap(ImmutableObjectStore, (s) => collect(s.get(l)))

/** Multipart uploads still open under `keyPrefix` (servers with ListMultipartUploads only). */
export const openUploads = (keyPrefix: string) =>
  Effect.flatMap(S3ClientInstance, ({ client, settings }) =>
    Effect.promise(() => client.send(new S3.ListMultipartUploadsCommand({ Bucket: settings.bucket, Prefix: keyPrefix })))
  ).pipe(Effect.map((out) => (out.Uploads ?? []).map((u) => u.Key ?? "")))

/** Sum of the counter series `name` whose tags include `tags`. */
export const counter = (name: string, tags: MetricTags = {}) =>
  Effect.map(Effect.flatMap(MetricsRegistry, (m) => m.snapshot), (samples) =>
    samples
      .filter((s) => s._tag === "Counter" && s.name === name && Object.entries(tags).every(([k, v]) => s.tags[k] === v))
      .reduce((n, s) => n + (s._tag === "Counter" ? s.value : 0), 0))

/** Number of observations of the histogram series `name` whose tags include `tags`. */
export const observations = (name: string, tags: MetricTags = {}) =>
  Effect.map(Effect.flatMap(MetricsRegistry, (m) => m.snapshot), (samples) =>
    samples
      .filter((s) => s._tag === "Histogram" && s.name === name && Object.entries(tags).every(([k, v]) => s.tags[k] === v))
      .reduce((n, s) => n + (s._tag === "Histogram" ? s.count : 0), 0))

/** Subscribes now; the returned array fills with every event published until the scope closes. */
export const recordEvents: Effect.Effect<Array<BackendEvent>, never, BackendEvents | Scope.Scope> = Effect.gen(function*() {
  const events = yield* BackendEvents
  const stream = yield* events.subscribe
  const seen: Array<BackendEvent> = []
  yield* Effect.forkScoped(Stream.runForEach(stream, (e) => Effect.sync(() => seen.push(e))))
  return seen
})

/** Waits (at most a few seconds) until `seen` holds an event matching `p`, and returns it; fails the test otherwise. */
export const awaitEvent = <A extends BackendEvent>(seen: ReadonlyArray<BackendEvent>, p: (e: BackendEvent) => e is A) =>
  Effect.suspend(() => {
    const found = seen.find(p)
    return found === undefined ? Effect.fail("not yet" as const) : Effect.succeed(found)
  }).pipe(
    Effect.retry(Schedule.spaced("5 millis").pipe(Schedule.upTo("5 seconds"))),
    Effect.catchAll(() => Effect.dieMessage("the expected event was not published"))
  )

/** Registers a test (`it.effect` or `it.scoped`) unless the server is skipped or lacks a capability; the reason shows in the title. */
export type Gate<R> = (...conditions: ReadonlyArray<Capability | string | undefined>) => Vitest.Test<R>

/**
 * Registers `body` once per candidate server, sharing `layerOf(server)`
 * across its tests. For a server that cannot run here the layer is never
 * built and every test is registered skipped with the reason.
 */
export const eachServer = <ROut, E>(
  title: string,
  layerOf: (c: Harness.Candidate) => Layer.Layer<ROut, E>,
  body: (tests: { readonly effect: Gate<ROut>; readonly scoped: Gate<ROut | Scope.Scope> }, c: Harness.Candidate) => void
): void => {
  for (const c of Harness.candidates) {
    const name = `${title} on ${c.name}`
    const register = (it: Vitest.MethodsNonLive<ROut, true>) =>
      body({
        effect: (...conditions) => gate(it.effect, c.skip, ...conditions),
        scoped: (...conditions) => gate(it.scoped, c.skip, ...conditions)
      }, c)
    if (c.skip !== undefined) {
      describe(name, () => register(baseIt as unknown as Vitest.MethodsNonLive<ROut, true>))
    } else {
      sharedLayer(layerOf(c), { excludeTestServices: true, timeout: "60 seconds" })(name, register)
    }
  }
}
