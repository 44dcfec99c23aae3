/**
 * SQL helpers shared by the PostgreSQL ports: transactions that join the
 * caller's, a transaction held open across a Sink, LIKE escaping and
 * numeric conversions.
 */
import type { Connection } from "@effect/sql/SqlConnection"
import { type SqlClient, TransactionConnection } from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import { isTransient } from "../../../core/Errors.js"
import type * as Instrument from "../../../kit/Instrument.js"
import type * as Retry from "../../../kit/Retry.js"

/**
 * Runs `effect` in a transaction, or in a savepoint of the transaction the
 * caller already opened with `SqlClient.withTransaction` (so PostgreSQL
 * ports called inside one unit of work commit together). A failing COMMIT,
 * which @effect/sql turns into a defect, is an ordinary `SqlError` here.
 */
export const transaction = (sql: SqlClient) => <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | SqlError, R> =>
  sql.withTransaction(effect).pipe(
    Effect.catchAllDefect((defect) => (defect instanceof SqlError ? Effect.fail(defect) : Effect.die(defect)))
  )

/** A transaction opened for the life of a scope (a Sink's run); see `open`. */
export interface OpenTransaction {
  /** Runs statements of `effect` on the transaction's connection. */
  readonly run: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** Commits (or releases the savepoint); without it, closing the scope rolls back. */
  readonly commit: Effect.Effect<void, SqlError>
  /** True when this joined a transaction the caller had opened. */
  readonly nested: boolean
}

let savepoints = 0

/**
 * Opens a transaction that stays open until `commit`, or is rolled back when
 * the scope closes first (failure, interruption). Inside a caller's
 * transaction it uses a savepoint of that transaction instead.
 */
export const open = (sql: SqlClient): Effect.Effect<OpenTransaction, SqlError, Scope.Scope> => Effect.gen(function*() {
  const outer = yield* Effect.serviceOption(TransactionConnection)
  const [conn, depth]: readonly [Connection, number] = Option.isSome(outer)
    ? [outer.value[0], outer.value[1] + 1]
    : [yield* sql.reserve, 0]
  const savepoint = `graviton_sp_${++savepoints}`
  const exec = (statement: string) => Effect.asVoid(conn.executeUnprepared(statement, [], undefined))
  let finished = false
  // Added after `reserve`'s own finalizer, so it runs first: roll back, then release the connection.
  yield* Effect.addFinalizer(() =>
    finished ? Effect.void : Effect.ignore(exec(depth === 0 ? "ROLLBACK" : `ROLLBACK TO SAVEPOINT ${savepoint}`))
  )
  yield* exec(depth === 0 ? "BEGIN" : `SAVEPOINT ${savepoint}`)
  return {
    nested: depth > 0,
    run: (effect) => Effect.provideService(effect, TransactionConnection, [conn, depth]),
    commit: Effect.suspend(() => {
      // A failed COMMIT has ended the transaction too: no ROLLBACK afterwards.
      finished = true
      return exec(depth === 0 ? "COMMIT" : `RELEASE SAVEPOINT ${savepoint}`)
    })
  }
})

/** Escapes `%`, `_` and `\` so that `text` matches literally in a LIKE pattern with ESCAPE '\'. */
const escapeLike = (text: string): string => text.replace(/[\\%_]/g, (c) => `\\${c}`)

/** The LIKE pattern of every text starting with `prefix` (use with ESCAPE '\'). */
export const likePrefix = (prefix: string): string => `${escapeLike(prefix)}%`

/** A bigint column (returned as text by `pg`) as a number; sizes and offsets stay below 2^53. */
export const num = (value: unknown): number => (typeof value === "number" ? value : Number(value))

/** A Uint8Array as a Buffer view (no copy), which `pg` sends as a binary parameter. */
export const bufferOf = (bytes: Uint8Array): Buffer =>
  Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)

/**
 * `instrument.retry(method, schedule)`, set up only once the first attempt
 * has failed transiently: the first failure is replayed into the retry
 * driver, so attempts, delays, counts and events are exactly those of
 * `instrument.retry`, while a call that succeeds at once (nearly all of
 * them) pays nothing for the schedule. Nothing is retried inside a
 * transaction the caller opened.
 */
const retryLazily = (
  instrument: Instrument.Instrument,
  method: string,
  schedule?: Retry.RetrySchedule
) => {
  const retrying = instrument.retry(method, schedule)
  return <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.catchIf(self, isTransient, (first) =>
      Effect.flatMap(Effect.serviceOption(TransactionConnection), (outer) => {
        // Inside a caller's transaction a failed statement has aborted that transaction:
        // repeating it there cannot succeed, so the caller's unit of work fails (and may be retried whole).
        if (Option.isSome(outer)) return Effect.fail(first)
        let replay = true
        return retrying(Effect.suspend(() => {
          if (replay) {
            replay = false
            return Effect.fail(first)
          }
          return self
        }))
      })) as Effect.Effect<A, E, R>
}

/** `retryLazily` per method (and schedule), built once and reused by every call. */
export const retriers = (instrument: Instrument.Instrument) => {
  const cache = new Map<string, <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>>()
  const schedules = new Map<Retry.RetrySchedule, number>()
  return (method: string, schedule?: Retry.RetrySchedule) => {
    let key = method
    if (schedule !== undefined) {
      if (!schedules.has(schedule)) schedules.set(schedule, schedules.size)
      key = `${method}#${schedules.get(schedule)}`
    }
    let wrapper = cache.get(key)
    if (wrapper === undefined) {
      wrapper = retryLazily(instrument, method, schedule)
      cache.set(key, wrapper)
    }
    return wrapper
  }
}
