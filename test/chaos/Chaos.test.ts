/**
 * The chaos wrapper itself: the same seed gives the same faults whatever the
 * order of calls on other keys; a failed call never reaches the store;
 * damaged bodies differ from the stored bytes without touching them;
 * `active = false` lets everything through.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as MemoryKeyValueStore from "../../src/backends/memory/MemoryKeyValueStore.js"
import * as MemoryObjectStore from "../../src/backends/memory/MemoryObjectStore.js"
import * as BlobLocator from "../../src/core/BlobLocator.js"
import * as Chaos from "../../src/kit/Chaos.js"
import { KeyValueStore } from "../../src/ports/KeyValueStore.js"
import { collect, randomBytes, sameBytes } from "../../src/testing/bytes.js"

const locator = (path: string) => Either.getOrThrow(BlobLocator.make("mem", "chaos", path))
const utf8 = (s: string) => new TextEncoder().encode(s)

/** Which of 200 KV gets (over 20 keys, in `order`) failed, by key and attempt. */
const failuresOf = (seed: number, order: ReadonlyArray<number>) =>
  Effect.gen(function*() {
    const chaos = Chaos.make({ seed, failure: 0.3 })
    const kv = chaos.keyValueStore(yield* KeyValueStore)
    const failed = new Set<string>()
    const attempts = new Map<number, number>()
    for (const k of order) {
      const n = attempts.get(k) ?? 0
      attempts.set(k, n + 1)
      const r = yield* Effect.either(kv.get(`conformance/k${k}`))
      if (Either.isLeft(r)) failed.add(`${k}#${n}:${r.left.reason}`)
    }
    return failed
  }).pipe(Effect.provide(MemoryKeyValueStore.layer))

describe("Chaos", () => {
  const order = Array.from({ length: 200 }, (_, i) => i % 20)
  const shuffled = [...order].sort((a, b) => ((a * 7) % 13) - ((b * 7) % 13) || a - b)

  it.effect("the same seed gives the same faults per key, whatever the interleaving; another seed others", () =>
    Effect.gen(function*() {
      const a = yield* failuresOf(5, order)
      const b = yield* failuresOf(5, shuffled)
      const c = yield* failuresOf(6, order)
      expect(a.size).toBeGreaterThan(20)
      expect([...b].sort()).toEqual([...a].sort())
      expect([...c].sort()).not.toEqual([...a].sort())
    }))

  it.effect("a failed write never reaches the store; active = false lets every call through", () =>
    Effect.gen(function*() {
      const inner = yield* KeyValueStore
      const chaos = Chaos.make({ seed: 1, failure: { write: 1 } })
      const kv = chaos.keyValueStore(inner)
      const error = yield* Effect.flip(kv.put("conformance/x", utf8("v")))
      expect(error._tag).toBe("MetadataError")
      expect(error.backend).toBe("chaos")
      expect(error.isTransient).toBe(true)
      expect(Option.isNone(yield* inner.get("conformance/x"))).toBe(true)
      expect(Chaos.failures(chaos.stats)).toBe(1)
      chaos.active = false
      yield* kv.put("conformance/x", utf8("v"))
      expect(Option.isSome(yield* inner.get("conformance/x"))).toBe(true)
    }).pipe(Effect.provide(MemoryKeyValueStore.layer)))

  it.effect("damaged reads differ from the stored bytes (cut short or one bit flipped); the store's bytes stay intact", () =>
    Effect.gen(function*() {
      const store = yield* MemoryObjectStore.make
      const bytes = randomBytes(64 * 1024, 3)
      yield* store.write(locator("a"), bytes)
      const chaos = Chaos.make({ seed: 9, corruption: 1 })
      const faulty = chaos.objectStore(store)
      for (let i = 0; i < 20; i++) {
        const back = yield* collect(faulty.get(locator("a")))
        expect(sameBytes(back, bytes)).toBe(false)
        if (back.length === bytes.length) {
          const differing = back.reduce((n, x, j) => n + (x === bytes[j] ? 0 : 1), 0)
          expect(differing).toBe(1)
        } else {
          expect(back.length).toBeLessThan(bytes.length)
        }
      }
      expect(chaos.stats.truncated + chaos.stats.flipped).toBe(20)
      expect(chaos.stats.truncated).toBeGreaterThan(0)
      expect(chaos.stats.flipped).toBeGreaterThan(0)
      expect(sameBytes(yield* collect(store.get(locator("a"))), bytes)).toBe(true)
    }))

  it.effect("a failing streaming put fails at its 1st-3rd chunk or its end, and stores nothing", () =>
    Effect.gen(function*() {
      const store = yield* MemoryObjectStore.make
      const faulty = Chaos.make({ seed: 4, failure: { put: 1 } }).objectStore(store)
      for (const chunks of [1, 2, 5]) {
        const input = Stream.fromIterable(Array.from({ length: chunks }, (_, i) => utf8(`chunk ${i}`)))
        const error = yield* Effect.flip(Stream.run(input, faulty.put(locator(`p${chunks}`))))
        expect(error.reason === "Unavailable" || error.reason === "Throttled" || error.reason === "Timeout").toBe(true)
      }
      const left = yield* Stream.runCollect(store.list(Either.getOrThrow(BlobLocator.makePrefix("mem", "chaos", ""))))
      expect(Chunk.size(left)).toBe(0)
    }))
})
