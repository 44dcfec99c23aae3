/**
 * PgRangeTracker: landed spans of each upload as rows of `upload_ranges`
 * (half-open `[span_start, span_end)`, like every span in Graviton).
 *
 * The merged set is computed in SQL with window functions, the classic
 * gaps-and-islands query: order an upload's spans by start; a span opens a
 * new island when it starts after the furthest end of every span before it
 * (`max(span_end) OVER (... ROWS BETWEEN UNBOUNDED PRECEDING AND 1
 * PRECEDING)`); a running `sum` of those island starts numbers the islands;
 * `min(start), max(end)` per island number are the normalized spans.
 * Adjacent spans (`start = previous end`) join, as RangeSet requires.
 *
 * `merge` runs in one transaction: a transaction-level advisory lock keyed
 * by the upload id serializes merges of the same upload (two merges of
 * different uploads never wait on each other, barring a hash collision),
 * then one statement adds the new span, replaces the upload's rows with its
 * islands (so rows stay few however often spans are re-sent) and returns
 * them. Without the lock, two concurrent merges would each compute islands
 * from a snapshot missing the other's span, and the later one would delete
 * the earlier one's rows: a lost update.
 */
import { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import { MetadataError, toPortError } from "../../core/Errors.js"
import * as KvKey from "../../core/KvKey.js"
import * as RangeSet from "../../core/RangeSet.js"
import { RangeTracker } from "../../ports/RangeTracker.js"
import * as Instrument from "../../kit/Instrument.js"
import * as TracingPorts from "../../kit/TracingPorts.js"
import { num, retriers, transaction } from "./internal/sql.js"
import { BACKEND, metadataError } from "./PgErrors.js"
import * as PgMetrics from "./PgMetrics.js"

const PORT = "RangeTracker"

/** First key of the two-key advisory locks of range merges ("GRr" + 1). */
export const LOCK_CLASS = 0x47527201

interface IslandRow {
  readonly span_start: string
  readonly span_end: string
}

const validateId = (method: string, id: string): Either.Either<string, MetadataError> =>
  Either.mapLeft(KvKey.validate(id), toPortError(MetadataError, BACKEND, method))

const validateSpan = (span: RangeSet.Span): Either.Either<RangeSet.Span, MetadataError> =>
  typeof span !== "object" || span === null
    ? Either.left(new MetadataError({ reason: "InvalidInput", backend: BACKEND, method: "merge", description: "the span is missing" }))
    : Either.mapLeft(RangeSet.span(span.start, span.end), toPortError(MetadataError, BACKEND, "merge"))

const toRangeSet = (rows: ReadonlyArray<IslandRow>): RangeSet.RangeSet =>
  // Already normalized by the query; `normalize` only sorts, and guards against a hand-edited table.
  RangeSet.normalize(rows.map((r) => new RangeSet.Span({ start: num(r.span_start), end: num(r.span_end) })))

/** Builds the tracker over the SqlClient of the context (a PgClient). */
export const make: Effect.Effect<RangeTracker["Type"], never, SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient
  const instrument = yield* Instrument.make(BACKEND, PORT)
  const retry = retriers(instrument)
  const metrics = yield* PgMetrics.make
  const inTransaction = transaction(sql)

  const q = (method: string) => <A, R>(effect: Effect.Effect<A, SqlError | MetadataError, R>) =>
    effect.pipe(
      Effect.tapError((e) => (e._tag === "MetadataError" ? Effect.void : metrics.failure(PORT, method, e))),
      Effect.mapError(metadataError(method))
    )

  /** The islands of `spans` (a subquery of span_start, span_end), as SQL. */
  const islands = (spans: string) => `
    ordered AS (
      SELECT span_start, span_end,
             max(span_end) OVER (ORDER BY span_start, span_end ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS reach
      FROM (${spans}) s
    ), numbered AS (
      SELECT span_start, span_end,
             sum(CASE WHEN reach IS NOT NULL AND span_start <= reach THEN 0 ELSE 1 END)
               OVER (ORDER BY span_start, span_end ROWS UNBOUNDED PRECEDING) AS island
      FROM ordered
    ), islands AS (
      SELECT min(span_start) AS span_start, max(span_end) AS span_end FROM numbered GROUP BY island
    )`

  const currentSql = `WITH ${islands("SELECT span_start, span_end FROM upload_ranges WHERE upload_id = $1")}
    SELECT span_start::text AS span_start, span_end::text AS span_end FROM islands ORDER BY span_start`

  // All sub-statements of one statement see the same snapshot: the DELETE removes exactly the
  // rows the islands were computed from, and the INSERT writes the islands back.
  const mergeSql = `WITH ${
    islands(
      "SELECT span_start, span_end FROM upload_ranges WHERE upload_id = $1 UNION ALL SELECT $2::bigint, $3::bigint"
    )
  }, removed AS (
      DELETE FROM upload_ranges WHERE upload_id = $1
    )
    INSERT INTO upload_ranges (upload_id, span_start, span_end)
    SELECT $1, span_start, span_end FROM islands
    RETURNING span_start::text AS span_start, span_end::text AS span_end`

  const current: RangeTracker["Type"]["current"] = (id) =>
    Effect.flatMap(validateId("current", id), (k) =>
      sql.unsafe<IslandRow>(currentSql, [k]).pipe(q("current"), Effect.map(toRangeSet), retry("current"))).pipe(
        instrument.observe("current")
      )

  const merge: RangeTracker["Type"]["merge"] = (id, span) =>
    Effect.gen(function*() {
      const k = yield* validateId("merge", id)
      const s = yield* validateSpan(span)
      const rows = yield* inTransaction(
        Effect.zipRight(
          sql`SELECT pg_advisory_xact_lock(${LOCK_CLASS}::integer, hashtext(${k}))`,
          sql.unsafe<IslandRow>(mergeSql, [k, s.start, s.end])
        )
      ).pipe(
        q("merge"),
        // Adding a span is idempotent, so every transient failure may be retried.
        retry("merge")
      )
      return toRangeSet(rows)
    }).pipe(instrument.observe("merge"))

  const clear: RangeTracker["Type"]["clear"] = (id) =>
    Effect.flatMap(validateId("clear", id), (k) =>
      sql`DELETE FROM upload_ranges WHERE upload_id = ${k}`.pipe(q("clear"), retry("clear"), Effect.asVoid)).pipe(
        instrument.observe("clear")
      )

  return TracingPorts.rangeTracker(BACKEND, RangeTracker.of({ current, merge, clear }))
})

/** The RangeTracker port on PostgreSQL. */
export const layer: Layer.Layer<RangeTracker, never, SqlClient> = Layer.effect(RangeTracker, make)
