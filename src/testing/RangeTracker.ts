/**
 * Conformance suite for the RangeTracker port. Every backend that provides
 * RangeTracker runs it from its own test file (the KV-backed tracker runs
 * it over each KeyValueStore):
 *
 * ```ts
 * import { testRangeTracker } from "../../conformance/RangeTracker.js"
 * testRangeTracker("pg", PgRangeTracker.layer.pipe(Layer.provide(pg)))
 * testRangeTracker("kv over level", KvRangeTracker.layer.pipe(Layer.provide(level)))
 * ```
 *
 * The layer is shared by the suite's tests, each of which uses its own
 * random upload ids. Tests run with the live clock. `skipAll` registers
 * every test as skipped, with the reason in its title.
 *
 * Covers: an unknown id is empty; out-of-order, overlapping, adjacent and
 * re-sent spans merge into the normalized set, and `merge` returns what
 * `current` then reads; 50 concurrent fibers merging random spans end at
 * the normalization of all of them (no lost update); `clear` (also of an
 * unknown id) and independence of ids; ids that look like locators; invalid
 * ids and spans fail with MetadataError InvalidInput.
 */
import { describe, expect, it as baseIt, layer as sharedLayer, type Vitest } from "@effect/vitest"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as RangeSet from "../core/RangeSet.js"
import { RangeTracker } from "../ports/RangeTracker.js"
import { type Capabilities, gate } from "./capabilities.js"
import { expectInvalid, uniquePrefix } from "./KeyValueStore.js"

/** Optional features of a RangeTracker backend (none yet beyond `skipAll`). */
export interface RangeTrackerCapabilities extends Capabilities {}

const s = RangeSet.unsafeSpan
const pairs = (set: RangeSet.RangeSet) => set.map((x) => [x.start, x.end])

/** A small seeded generator, so that a failing run can be replayed. */
const lcg = (seed: number) => {
  let x = seed >>> 0
  return (bound: number): number => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0
    return x % bound
  }
}

/** Registers the RangeTracker conformance suite for one backend. */
export const testRangeTracker = <E>(
  name: string,
  layer: Layer.Layer<RangeTracker, E>,
  capabilities: RangeTrackerCapabilities = {}
): void => {
  const title = `RangeTracker[${name}]`
  if (capabilities.skipAll !== undefined) {
    // Registered as skipped (never run), so the layer is never built.
    describe(title, () => suite(baseIt as unknown as Vitest.MethodsNonLive<RangeTracker, true>, capabilities))
  } else {
    sharedLayer(layer, { excludeTestServices: true })(title, (it) => suite(it, capabilities))
  }
}

