import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as MemoryObjectStore from "../../../src/backends/memory/MemoryObjectStore.js"
import * as BlobLocator from "../../../src/core/BlobLocator.js"
import { BackendEvents } from "../../../src/ports/BackendEvents.js"
import { ImmutableObjectStore, MutableObjectStore } from "../../../src/ports/ObjectStore.js"
import * as Events from "../../../src/kit/Events.js"
import { chunked, collect, utf8 } from "../../../src/testing/bytes.js"
import { testMutableObjectStore } from "../../../src/testing/ObjectStore.js"

testMutableObjectStore("memory", MemoryObjectStore.layer, { scheme: "mem", bucket: "test" })

const at = (path: string) => Either.getOrThrow(BlobLocator.make("mem", "b", path))

describe("MemoryObjectStore", () => {
  it.effect("one instance sits behind both tags; each layer build is a fresh store", () =>
    Effect.gen(function*() {
      const seen = yield* Effect.gen(function*() {
        const mutable = yield* MutableObjectStore
        const immutable = yield* ImmutableObjectStore
        yield* Stream.run(chunked(utf8("shared")), mutable.put(at("x")))
        return yield* collect(immutable.get(at("x")))
      }).pipe(Effect.provide(MemoryObjectStore.layer))
      expect(new TextDecoder().decode(seen)).toBe("shared")
      const fresh = yield* Effect.flatMap(ImmutableObjectStore, (s) => s.head(at("x"))).pipe(
        Effect.provide(MemoryObjectStore.layer)
      )
      expect(fresh._tag).toBe("None")
    }))

  it.scoped("publishes ObjectWritten, ObjectCopied, ObjectDeleted and UploadAborted to BackendEvents", () =>
    Effect.gen(function*() {
      const events = yield* BackendEvents
      const subscription = yield* events.subscribe
      const store = yield* MemoryObjectStore.make
      yield* Stream.run(chunked(utf8("abc")), store.put(at("a")))
      yield* store.copy(at("a"), at("b"))
      yield* store.move(at("b"), at("c"))
      yield* store.delete(at("a"))
      const started = yield* Deferred.make<void>()
      const stuck = Stream.concat(
        chunked(utf8("partial")),
        Stream.fromEffect(Deferred.succeed(started, undefined)).pipe(Stream.drain, Stream.concat(Stream.never))
      )
      const fiber = yield* Effect.fork(Stream.run(stuck, store.put(at("d"))))
      yield* Deferred.await(started)
      yield* Fiber.interrupt(fiber)
      const seen = yield* Stream.runCollect(Stream.take(subscription, 6))
      expect(Chunk.toReadonlyArray(seen).map((e) => e._tag)).toEqual([
        "ObjectWritten",
        "ObjectCopied",
        "ObjectWritten",
        "ObjectCopied",
        "ObjectDeleted",
        "UploadAborted"
      ])
      const [written] = Chunk.toReadonlyArray(seen)
      expect(written).toMatchObject({ backend: "memory", locator: "mem://b/a", size: 3 })
    }).pipe(Effect.provide(Layer.fresh(Events.layer))))

  it.effect("get chunks are copies: mutating them does not change the stored object", () =>
    Effect.gen(function*() {
      const store = yield* MemoryObjectStore.make
      yield* Stream.run(chunked(utf8("immutable")), store.put(at("i")))
      const chunks = yield* Stream.runCollect(store.get(at("i")))
      for (const c of chunks) c.fill(0)
      expect(new TextDecoder().decode(yield* collect(store.get(at("i"))))).toBe("immutable")
    }))
})
