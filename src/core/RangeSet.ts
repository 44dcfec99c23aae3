/**
 * Byte ranges. Everywhere in Graviton a span is HALF-OPEN: `[start, end)`,
 * so `{ start: 0, end: 4 }` covers bytes 0, 1, 2 and 3 and has length 4.
 * Half-open spans make adjacency trivial (`a.end === b.start`) and lengths
 * a subtraction, which is why we chose them over HTTP's inclusive ranges.
 *
 * A RangeSet is always normalized: sorted by start, disjoint, and with
 * adjacent spans merged. Every constructor here returns normalized sets.
 */
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { invalidValue, type InvalidValue } from "./Errors.js"

/** A non-empty half-open byte span `[start, end)`. */
export class Span extends Schema.Class<Span>("graviton/Span")(
  Schema.Struct({ start: Schema.NonNegativeInt, end: Schema.NonNegativeInt }).pipe(
    // The constructor enforces non-emptiness too, so no invalid Span can exist.
    Schema.filter((s) => s.start < s.end || "end must be greater than start (spans are half-open and non-empty)")
  )
) {
  get length(): number {
    return this.end - this.start
  }
  override toString(): string {
    return `[${this.start}, ${this.end})`
  }
}

/** Builds a span, failing unless `0 <= start < end` and both are safe integers. */
export const span = (start: number, end: number): Either.Either<Span, InvalidValue> =>
  !Number.isSafeInteger(start) || !Number.isSafeInteger(end)
    ? Either.left(invalidValue("Span", `[${start}, ${end})`, "start and end must be integers"))
    : start < 0
    ? Either.left(invalidValue("Span", `[${start}, ${end})`, "start must not be negative"))
    : end <= start
    ? Either.left(invalidValue("Span", `[${start}, ${end})`, "end must be greater than start (spans are half-open and non-empty)"))
    : Either.right(new Span({ start, end }))

/** Builds a span from trusted numbers; throws on invalid input (for internal use and tests). */
export const unsafeSpan = (start: number, end: number): Span => Either.getOrThrow(span(start, end))

/** A normalized set of spans: sorted, disjoint, no two adjacent. */
export type RangeSet = ReadonlyArray<Span>

export const empty: RangeSet = []

/** Normalizes any list of spans: sorts, then merges overlapping and adjacent ones. */
export const normalize = (spans: Iterable<Span>): RangeSet => {
  const sorted = Array.from(spans).sort((a, b) => a.start - b.start || a.end - b.end)
  const out: Array<Span> = []
  for (const s of sorted) {
    const last = out[out.length - 1]
    if (last !== undefined && s.start <= last.end) {
      // Overlapping or adjacent (s.start === last.end): extend the last span.
      if (s.end > last.end) out[out.length - 1] = new Span({ start: last.start, end: s.end })
    } else {
      out.push(s)
    }
  }
  return out
}

/** True when `spans` is already normalized. */
export const isNormalized = (spans: RangeSet): boolean => {
  for (let i = 0; i < spans.length; i++) {
    const s = spans[i]!
    if (s.end <= s.start) return false
    if (i > 0 && spans[i - 1]!.end >= s.start) return false
  }
  return true
}

/** Adds one span to a set. */
export const merge = (set: RangeSet, s: Span): RangeSet => normalize([...set, s])

/** The union of two sets. */
export const union = (a: RangeSet, b: RangeSet): RangeSet => normalize([...a, ...b])

/** Total number of bytes covered. */
export const coveredBytes = (set: RangeSet): number => set.reduce((n, s) => n + s.end - s.start, 0)

/** True when every byte of `s` is covered (a number is treated as one byte). */
export const contains = (set: RangeSet, s: Span | number): boolean => {
  const [start, end] = typeof s === "number" ? [s, s + 1] : [s.start, s.end]
  // Normalized sets never split a covered run, so one span must hold it all.
  return set.some((x) => x.start <= start && end <= x.end)
}

/** The gaps in `[0, total)` that `set` does not cover, in order. */
export const missing = (set: RangeSet, total: number): RangeSet => {
  const gaps: Array<Span> = []
  let cursor = 0
  for (const s of set) {
    if (s.start >= total) break
    if (s.start > cursor) gaps.push(new Span({ start: cursor, end: s.start }))
    cursor = Math.max(cursor, s.end)
  }
  if (cursor < total) gaps.push(new Span({ start: cursor, end: total }))
  return gaps
}

/** True when `[0, total)` is entirely covered. An empty blob (total 0) is always complete. */
export const isComplete = (set: RangeSet, total: number): boolean => missing(set, total).length === 0

/** Renders `[0, 4) [8, 10)`; an empty set renders as `(none)`. */
export const format = (set: RangeSet): string => (set.length === 0 ? "(none)" : set.map(String).join(" "))

/** Schema of a normalized RangeSet (decoding normalizes). */
export const RangeSetSchema = Schema.transform(Schema.Array(Span), Schema.Array(Schema.typeSchema(Span)), {
  strict: true,
  decode: (spans) => normalize(spans),
  encode: (spans) => spans
})

/**
 * A byte range for reads: `start` inclusive, `end` exclusive and optional
 * (absent = to the end of the object). Valid against an object of `size`
 * bytes iff `0 <= start <= end <= size`; reads of an empty range are empty.
 * Anything else fails with reason InvalidInput, before any byte is read.
 */
export interface ByteRange {
  readonly start: number
  readonly end?: number | undefined
}

/** Resolves a read range against an object's size: `[start, end)` or an error. */
export const resolveRange = (
  range: ByteRange | undefined,
  size: number
): Either.Either<readonly [number, number], InvalidValue> => {
  if (range === undefined) return Either.right([0, size] as const)
  const end = range.end ?? size
  const text = `[${range.start}, ${range.end ?? ""}) of ${size} bytes`
  if (!Number.isSafeInteger(range.start) || !Number.isSafeInteger(end)) {
    return Either.left(invalidValue("ByteRange", text, "start and end must be integers"))
  }
  if (range.start < 0 || range.start > end) {
    return Either.left(invalidValue("ByteRange", text, "need 0 <= start <= end"))
  }
  if (end > size) {
    return Either.left(invalidValue("ByteRange", text, `the range ends past the object's last byte (size ${size})`))
  }
  return Either.right([range.start, end] as const)
}
