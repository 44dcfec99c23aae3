/**
 * The BlobStore protocol over a scripted Raw: what it checks before and
 * after the backend's storage decisions, and what it reports, whatever the
 * backend does (a backend that returns too few or too many bytes, one that
 * must never see a mismatching put published).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Sink from "effect/Sink"
import * as Stream from "effect/Stream"
import { createHash } from "node:crypto"
import { BinaryKey } from "../../src/core/BinaryKey.js"
import * as BlobLocator from "../../src/core/BlobLocator.js"
import { BlobError } from "../../src/core/Errors.js"
import { BackendEvents, ObjectDeleted } from "../../src/ports/BackendEvents.js"
import { MetricsRegistry } from "../../src/ports/MetricsRegistry.js"
import * as BlobStoreProtocol from "../../src/kit/BlobStoreProtocol.js"
import * as Events from "../../src/kit/Events.js"
import * as MetricKeys from "../../src/kit/MetricKeys.js"
import * as Metrics from "../../src/kit/Metrics.js"
import { chunked, collect, randomBytes, sameBytes } from "../../src/testing/bytes.js"

const Services = Layer.merge(Metrics.layer, Events.layer)

const keyOf = (bytes: Uint8Array) =>
  new BinaryKey({ algorithm: "sha256", digest: createHash("sha256").update(bytes).digest("hex"), size: bytes.length })

const locator = new BlobLocator.BlobLocator({ scheme: "mem", bucket: "b", path: "x" })

/** A Raw holding one blob whose stored bytes are `stored` (possibly not what its key says), recording what the protocol asks. */
const scripted = (stored: Uint8Array, options: { readonly deduplicated?: boolean; readonly existed?: boolean } = {}) => {
  const log: Array<string> = []
  const raw: BlobStoreProtocol.Raw = {
    backend: "scripted",
    stage: (plan) =>
      Effect.gen(function*() {
        log.push(`stage ${plan.algorithm} ${plan.maxSize}`)
        yield* Effect.addFinalizer((exit) => Effect.sync(() => log.push(`closed ${exit._tag}`)))
        let received = 0
        return {
          sink: Sink.forEach((c: Uint8Array) =>
            Effect.sync(() => {
              received += c.length
            })
          ),
          publish: (key) =>
            Effect.sync(() => {
              log.push(`publish ${key.size} after ${received}`)
              const deduplicated = options.deduplicated ?? false
              return { locator, deduplicated, bytesWritten: deduplicated ? 0 : key.size }
            })
        }
      }),
    read: (_, { end, start }) => Stream.make(stored.slice(start, Math.min(end, stored.length))),
    stat: (key) => Effect.succeed(Option.some({ key, size: key.size, locator: Option.some(locator), createdAt: Option.none() })),
    delete: () => Effect.succeed(options.existed ?? true),
    list: Stream.empty
  }
  return { log, raw }
}

const counterOf = (name: string) =>
  Effect.map(Effect.flatMap(MetricsRegistry, (m) => m.snapshot), (samples) =>
    samples.filter((s) => s._tag === "Counter" && s.name === name && s.tags.backend === "scripted")
      .reduce((n, s) => n + (s._tag === "Counter" ? s.value : 0), 0))

const sentinel = new ObjectDeleted({ backend: "sentinel", at: new Date(0), locator: "mem://b/end" })

/** Subscribes now; `published` yields every event published since (a sentinel marks where they end). */
const recordEvents = Effect.gen(function*() {
  const events = yield* BackendEvents
  const subscription = yield* events.subscribe
  return Effect.gen(function*() {
    yield* events.publish(sentinel)
    const all = yield* Stream.runCollect(Stream.takeUntil(subscription, (e) => e === sentinel))
    return Chunk.toArray(all).filter((e) => e !== sentinel)
  })
})