const suite = (it: Vitest.MethodsNonLive<RangeTracker, true>, capabilities: RangeTrackerCapabilities): void => {
  const test = gate(it.effect, capabilities.skipAll)

  test("an unknown id has no ranges", () =>
    Effect.gen(function*() {
      const tracker = yield* RangeTracker
      expect(yield* tracker.current(`${uniquePrefix("upload")}never`)).toEqual([])
    }))

  test("out-of-order, overlapping, adjacent and re-sent spans merge into the normalized set", () =>
    Effect.gen(function*() {
      const tracker = yield* RangeTracker
      const id = `${uniquePrefix("upload")}u`
      const steps: ReadonlyArray<readonly [RangeSet.Span, Array<Array<number>>]> = [
        [s(100, 200), [[100, 200]]],
        [s(0, 10), [[0, 10], [100, 200]]],
        [s(300, 400), [[0, 10], [100, 200], [300, 400]]],
        // Adjacent on both sides: half-open spans touching at 10 and 100 merge.
        [s(10, 100), [[0, 200], [300, 400]]],
        // Re-sent and contained spans change nothing.
        [s(0, 200), [[0, 200], [300, 400]]],
        [s(150, 160), [[0, 200], [300, 400]]],
        // Overlapping both neighbours swallows the gap.
        [s(190, 310), [[0, 400]]],
        [s(500, 501), [[0, 400], [500, 501]]],
        [s(401, 500), [[0, 400], [401, 501]]],
        [s(400, 401), [[0, 501]]]
      ]
      for (const [span, expected] of steps) {
        const merged = yield* tracker.merge(id, span)
        expect(pairs(merged), `after ${span}`).toEqual(expected)
        expect(pairs(yield* tracker.current(id)), `current after ${span}`).toEqual(expected)
        expect(RangeSet.isNormalized(merged)).toBe(true)
      }
    }))

  test("large offsets (past 4 GiB, up to 2^53) survive the round trip", () =>
    Effect.gen(function*() {
      const tracker = yield* RangeTracker
      const id = `${uniquePrefix("upload")}big`
      const max = Number.MAX_SAFE_INTEGER
      yield* tracker.merge(id, s(2 ** 32 - 1, 2 ** 32 + 5))
      yield* tracker.merge(id, s(max - 10, max))
      yield* tracker.merge(id, s(0, 1))
      expect(pairs(yield* tracker.current(id))).toEqual([[0, 1], [2 ** 32 - 1, 2 ** 32 + 5], [max - 10, max]])
    }))

  test("50 concurrent fibers merging random spans lose none of them", () =>
    Effect.gen(function*() {
      const tracker = yield* RangeTracker
      const id = `${uniquePrefix("upload")}concurrent`
      const next = lcg(20240611)
      const spans = Array.from({ length: 50 }, () => {
        const start = next(5000)
        return s(start, start + 1 + next(120))
      })
      const results = yield* Effect.forEach(spans, (span) => tracker.merge(id, span), { concurrency: "unbounded" })
      const expected = pairs(RangeSet.normalize(spans))
      expect(pairs(yield* tracker.current(id))).toEqual(expected)
      // Every merge returned a set containing its own span.
      spans.forEach((span, i) => expect(RangeSet.contains(results[i]!, span)).toBe(true))
    }), 120_000)

  test("clear forgets an upload, clearing an unknown id succeeds, ids are independent", () =>
    Effect.gen(function*() {
      const tracker = yield* RangeTracker
      const p = uniquePrefix("upload")
      yield* tracker.merge(`${p}a`, s(0, 10))
      yield* tracker.merge(`${p}b`, s(5, 6))
      // A sibling id sharing a prefix is a different upload.
      yield* tracker.merge(`${p}ab`, s(7, 8))
      yield* tracker.clear(`${p}a`)
      expect(yield* tracker.current(`${p}a`)).toEqual([])
      expect(pairs(yield* tracker.current(`${p}b`))).toEqual([[5, 6]])
      expect(pairs(yield* tracker.current(`${p}ab`))).toEqual([[7, 8]])
      yield* tracker.clear(`${p}a`)
      yield* tracker.clear(`${p}never`)
      // Merging after a clear starts from empty.
      expect(pairs(yield* tracker.merge(`${p}a`, s(20, 30)))).toEqual([[20, 30]])
    }))

  test("ids may be locator texts or contain any valid key characters", () =>
    Effect.gen(function*() {
      const tracker = yield* RangeTracker
      const p = uniquePrefix("upload")
      for (const id of [`s3://bucket/${p}path/to/obj`, `${p}it's 100%_\\ü😀`]) {
        expect(pairs(yield* tracker.merge(id, s(0, 3)))).toEqual([[0, 3]])
        expect(pairs(yield* tracker.current(id))).toEqual([[0, 3]])
        yield* tracker.clear(id)
        expect(yield* tracker.current(id)).toEqual([])
      }
    }))

  test("invalid ids and spans fail with MetadataError InvalidInput", () =>
    Effect.gen(function*() {
      const tracker = yield* RangeTracker
      const p = uniquePrefix("upload")
      for (const [what, id] of [["empty", ""], ["NUL", `${p}a\u0000`], ["lone surrogate", `${p}\uD800`], ["too long", "x".repeat(1025)]]) {
        yield* expectInvalid(tracker.current(id!), `current: ${what}`)
        yield* expectInvalid(tracker.merge(id!, s(0, 1)), `merge: ${what}`)
        yield* expectInvalid(tracker.clear(id!), `clear: ${what}`)
      }
      // The Span constructor checks each field, not their order: an empty or reversed span gets through it.
      const id = `${p}spans`
      yield* expectInvalid(tracker.merge(id, new RangeSet.Span({ start: 5, end: 5 }, true)), "empty span")
      yield* expectInvalid(tracker.merge(id, new RangeSet.Span({ start: 9, end: 5 }, true)), "reversed span")
      expect(yield* tracker.current(id)).toEqual([])
    }))
}
