import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as MemoryKeyValueStore from "../../../src/backends/memory/MemoryKeyValueStore.js"
import * as RangeSet from "../../../src/core/RangeSet.js"
import { KeyValueStore } from "../../../src/ports/KeyValueStore.js"
import { RangeTracker } from "../../../src/ports/RangeTracker.js"
import * as KvRangeTracker from "../../../src/kit/KvRangeTracker.js"
import { testRangeTracker } from "../../../src/testing/RangeTracker.js"

testRangeTracker("kv over memory", KvRangeTracker.layer.pipe(Layer.provide(MemoryKeyValueStore.layer)))

const s = RangeSet.unsafeSpan
const both = KvRangeTracker.layer.pipe(Layer.provideMerge(MemoryKeyValueStore.layer))

describe("KvRangeTracker", () => {
  it("encodes sets compactly and decodes them back", () => {
    const sets = [
      [],
      [s(0, 1)],
      [s(0, 4), s(8, 12)],
      [s(127, 128), s(300, 16_384), s(2 ** 40, 2 ** 40 + 1), s(Number.MAX_SAFE_INTEGER - 1, Number.MAX_SAFE_INTEGER)]
    ]
    for (const set of sets) {
      const bytes = KvRangeTracker.encodeRanges(set)
      expect(KvRangeTracker.decodeRanges(bytes)).toEqual(set)
    }
    // A version byte and two one-byte varints per small span.
    expect(KvRangeTracker.encodeRanges([s(0, 4), s(8, 12)]).length).toBe(5)
  })

  it("rejects bytes that are not a normalized set", () => {
    const bad = [
      new Uint8Array(0),
      Uint8Array.of(2, 0, 1), // unknown version
      Uint8Array.of(1, 0), // truncated
      Uint8Array.of(1, 0, 0x80), // unterminated varint
      Uint8Array.of(1, 0, 0), // empty span
      Uint8Array.of(1, 0, 1, 0, 1), // adjacent spans are not normalized
      Uint8Array.of(1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 1) // past 2^53
    ]
    for (const bytes of bad) expect(KvRangeTracker.decodeRanges(bytes), String(bytes)).toBeUndefined()
  })

  it.effect("stores the set under ranges/<id>, and clear deletes the key", () =>
    Effect.gen(function*() {
      const tracker = yield* RangeTracker
      const kv = yield* KeyValueStore
      yield* tracker.merge("up-1", s(8, 12))
      yield* tracker.merge("up-1", s(0, 4))
      const stored = yield* kv.get("ranges/up-1")
      expect(Option.map(stored, KvRangeTracker.decodeRanges)).toEqual(Option.some([s(0, 4), s(8, 12)]))
      yield* tracker.clear("up-1")
      expect(Option.isNone(yield* kv.get("ranges/up-1"))).toBe(true)
    }).pipe(Effect.provide(both)))

  it.effect("a corrupted record fails with Corrupted instead of being overwritten", () =>
    Effect.gen(function*() {
      const tracker = yield* RangeTracker
      const kv = yield* KeyValueStore
      yield* kv.put("ranges/broken", Uint8Array.of(9, 9, 9))
      for (const effect of [tracker.current("broken"), tracker.merge("broken", s(0, 1))]) {
        const error = yield* Effect.flip(effect)
        expect(error.reason).toBe("Corrupted")
      }
      expect(Option.map(yield* kv.get("ranges/broken"), (b) => Array.from(b))).toEqual(Option.some([9, 9, 9]))
    }).pipe(Effect.provide(both)))

  it.effect("an id too long once namespaced fails with InvalidInput", () =>
    Effect.gen(function*() {
      const tracker = yield* RangeTracker
      const error = yield* Effect.flip(tracker.current("x".repeat(1020)))
      expect(error.reason).toBe("InvalidInput")
      expect(yield* tracker.current("x".repeat(1024 - "ranges/".length))).toEqual([])
    }).pipe(Effect.provide(both)))

  it.effect("merge retries when another writer wins the compareAndSet race", () =>
    Effect.gen(function*() {
      const tracker = yield* RangeTracker
      // A store whose first compareAndSet loses: another writer merged [100, 110) in between.
      const inner = yield* KeyValueStore
      let raced = false
      const racing = KeyValueStore.of({
        ...inner,
        compareAndSet: (key, expected, next) =>
          raced
            ? inner.compareAndSet(key, expected, next)
            : Effect.andThen(
              Effect.andThen(Effect.sync(() => (raced = true)), tracker.merge("race", s(100, 110))),
              inner.compareAndSet(key, expected, next)
            )
      })
      const racer = yield* KvRangeTracker.make.pipe(Effect.provideService(KeyValueStore, racing))
      const result = yield* racer.merge("race", s(0, 10))
      expect(result.map(String)).toEqual(["[0, 10)", "[100, 110)"])
      expect((yield* tracker.current("race")).map(String)).toEqual(["[0, 10)", "[100, 110)"])
    }).pipe(Effect.provide(both)))
})
