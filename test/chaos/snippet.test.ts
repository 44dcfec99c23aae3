/** The snippet of docs/reliability.md ("Using it in an app's tests"), over the sources: the doc stays true. */
import { expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { BlobStore, CasBlobStore, Events, Metrics, Retry } from "../../src/index.js"
import { MemoryLayers, MemoryObjectStore } from "../../src/backends/memory/index.js"
import { Chaos } from "../../src/testing/index.js"

// Every put fails at one of its first chunks; a tenth of the reads come back damaged.
const chaos = Chaos.make({ seed: 7, failure: { put: 1 }, corruption: 0.1 })
const Store = CasBlobStore.layer().pipe(
  Layer.provide(Chaos.layerObjectStore(chaos).pipe(Layer.provide(MemoryObjectStore.layer))),
  Layer.provide(MemoryLayers.metadata),
  Layer.provide(Layer.merge(Metrics.layer, Events.layer))
)

it.live("a put that fails is typed and leaves nothing behind", () =>
  Effect.gen(function*() {
    const store = yield* BlobStore
    const bytes = new TextEncoder().encode("hello")
    const put = Stream.run(Stream.make(bytes), store.put())
    // The caller still has its source, so it could repeat the put: Retry.retryTransient().
    const error = yield* Effect.flip(put.pipe(Retry.retryTransient({ schedule: Retry.policy({ maxRetries: 2 }) })))
    expect(error.isTransient).toBe(true)
    chaos.active = false
    const { key } = yield* put
    expect(Option.isSome(yield* store.stat(key))).toBe(true)
    expect(chaos.stats.failuresByKind.put).toBe(3)
  }).pipe(Effect.provide(Store)))
