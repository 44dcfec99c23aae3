import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as MemoryKeyValueStore from "../../../src/backends/memory/MemoryKeyValueStore.js"
import * as KvKey from "../../../src/core/KvKey.js"
import { KeyValueStore } from "../../../src/ports/KeyValueStore.js"
import { utf8 } from "../../../src/testing/bytes.js"
import { testKeyValueStore } from "../../../src/testing/KeyValueStore.js"

testKeyValueStore("memory", MemoryKeyValueStore.layer)

describe("MemoryKeyValueStore", () => {
  const keysOf = (kv: KeyValueStore["Type"], prefix: string) =>
    Effect.map(Stream.runCollect(kv.list(prefix)), (c) => Chunk.toReadonlyArray(c).map(([k]) => k))

  // The sorted index is maintained lazily (pending inserts, tombstones): interleave
  // writes, deletes, re-inserts and listings and compare with a plain model each time.
  it.effect("listing stays exact under interleaved inserts, deletes and re-inserts", () =>
    Effect.gen(function*() {
      const kv = yield* KeyValueStore
      const model = new Map<string, string>()
      let x = 12345
      const next = (bound: number) => {
        x = (Math.imul(x, 1103515245) + 12345) >>> 0
        return x % bound
      }
      for (let round = 0; round < 40; round++) {
        // Small and large batches exercise both the one-by-one insert and the merge.
        const ops = round % 5 === 0 ? 400 : 1 + next(30)
        for (let i = 0; i < ops; i++) {
          const key = `r/${next(600).toString(36)}${next(3) === 0 ? "\u{1F600}" : ""}`
          if (next(3) === 0) {
            model.delete(key)
            yield* kv.delete(key)
          } else {
            model.set(key, `${round}`)
            yield* kv.put(key, utf8(`${round}`))
          }
        }
        const expected = [...model.keys()].sort(KvKey.compare)
        expect(yield* keysOf(kv, "r/")).toEqual(expected)
        const sub = `r/${next(36).toString(36)}`
        expect(yield* keysOf(kv, sub)).toEqual(expected.filter((k) => k.startsWith(sub)))
      }
      const values = Chunk.toReadonlyArray(yield* Stream.runCollect(kv.list("r/")))
      for (const [k, v] of values) expect(new TextDecoder().decode(v)).toBe(model.get(k))
    }).pipe(Effect.provide(MemoryKeyValueStore.layer)))

  it.effect("a listing in progress sees keys written ahead of its current page and skips deleted ones", () =>
    Effect.gen(function*() {
      const kv = yield* KeyValueStore
      yield* Effect.forEach(Array.from({ length: 600 }, (_, i) => `p/${String(i).padStart(4, "0")}`), (k) =>
        kv.put(k, utf8("v")), { discard: true })
      let mutated = false
      const seen = yield* kv.list("p/").pipe(
        Stream.tap(([k]) =>
          k === "p/0010" && !mutated
            ? Effect.andThen(Effect.sync(() => (mutated = true)), Effect.all([kv.delete("p/0500"), kv.put("p/0450x", utf8("n"))]))
            : Effect.void
        ),
        Stream.map(([k]) => k),
        Stream.runCollect
      )
      const keys = Chunk.toReadonlyArray(seen)
      expect(keys).toEqual([...keys].sort(KvKey.compare))
      expect(keys).not.toContain("p/0500")
      expect(keys).toContain("p/0450x")
      expect(keys).toHaveLength(600)
    }).pipe(Effect.provide(MemoryKeyValueStore.layer)))

  it.effect("each layer build is a separate, empty store", () =>
    Effect.gen(function*() {
      yield* Effect.flatMap(KeyValueStore, (kv) => kv.put("a/b", utf8("x"))).pipe(
        Effect.provide(MemoryKeyValueStore.layer)
      )
      const value = yield* Effect.flatMap(KeyValueStore, (kv) => kv.get("a/b")).pipe(
        Effect.provide(MemoryKeyValueStore.layer)
      )
      expect(Option.isNone(value)).toBe(true)
    }))
})