describe("BlobStoreProtocol", () => {
  it.scoped("a put is hashed, published once under its key, reported, and its staging scope closed", () =>
    Effect.gen(function*() {
      const published = yield* recordEvents
      const bytes = randomBytes(10_000, 1)
      const { log, raw } = scripted(bytes)
      const store = yield* BlobStoreProtocol.make(raw)
      const result = yield* Stream.run(chunked(bytes, { min: 0, max: 700 }), store.put())
      expect(String(result.key)).toBe(String(keyOf(bytes)))
      expect(log).toEqual(["stage sha256 Infinity", "publish 10000 after 10000", "closed Success"])
      expect(yield* counterOf(MetricKeys.bytesWritten)).toBe(10_000)
      expect(yield* counterOf(MetricKeys.bytesIngested)).toBe(10_000)
      expect(yield* counterOf(MetricKeys.dedupHits)).toBe(0)
      expect((yield* published).filter((e) => e._tag === "BlobStored").map((e) => e._tag === "BlobStored" && e.key)).toEqual([String(result.key)])
    }).pipe(Effect.provide(Services)))

  it.effect("a deduplicated put counts a hit and no bytes written", () =>
    Effect.gen(function*() {
      const bytes = randomBytes(5000, 2)
      const store = yield* BlobStoreProtocol.make(scripted(bytes, { deduplicated: true }).raw)
      expect((yield* Stream.run(Stream.make(bytes), store.put())).deduplicated).toBe(true)
      expect([yield* counterOf(MetricKeys.dedupHits), yield* counterOf(MetricKeys.bytesWritten)]).toEqual([1, 0])
    }).pipe(Effect.provide(Services)))

  it.effect("an expected key that does not match, or content over maxSize, is never published", () =>
    Effect.gen(function*() {
      const bytes = randomBytes(5000, 3)
      const { log, raw } = scripted(bytes)
      const store = yield* BlobStoreProtocol.make(raw)
      const other = keyOf(randomBytes(5000, 4))
      const mismatch = yield* Effect.flip(Stream.run(Stream.make(bytes), store.put({ expectedKey: other })))
      expect(mismatch.reason).toBe("InvalidInput")
      const over = yield* Effect.flip(Stream.run(chunked(bytes), store.put({ maxSize: 4999 })))
      expect(over.reason).toBe("InvalidInput")
      expect(log.filter((l) => l.startsWith("publish"))).toEqual([])
      expect(log.filter((l) => l.startsWith("closed"))).toEqual(["closed Failure", "closed Failure"])
      expect(yield* counterOf(MetricKeys.backendFailures)).toBe(2)
    }).pipe(Effect.provide(Services)))

  it.effect("ranged reads: a body shorter or longer than the range fails with Corrupted", () =>
    Effect.gen(function*() {
      const bytes = randomBytes(1000, 5)
      const key = keyOf(bytes)
      const exact = yield* BlobStoreProtocol.make(scripted(bytes).raw)
      expect(sameBytes(yield* collect(exact.get(key, { start: 10, end: 500 })), bytes.subarray(10, 500))).toBe(true)
      const short = yield* BlobStoreProtocol.make(scripted(bytes.subarray(0, 400)).raw)
      expect((yield* Effect.flip(collect(short.get(key, { start: 10, end: 500 })))).reason).toBe("Corrupted")
      // A backend answering more than asked (a server ignoring the range) is caught too.
      const long: BlobStoreProtocol.Raw = { ...scripted(bytes).raw, read: () => Stream.make(bytes) }
      const loose = yield* BlobStoreProtocol.make(long)
      expect((yield* Effect.flip(collect(loose.get(key, { start: 10, end: 500 })))).reason).toBe("Corrupted")
      expect(yield* counterOf(MetricKeys.bytesRead)).toBe(490 + 390 + 1000)
    }).pipe(Effect.provide(Services)))

  it.effect("full reads are re-hashed: different bytes of the right length fail with Corrupted", () =>
    Effect.gen(function*() {
      const bytes = randomBytes(1000, 6)
      const flipped = Uint8Array.from(bytes)
      flipped[999] = flipped[999]! ^ 1
      const store = yield* BlobStoreProtocol.make(scripted(flipped).raw)
      const error = yield* Effect.flip(collect(store.get(keyOf(bytes))))
      expect([error._tag, error.reason, error.backend]).toEqual(["BlobError", "Corrupted", "scripted"])
    }))

  it.scoped("delete publishes BlobDeleted only when the backend says the blob may have existed", () =>
    Effect.gen(function*() {
      const published = yield* recordEvents
      const bytes = randomBytes(10, 7)
      yield* (yield* BlobStoreProtocol.make(scripted(bytes, { existed: false }).raw)).delete(keyOf(bytes))
      yield* (yield* BlobStoreProtocol.make(scripted(bytes, { existed: true }).raw)).delete(keyOf(bytes))
      expect((yield* published).filter((e) => e._tag === "BlobDeleted")).toHaveLength(1)
      // A malformed key never reaches the backend.
      const bad = new BinaryKey({ algorithm: "sha256", digest: "z".repeat(64), size: 1 }, true)
      expect(yield* Effect.flip((yield* BlobStoreProtocol.make(scripted(bytes).raw)).delete(bad))).toBeInstanceOf(BlobError)
    }).pipe(Effect.provide(Services)))
})
