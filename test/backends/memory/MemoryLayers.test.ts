import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { MemoryBlobStore, MemoryKeyValueStore, MemoryLayers, MemoryObjectStore } from "../../../src/backends/memory/index.js"
import * as BlobLocator from "../../../src/core/BlobLocator.js"
import * as RangeSet from "../../../src/core/RangeSet.js"
import { BackendEvents } from "../../../src/ports/BackendEvents.js"
import { BlobStore } from "../../../src/ports/BlobStore.js"
import { KeyValueStore } from "../../../src/ports/KeyValueStore.js"
import type { MetricSample } from "../../../src/ports/MetricsRegistry.js"
import { MetricsRegistry } from "../../../src/ports/MetricsRegistry.js"
import { ImmutableObjectStore, MutableObjectStore } from "../../../src/ports/ObjectStore.js"
import { RangeTracker } from "../../../src/ports/RangeTracker.js"
import { ReplicaIndex } from "../../../src/ports/ReplicaIndex.js"
import * as KvRangeTracker from "../../../src/kit/KvRangeTracker.js"
import * as KvReplicaIndex from "../../../src/kit/KvReplicaIndex.js"
import * as MetricKeys from "../../../src/kit/MetricKeys.js"
import { collect, randomBytes, sameBytes, utf8 } from "../../../src/testing/bytes.js"

const loc = (text: string) => Either.getOrThrow(BlobLocator.parse(text))

const find = (samples: ReadonlyArray<MetricSample>, name: string, tags: Record<string, string>) =>
  samples.filter((s) => s.name === name && Object.entries(tags).every(([k, v]) => s.tags[k] === v))

const counterValue = (samples: ReadonlyArray<MetricSample>, name: string, tags: Record<string, string>) =>
  find(samples, name, tags).reduce((n, s) => n + (s._tag === "Counter" ? s.value : 0), 0)

