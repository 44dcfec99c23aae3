/**
 * PgKeyValueStore: the `kv` table (key text COLLATE "C", value bytea).
 *
 * Every conditional change is one conditional statement, so there is no
 * window between reading and writing for another client to slip into:
 * - expected absent  -> `INSERT ... ON CONFLICT DO NOTHING RETURNING`
 * - expected value   -> `UPDATE ... WHERE value = $expected RETURNING` or
 *                       `DELETE ... WHERE value = $expected RETURNING`
 *   (under READ COMMITTED a concurrent change makes PostgreSQL re-check the
 *   WHERE clause on the newest row version, so a stale expectation fails);
 * - `commit` runs in one transaction, visiting the keys in byte order so two
 *   commits never wait on each other in a cycle. A value check locks its row
 *   (`SELECT ... FOR UPDATE`); an absence check *inserts* the key (the real
 *   value, or a stand-in row deleted again before COMMIT), because an absent
 *   row cannot be locked, but a concurrent insert of the same key must wait
 *   on an uncommitted one. Any failing check rolls everything back.
 *
 * Inside a transaction the caller opened with `SqlClient.withTransaction`,
 * every method joins it (commit as a savepoint): that is how a put's object
 * and its dedup metadata commit together (see PgUnitOfWork).
 */
import { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import { MetadataError, toPortError } from "../../core/Errors.js"
import * as KvKey from "../../core/KvKey.js"
import { KeyValueStore, type KvWrite } from "../../ports/KeyValueStore.js"
import * as Instrument from "../../kit/Instrument.js"
import * as TracingPorts from "../../kit/TracingPorts.js"
import * as Retry from "../../kit/Retry.js"
import { PgPool } from "./internal/pool.js"
import * as Query from "./internal/query.js"
import { bufferOf, likePrefix, retriers, transaction } from "./internal/sql.js"
import { BACKEND, metadataError, safeToRepeat } from "./PgErrors.js"
import * as PgMetrics from "./PgMetrics.js"

const PORT = "KeyValueStore"

/** Entries per listing statement, and the value bytes a page may hold before it is cut short. */
const LIST_ROWS = 256
const LIST_BYTES = 4 * 1024 * 1024

const SELECT_VALUE = "SELECT value FROM kv WHERE key = $1"
const UPSERT = "INSERT INTO kv (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
const DELETE = "DELETE FROM kv WHERE key = $1"

/** A check of `commit` that does not hold: rolls the transaction back. */
class CheckFailed {
  readonly _tag = "CheckFailed"
}

const validate = (method: string, key: string, allowEmpty = false): Either.Either<string, MetadataError> =>
  Either.mapLeft(KvKey.validate(key, allowEmpty), toPortError(MetadataError, BACKEND, method))

const checkValue = (method: string, value: unknown): Either.Either<Uint8Array, MetadataError> =>
  value instanceof Uint8Array
    ? Either.right(value)
    : Either.left(new MetadataError({ reason: "InvalidInput", backend: BACKEND, method, description: "a value must be a Uint8Array" }))

/** Builds the store over the SqlClient of the context (a PgClient). */
export const make: Effect.Effect<KeyValueStore["Type"], never, SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient
  // The hot single statements (get, put, delete) skip @effect/sql's per-statement work; see query.ts.
  const query = Query.make(sql, yield* Effect.serviceOption(PgPool))
  const instrument = yield* Instrument.make(BACKEND, PORT)
  const retry = retriers(instrument)
  const metrics = yield* PgMetrics.make
  const inTransaction = transaction(sql)
  /** Retries of compareAndSet and commit: only when the failed attempt surely had no effect (see safeToRepeat). */
  const repeatable = Retry.defaultSchedule.pipe(Schedule.whileInput((e) => safeToRepeat(e as MetadataError)))

  const q = (method: string) => <A, R>(effect: Effect.Effect<A, SqlError | MetadataError, R>) =>
    effect.pipe(
      Effect.tapError((e) => (e._tag === "MetadataError" ? Effect.void : metrics.failure(PORT, method, e))),
      Effect.mapError(metadataError(method))
    )

  const get: KeyValueStore["Type"]["get"] = (key) =>
    Effect.flatMap(validate("get", key), (k) =>
      query<{ readonly value: Buffer }>(SELECT_VALUE, [k]).pipe(
        q("get"),
        Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), (r): Uint8Array => r.value)),
        retry("get")
      )).pipe(instrument.observe("get"))

  const upsert = (k: string, value: Uint8Array) => query(UPSERT, [k, bufferOf(value)])

  const put: KeyValueStore["Type"]["put"] = (key, value) => {
    // No Effect.gen on the hottest path: a put is one statement, and every microsecond shows.
    const checked = Either.flatMap(validate("put", key), (k) => Either.map(checkValue("put", value), (v) => [k, v] as const))
    // (An `if`, not Either.match's object of callbacks: under esbuild's keepNames, as tsx runs the
    // benchmarks, each callback named by a property costs a defineProperty per call.)
    const run = Either.isLeft(checked)
      ? Effect.fail(checked.left)
      : upsert(checked.right[0], checked.right[1]).pipe(q("put"), retry("put"), Effect.asVoid)
    return instrument.observe("put")(run)
  }

  const del: KeyValueStore["Type"]["delete"] = (key) =>
    Effect.flatMap(validate("delete", key), (k) =>
      query(DELETE, [k]).pipe(q("delete"), retry("delete"), Effect.asVoid)).pipe(
        instrument.observe("delete")
      )

  const list: KeyValueStore["Type"]["list"] = (prefix) =>
    Either.match(validate("list", prefix, true), {
      onLeft: (e) => Stream.fail(e),
      onRight: (p) => {
        const pattern = likePrefix(p)
        interface Row {
          readonly key: string
          readonly value: Buffer
          readonly page_rows: string
        }
        // Keyset pages of at most LIST_ROWS keys, cut short once their values pass LIST_BYTES
        // (octet_length reads the stored size without fetching out-of-line values).
        const page = (after: string) =>
          sql<Row>`
            SELECT key, value, page_rows::text AS page_rows FROM (
              SELECT key, value, count(*) OVER () AS page_rows,
                     sum(octet_length(value)) OVER (ORDER BY key ROWS UNBOUNDED PRECEDING) - octet_length(value) AS before
              FROM (
                SELECT key, value FROM kv
                WHERE key LIKE ${pattern} ESCAPE '\\' AND key > ${after}
                ORDER BY key LIMIT ${LIST_ROWS}
              ) page
            ) sized
            WHERE before < ${LIST_BYTES}
            ORDER BY key`.pipe(
            q("list"),
            retry("list"),
            Effect.map((rows) => {
              const more = rows.length > 0 && (rows.length < Number(rows[0]!.page_rows) || rows.length === LIST_ROWS)
              return [
                Chunk.unsafeFromArray(rows.map((r) => [r.key, r.value as Uint8Array] as const)),
                more ? Option.some(rows[rows.length - 1]!.key) : Option.none()
              ] as const
            })
          )
        return Stream.paginateChunkEffect("", page).pipe(instrument.observeStream("list"))
      }
    })

  const compareAndSet: KeyValueStore["Type"]["compareAndSet"] = (key, expected, next) =>
    Effect.gen(function*() {
      const k = yield* validate("compareAndSet", key)
      if (Option.isSome(expected)) yield* checkValue("compareAndSet", expected.value)
      if (Option.isSome(next)) yield* checkValue("compareAndSet", next.value)
      const statement = Option.isNone(expected)
        ? Option.isNone(next)
          ? sql<{ readonly ok: boolean }>`SELECT NOT EXISTS (SELECT 1 FROM kv WHERE key = ${k}) AS ok`
          : sql<{ readonly ok: boolean }>`
              INSERT INTO kv (key, value) VALUES (${k}, ${bufferOf(next.value)})
              ON CONFLICT (key) DO NOTHING RETURNING true AS ok`
        : Option.isNone(next)
        ? sql<{ readonly ok: boolean }>`
            DELETE FROM kv WHERE key = ${k} AND value = ${bufferOf(expected.value)} RETURNING true AS ok`
        : sql<{ readonly ok: boolean }>`
            UPDATE kv SET value = ${bufferOf(next.value)} WHERE key = ${k} AND value = ${bufferOf(expected.value)}
            RETURNING true AS ok`
      const rows = yield* statement.pipe(q("compareAndSet"), retry("compareAndSet", repeatable))
      return rows.length === 1 && rows[0]!.ok === true
    }).pipe(instrument.observe("compareAndSet"))

  const commit: KeyValueStore["Type"]["commit"] = (checks, writes) =>
    Effect.gen(function*() {
      const expectations = new Map<string, Option.Option<Uint8Array>>()
      let contradictory = false
      for (const check of checks) {
        const k = yield* validate("commit", check?.key)
        if (Option.isSome(check.expected)) yield* checkValue("commit", check.expected.value)
        const previous = expectations.get(k)
        if (previous !== undefined && !sameExpectation(previous, check.expected)) contradictory = true
        expectations.set(k, check.expected)
      }
      // Writes to one key apply in order, so only the last one matters.
      const finals = new Map<string, KvWrite>()
      for (const write of writes) {
        const k = yield* validate("commit", write?.key)
        if (write._tag === "Put") yield* checkValue("commit", write.value)
        else if (write._tag !== "Delete") {
          return yield* new MetadataError({ reason: "InvalidInput", backend: BACKEND, method: "commit", description: "unknown write" })
        }
        finals.delete(k)
        finals.set(k, write)
      }
      // Two checks of one key expecting different things can never both hold.
      if (contradictory) return false
      if (expectations.size === 0 && finals.size === 0) return true
      const keys = Array.from(new Set([...expectations.keys(), ...finals.keys()])).sort(KvKey.compare)

      const apply = (k: string, write: KvWrite | undefined) =>
        write === undefined
          ? Effect.void
          : write._tag === "Put"
          ? Effect.asVoid(upsert(k, write.value))
          : Effect.asVoid(query(DELETE, [k]))

      // A plain batch of one kind (every put, or every delete; no checks) is one statement, in key order as
      // below: a statement per write made large batches (the lifecycle's spill of references) cost a round
      // trip each.
      const plain = expectations.size === 0 && keys.length > 1 ? keys.map((k) => finals.get(k)!) : undefined
      if (plain !== undefined && plain.every((w) => w._tag === "Put")) {
        const hex = plain.map((w) => Buffer.from((w as { readonly value: Uint8Array }).value).toString("hex"))
        return yield* sql`
          INSERT INTO kv (key, value)
          SELECT k, decode(v, 'hex') FROM unnest(${keys}::text[], ${hex}::text[]) WITH ORDINALITY AS t(k, v, i) ORDER BY i
          ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`.pipe(Effect.as(true), q("commit"), retry("commit", repeatable))
      }
      if (plain !== undefined && plain.every((w) => w._tag === "Delete")) {
        return yield* sql`DELETE FROM kv WHERE key = ANY(${keys}::text[])`.pipe(Effect.as(true), q("commit"), retry("commit", repeatable))
      }

      const body = Effect.forEach(keys, (k) =>
        Effect.gen(function*() {
          const expected = expectations.get(k)
          const write = finals.get(k)
          if (expected === undefined) return yield* apply(k, write)
          if (Option.isSome(expected)) {
            const rows = yield* sql<{ readonly same: boolean }>`
              SELECT value = ${bufferOf(expected.value)} AS same FROM kv WHERE key = ${k} FOR UPDATE`
            if (rows.length === 0 || rows[0]!.same !== true) return yield* Effect.fail(new CheckFailed())
            return yield* apply(k, write)
          }
          // Absence: claim the key with an insert that concurrent writers of it must wait for.
          const value = write?._tag === "Put" ? write.value : new Uint8Array(0)
          const claimed = yield* sql`
            INSERT INTO kv (key, value) VALUES (${k}, ${bufferOf(value)}) ON CONFLICT (key) DO NOTHING RETURNING 1 AS ok`
          if (claimed.length === 0) return yield* Effect.fail(new CheckFailed())
          // The stand-in row goes again; its deleted row keeps blocking writers of k until COMMIT.
          if (write?._tag !== "Put") yield* sql`DELETE FROM kv WHERE key = ${k}`
        }), { discard: true })

      return yield* inTransaction(body).pipe(
        Effect.as(true),
        Effect.catchIf((e): e is CheckFailed => e instanceof CheckFailed, () => Effect.succeed(false)),
        q("commit"),
        retry("commit", repeatable)
      )
    }).pipe(instrument.observe("commit"))

  return TracingPorts.keyValueStore(BACKEND, KeyValueStore.of({ get, put, delete: del, list, compareAndSet, commit }))
})

const sameExpectation = (a: Option.Option<Uint8Array>, b: Option.Option<Uint8Array>): boolean =>
  Option.isNone(a)
    ? Option.isNone(b)
    : Option.isSome(b) && Buffer.compare(bufferOf(a.value), bufferOf(b.value)) === 0

/** The KeyValueStore port on PostgreSQL. */
export const layer: Layer.Layer<KeyValueStore, never, SqlClient> = Layer.effect(KeyValueStore, make)
