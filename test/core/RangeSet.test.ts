import { describe, expect, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as FastCheck from "effect/FastCheck"
import * as RangeSet from "../../src/core/RangeSet.js"

const s = RangeSet.unsafeSpan
const pairs = (set: RangeSet.RangeSet) => set.map((x) => [x.start, x.end])

// Arbitrary non-empty spans in a small universe, so that overlaps are common.
const spanArb = FastCheck.tuple(FastCheck.nat(200), FastCheck.integer({ min: 1, max: 40 })).map(([start, len]) =>
  s(start, start + len)
)
const setArb = FastCheck.array(spanArb, { maxLength: 12 }).map(RangeSet.normalize)

// Reference model: the set of covered byte offsets.
const bytesOf = (set: Iterable<RangeSet.Span>): Set<number> => {
  const out = new Set<number>()
  for (const x of set) for (let i = x.start; i < x.end; i++) out.add(i)
  return out
}

describe("Span", () => {
  it("is half-open and non-empty", () => {
    expect(s(0, 4).length).toBe(4)
    expect(Either.isLeft(RangeSet.span(4, 4))).toBe(true)
    expect(Either.isLeft(RangeSet.span(5, 4))).toBe(true)
    expect(Either.isLeft(RangeSet.span(-1, 4))).toBe(true)
    expect(Either.isLeft(RangeSet.span(0.5, 4))).toBe(true)
    expect(Either.isLeft(RangeSet.span(0, Number.NaN))).toBe(true)
    expect(() => new RangeSet.Span({ start: 9, end: 5 })).toThrow(/greater than start/)
  })
})

describe("RangeSet", () => {
  it("merges overlapping and adjacent spans, keeps gaps", () => {
    expect(pairs(RangeSet.normalize([s(10, 20), s(0, 5), s(5, 8), s(15, 25), s(30, 31)]))).toEqual([
      [0, 8],
      [10, 25],
      [30, 31]
    ])
    expect(pairs(RangeSet.merge([s(0, 4), s(8, 12)], s(4, 8)))).toEqual([[0, 12]])
    expect(pairs(RangeSet.merge([s(0, 4)], s(1, 2)))).toEqual([[0, 4]])
  })

  it("computes missing gaps and completeness", () => {
    const set = RangeSet.normalize([s(2, 4), s(6, 8)])
    expect(pairs(RangeSet.missing(set, 10))).toEqual([[0, 2], [4, 6], [8, 10]])
    expect(pairs(RangeSet.missing(set, 7))).toEqual([[0, 2], [4, 6]])
    expect(RangeSet.isComplete(set, 10)).toBe(false)
    expect(RangeSet.isComplete([s(0, 10)], 10)).toBe(true)
    expect(RangeSet.isComplete([], 0)).toBe(true)
    expect(pairs(RangeSet.missing([], 3))).toEqual([[0, 3]])
  })

  it("answers contains for spans and offsets", () => {
    const set = RangeSet.normalize([s(0, 4), s(6, 8)])
    expect(RangeSet.contains(set, s(1, 4))).toBe(true)
    expect(RangeSet.contains(set, s(3, 7))).toBe(false)
    expect(RangeSet.contains(set, 7)).toBe(true)
    expect(RangeSet.contains(set, 4)).toBe(false)
    expect(RangeSet.format(set)).toBe("[0, 4) [6, 8)")
  })

  it.prop("normalize yields a normalized set covering exactly the same bytes", [FastCheck.array(spanArb)], ([spans]) => {
    const set = RangeSet.normalize(spans)
    expect(RangeSet.isNormalized(set)).toBe(true)
    expect(bytesOf(set)).toEqual(bytesOf(spans))
    expect(RangeSet.coveredBytes(set)).toBe(bytesOf(spans).size)
  })

  it.prop("normalize is idempotent", [FastCheck.array(spanArb)], ([spans]) => {
    const once = RangeSet.normalize(spans)
    expect(pairs(RangeSet.normalize(once))).toEqual(pairs(once))
  })

  it.prop("union is commutative", [setArb, setArb], ([a, b]) => {
    expect(pairs(RangeSet.union(a, b))).toEqual(pairs(RangeSet.union(b, a)))
  })

  it.prop("union is associative", [setArb, setArb, setArb], ([a, b, c]) => {
    expect(pairs(RangeSet.union(RangeSet.union(a, b), c))).toEqual(pairs(RangeSet.union(a, RangeSet.union(b, c))))
  })

  it.prop("merging spans in any order gives the same set", [FastCheck.array(spanArb, { maxLength: 10 })], ([spans]) => {
    const forward = spans.reduce(RangeSet.merge, RangeSet.empty)
    const backward = [...spans].reverse().reduce(RangeSet.merge, RangeSet.empty)
    expect(pairs(forward)).toEqual(pairs(backward))
  })

  it.prop("missing is the exact complement within [0, total)", [setArb, FastCheck.nat(260)], ([set, total]) => {
    const gaps = RangeSet.missing(set, total)
    expect(RangeSet.isNormalized(gaps)).toBe(true)
    const covered = bytesOf(set)
    const expected = new Set<number>()
    for (let i = 0; i < total; i++) if (!covered.has(i)) expected.add(i)
    expect(bytesOf(gaps)).toEqual(expected)
    expect(RangeSet.isComplete(set, total)).toBe(expected.size === 0)
  })
})

describe("resolveRange", () => {
  it("accepts 0 <= start <= end <= size and defaults end to size", () => {
    expect(Either.getOrThrow(RangeSet.resolveRange(undefined, 10))).toEqual([0, 10])
    expect(Either.getOrThrow(RangeSet.resolveRange({ start: 3 }, 10))).toEqual([3, 10])
    expect(Either.getOrThrow(RangeSet.resolveRange({ start: 3, end: 5 }, 10))).toEqual([3, 5])
    expect(Either.getOrThrow(RangeSet.resolveRange({ start: 10 }, 10))).toEqual([10, 10])
    expect(Either.getOrThrow(RangeSet.resolveRange({ start: 0 }, 0))).toEqual([0, 0])
  })
  it("rejects ranges outside the object", () => {
    for (const r of [{ start: 11 }, { start: 0, end: 11 }, { start: -1 }, { start: 5, end: 4 }, { start: 1.5 }]) {
      const result = RangeSet.resolveRange(r, 10)
      expect(Either.isLeft(result)).toBe(true)
    }
  })
})