describe("MemoryLayers.live", () => {
  it.effect("provides every port, with the range and replica records in the exposed key-value store", () =>
    Effect.gen(function*() {
      const blobs = yield* BlobStore
      const objects = yield* MutableObjectStore
      const readOnly = yield* ImmutableObjectStore
      const kv = yield* KeyValueStore
      const ranges = yield* RangeTracker
      const replicas = yield* ReplicaIndex

      const bytes = randomBytes(1000, 5)
      const { key, locator } = yield* Stream.run(Stream.make(bytes), blobs.put())
      expect(sameBytes(yield* collect(blobs.get(key)), bytes)).toBe(true)

      const target = loc("mem://objects/a/b")
      yield* Stream.run(Stream.make(bytes), objects.put(target))
      // The read-only view is the same store.
      expect(Option.map(yield* readOnly.head(target), (s) => s.size)).toEqual(Option.some(1000))

      yield* ranges.merge("upload-1", RangeSet.unsafeSpan(0, 10))
      yield* replicas.add(key, locator)
      yield* replicas.add(key, target)
      const namespaces = Chunk.toReadonlyArray(yield* Stream.runCollect(kv.list(""))).map(([k]) => k.split("/")[0])
      expect(namespaces).toEqual(["ranges", "replicas"])
      expect((yield* replicas.replicas(key)).map(String)).toEqual([String(locator), String(target)].sort())
    }).pipe(Effect.provide(MemoryLayers.live)))

  it.effect("every backend records into the one shared MetricsRegistry", () =>
    Effect.gen(function*() {
      const registry = yield* MetricsRegistry
      const blobs = yield* BlobStore
      const kv = yield* KeyValueStore
      const objects = yield* MutableObjectStore
      const bytes = randomBytes(3000, 6)
      yield* Stream.run(Stream.make(bytes.subarray(0, 1000), bytes.subarray(1000)), blobs.put())
      yield* Stream.run(Stream.make(bytes), blobs.put())
      yield* kv.put("ns/key", utf8("v"))
      yield* Effect.flip(kv.get(""))
      yield* Stream.run(Stream.make(bytes), objects.put(loc("mem://o/x")))
      const samples = yield* registry.snapshot
      const memory = { backend: "memory" }
      expect(counterValue(samples, MetricKeys.bytesIngested, memory)).toBe(6000)
      expect(counterValue(samples, MetricKeys.blocksIngested, memory)).toBe(2)
      expect(counterValue(samples, MetricKeys.dedupHitsTotal, memory)).toBe(1)
      expect(find(samples, MetricKeys.uploadDurationSeconds, memory)).toHaveLength(1)
      expect(
        counterValue(samples, MetricKeys.backendOperationsTotal, { port: "BlobStore", method: "put", outcome: "success" })
      ).toBe(2)
      expect(
        counterValue(samples, MetricKeys.backendOperationsTotal, { port: "KeyValueStore", method: "put", outcome: "success" })
      ).toBe(1)
      expect(
        counterValue(samples, MetricKeys.backendFailuresTotal, { port: "KeyValueStore", method: "get", reason: "InvalidInput" })
      ).toBe(1)
      // The object store built by the same layer reports into the same registry.
      expect(find(samples, MetricKeys.backendLatencySeconds, { backend: "memory", method: "put" }).length).toBeGreaterThanOrEqual(2)
    }).pipe(Effect.provide(MemoryLayers.live)))

  it.scoped("publishes blob events on the shared bus", () =>
    Effect.gen(function*() {
      const bus = yield* BackendEvents
      const blobs = yield* BlobStore
      const events = yield* bus.subscribe
      const bytes = randomBytes(500, 8)
      const { key } = yield* Stream.run(Stream.make(bytes), blobs.put())
      yield* Stream.run(Stream.make(bytes), blobs.put())
      yield* blobs.delete(key)
      // A second delete finds nothing: nothing happened, nothing is published.
      yield* blobs.delete(key)
      yield* Stream.run(Stream.make(bytes), blobs.put({ algorithm: "blake3" }))
      const seen = Chunk.toReadonlyArray(yield* Stream.runCollect(Stream.take(events, 4)))
      expect(seen.map((e) => e._tag)).toEqual(["BlobStored", "BlobStored", "BlobDeleted", "BlobStored"])
      const [first, second, deleted] = seen as [any, any, any]
      expect([first.key, first.deduplicated, first.size, first.backend]).toEqual([String(key), false, 500, "memory"])
      expect(first.locator).toBe(`mem://blobs/sha256/${key.digest}`)
      expect(second.deduplicated).toBe(true)
      expect(deleted.key).toBe(String(key))
      expect(seen[3]!._tag === "BlobStored" && seen[3]!.key.startsWith("blake3:")).toBe(true)
    }).pipe(Effect.provide(MemoryLayers.live)))

  it.effect("each build is a fresh, empty set of stores", () =>
    Effect.gen(function*() {
      yield* Effect.flatMap(KeyValueStore, (kv) => kv.put("a/b", utf8("x"))).pipe(Effect.provide(MemoryLayers.live))
      const after = yield* Effect.flatMap(KeyValueStore, (kv) => kv.get("a/b")).pipe(Effect.provide(MemoryLayers.live))
      expect(Option.isNone(after)).toBe(true)
    }))
})

describe("per-port memory layers", () => {
  it.effect("MemoryLayers.metadata shares one key-value store between the three metadata ports", () =>
    Effect.gen(function*() {
      const ranges = yield* RangeTracker
      const kv = yield* KeyValueStore
      yield* ranges.merge("u", RangeSet.unsafeSpan(0, 1))
      expect(Option.isSome(yield* kv.get("ranges/u"))).toBe(true)
    }).pipe(Effect.provide(MemoryLayers.metadata)))

  it.effect("the per-port layers provide every port, and share the key-value store within one build", () =>
    Effect.gen(function*() {
      const all = Layer.mergeAll(
        MemoryKeyValueStore.layer,
        MemoryBlobStore.layer,
        MemoryObjectStore.layer,
        KvRangeTracker.layer.pipe(Layer.provide(MemoryKeyValueStore.layer)),
        KvReplicaIndex.layer.pipe(Layer.provide(MemoryKeyValueStore.layer))
      )
      yield* Effect.gen(function*() {
        const ranges = yield* RangeTracker
        const kv = yield* KeyValueStore
        yield* ranges.merge("u", RangeSet.unsafeSpan(0, 1))
        // Layers are memoized within one build: the tracker's store is the one MemoryKeyValueStore.layer gives.
        expect(Option.isSome(yield* kv.get("ranges/u"))).toBe(true)
        const blobs = yield* BlobStore
        const { key } = yield* Stream.run(Stream.make(utf8("x")), blobs.put())
        expect(Option.isSome(yield* blobs.stat(key))).toBe(true)
        expect(yield* (yield* ReplicaIndex).replicas(key)).toEqual([])
        expect(Option.isNone(yield* (yield* ImmutableObjectStore).head(loc("mem://o/none")))).toBe(true)
      }).pipe(Effect.provide(all))
    }))
})
