/**
 * PgRangeTracker: the conformance suite, then concurrent merges of
 * overlapping spans of one upload and the compaction of its rows.
 */
import { expect } from "@effect/vitest"
import { SqlClient } from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as RangeSet from "../../../src/core/RangeSet.js"
import { RangeTracker } from "../../../src/ports/RangeTracker.js"
import { uniquePrefix } from "../../../src/testing/KeyValueStore.js"
import { testRangeTracker } from "../../../src/testing/RangeTracker.js"
import { describePg, pgLayer, skipReason, usePostgres } from "../../harness/postgres.js"

usePostgres()

const pg = pgLayer("ranges")
testRangeTracker("pg", pg, { skipAll: skipReason() })

const s = RangeSet.unsafeSpan
const pairs = (set: RangeSet.RangeSet) => set.map((x) => [x.start, x.end])

const rowsOf = (id: string) =>
  Effect.flatMap(SqlClient, (sql) =>
    Effect.map(
      sql<{ span_start: string; span_end: string }>`
        SELECT span_start::text, span_end::text FROM upload_ranges WHERE upload_id = ${id} ORDER BY span_start`,
      (rows) => rows.map((r) => [Number(r.span_start), Number(r.span_end)])
    ))

describePg("PgRangeTracker", pg, (test) => {
  test("60 concurrent merges of overlapping spans of one upload give the right set", () =>
    Effect.gen(function*() {
      const tracker = yield* RangeTracker
      const id = `${uniquePrefix("upload")}overlap`
      // Spans [10i, 10i + 15) overlap their neighbours; two gaps are left open on purpose.
      const spans = Array.from({ length: 60 }, (_, i) => i).filter((i) => i !== 20 && i !== 21 && i !== 45).map((i) =>
        s(i * 10, i * 10 + 15)
      )
      // Each span twice, in shuffled order, all at once.
      const work = [...spans, ...spans].map((span, i) => [span, (i * 7919) % 1000] as const).sort((a, b) => a[1] - b[1])
      yield* Effect.forEach(work, ([span]) => tracker.merge(id, span), { concurrency: "unbounded", discard: true })
      const expected = pairs(RangeSet.normalize(spans))
      expect(expected).toEqual([[0, 205], [220, 455], [460, 605]])
      expect(pairs(yield* tracker.current(id))).toEqual(expected)
      // The rows were compacted into the islands, not left as 114 spans.
      expect(yield* rowsOf(id)).toEqual(expected)
    }), 60_000)

  test("merges of different uploads do not block or disturb each other", () =>
    Effect.gen(function*() {
      const tracker = yield* RangeTracker
      const p = uniquePrefix("upload")
      const ids = Array.from({ length: 10 }, (_, i) => `${p}${i}`)
      yield* Effect.forEach(
        ids.flatMap((id, i) => [s(0, 10 + i), s(5, 20 + i), s(100, 101)].map((span) => [id, span] as const)),
        ([id, span]) => tracker.merge(id, span),
        { concurrency: "unbounded", discard: true }
      )
      for (let i = 0; i < ids.length; i++) {
        expect(pairs(yield* tracker.current(ids[i]!))).toEqual([[0, 20 + i], [100, 101]])
      }
    }))

  test("hostile ids (quotes, %, _, backslashes, unicode, 1024 bytes) are independent uploads", () =>
    Effect.gen(function*() {
      const tracker = yield* RangeTracker
      const p = uniquePrefix("upload")
      const ids = [`${p}a_b`, `${p}aXb`, `${p}a%b`, `${p}it's`, `${p}back\\slash`, `${p}ü😀`, `${p}'; DELETE FROM upload_ranges; --`]
      ids.push(p + "x".repeat(1024 - Buffer.byteLength(p)))
      yield* Effect.forEach(ids, (id, i) => tracker.merge(id, s(i, i + 1)), { concurrency: "unbounded", discard: true })
      for (let i = 0; i < ids.length; i++) expect(pairs(yield* tracker.current(ids[i]!))).toEqual([[i, i + 1]])
      yield* tracker.clear(ids[0]!)
      expect(yield* tracker.current(ids[0]!)).toEqual([])
      expect(pairs(yield* tracker.current(ids[1]!))).toEqual([[1, 2]])
    }))
})
