/**
 * The transactions of streaming puts, and the bound on how many run at once.
 *
 * A put that spans more than one chunk holds a transaction, and so a pooled
 * connection, from its first full chunk to its last byte: as long as its
 * caller takes to send the bytes. Unbounded, a few slow or stalled writers
 * took every connection and a `head` waited behind them for seconds
 * (issue 15). So:
 * - at most `permits` puts hold a connection at a time (a semaphore sized
 *   below the pool); the others wait for a permit, not for the pool, and the
 *   rest of the pool stays free for reads, small writes and metadata;
 * - when the pool is ours (PgPool), the put's connection is held here, not
 *   through `sql.reserve`: when the server ends the session (its
 *   idle_in_transaction_session_timeout fired, or it went away), the
 *   connection goes back to the pool (discarded) and the permit is released
 *   at once, not when the stalled caller finally resumes, so a writer that
 *   never resumes holds nothing. Its next statement fails with the server's
 *   error (25P03, a Timeout).
 * Inside a transaction the caller opened, a put is a savepoint of it on the
 * caller's connection: no permit, no connection of its own.
 */
import { type SqlClient, TransactionConnection } from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type * as Pg from "pg"
import { cancel, connectionAttributes, type Query, traced } from "./query.js"
import { open } from "./sql.js"

/** A put's transaction: statements on its connection, and its commit. */
export interface PutTransaction {
  /** Runs one statement in the transaction. */
  readonly run: <A extends object>(text: string, params: ReadonlyArray<unknown>) => Effect.Effect<ReadonlyArray<A>, SqlError>
  /** Commits (or releases the savepoint); without it, closing the scope rolls back. */
  readonly commit: Effect.Effect<void, SqlError>
}

/** A writer's permit: held until its scope closes, or given back early when its session is lost. */
export interface Permit {
  held: boolean
}

/** Where puts get their transactions. */
export interface Writers {
  /**
   * Waits for a writer's permit and holds it in the scope (none inside the caller's transaction).
   * Separate from `open` so that a failed `open` can be retried without queueing again.
   */
  readonly permit: Effect.Effect<Permit | undefined, never, Scope.Scope>
  /** Opens a transaction held until the scope closes (rolled back then unless committed). */
  readonly open: (permit: Permit | undefined) => Effect.Effect<PutTransaction, SqlError, Scope.Scope>
  /** How many puts may hold a connection at once. */
  readonly permits: number
}

/** The default writer bound for a pool of `poolSize`: half of it, at least one. */
export const defaultPermits = (poolSize: number): number => Math.max(1, Math.floor(poolSize / 2))

const acquireError = (cause: unknown) =>
  new SqlError({ cause: cause ?? new Error("No client returned"), message: "Failed to acquire connection" })

/** A connection taken from `pool`, waiting in the pool's queue (bounded by its connect timeout). */
const connect = (pool: Pg.Pool): Effect.Effect<Pg.PoolClient, SqlError> =>
  Effect.async<Pg.PoolClient, SqlError>((resume) => {
    let abandoned = false
    pool.connect((err, client, release) => {
      if (abandoned) {
        if (client !== undefined) release(err)
        return
      }
      if (err || client === undefined) return resume(Effect.fail(acquireError(err)))
      resume(Effect.succeed(client))
    })
    return Effect.sync(() => {
      abandoned = true
    })
  })

/** A connection held by one put, and what became of it. */
interface Held {
  readonly client: Pg.PoolClient
  /** Why the session ended under us (the server's error or the socket's), if it did. */
  lost: Error | undefined
  /** Given back to the pool. */
  released: boolean
  /** COMMIT was sent: nothing to roll back. */
  finished: boolean
  /** Our "error" listener on the client. */
  onError: (cause: Error) => void
}

/** One statement on the held connection; fails with the loss when the session has ended. */
const statement = (pool: Pg.Pool, h: Held) => {
  const span = traced(connectionAttributes(pool))
  return <A extends object>(text: string, params: ReadonlyArray<unknown>): Effect.Effect<ReadonlyArray<A>, SqlError> =>
    span(text, statementOn<A>(pool, h, text, params))
}

const statementOn = <A extends object>(
  pool: Pg.Pool,
  h: Held,
  text: string,
  params: ReadonlyArray<unknown>
): Effect.Effect<ReadonlyArray<A>, SqlError> =>
  Effect.suspend(() =>
    h.lost !== undefined
      ? Effect.fail(new SqlError({ cause: h.lost, message: "Connection error" }))
      : Effect.async<ReadonlyArray<A>, SqlError>((resume) => {
        h.client.query(text, params as Array<unknown>, (err: Error | null, result: Pg.QueryResult) =>
          resume(
            err
              ? Effect.fail(new SqlError({ cause: h.lost ?? err, message: "Failed to execute statement" }))
              : Effect.succeed((result.rows ?? []) as ReadonlyArray<A>)
          ))
        // Interrupted mid-statement: cancel it server-side; the finalizer then rolls back.
        return cancel(pool, h.client)
      })
  )

/** Gives the connection back once (discarded by the pool when `broken` is set). */
const giveConnection = (h: Held, broken?: unknown): void => {
  if (h.released) return
  h.released = true
  h.client.off("error", h.onError)
  h.client.release(broken instanceof Error ? broken : broken === undefined ? undefined : new Error(String(broken)))
}

/** Ends the put's use of its connection: rolled back unless committed, then given back. */
const finalize = (pool: Pg.Pool, h: Held): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (h.released) return Effect.void
    if (h.finished) return Effect.sync(() => giveConnection(h))
    // Rolled back here rather than by discarding the connection: the next put gets a warm one.
    return statement(pool, h)("ROLLBACK", []).pipe(
      Effect.timeoutFail({ duration: 5000, onTimeout: () => new SqlError({ cause: new Error("rollback timed out") }) }),
      Effect.match({
        onFailure: (e) => giveConnection(h, e.cause ?? e),
        onSuccess: () => giveConnection(h)
      })
    )
  })

/** A transaction on a connection of our own pool, given back as soon as the server ends the session. */
const held = (pool: Pg.Pool, onLost: () => void): Effect.Effect<PutTransaction, SqlError, Scope.Scope> =>
  Effect.gen(function*() {
    // Waiting for the connection stays interruptible (`connect` gives back one that arrives too late).
    const h = yield* Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(restore(connect(pool)), (client) => {
        const h: Held = { client, lost: undefined, released: false, finished: false, onError: () => {} }
        h.onError = (cause: Error) => {
          if (h.lost !== undefined) return
          h.lost = cause
          if (!h.released) {
            h.released = true
            // Our listener stays attached: a discarded client may still emit, and an unheard "error" ends the process.
            client.release(cause)
          }
          onLost()
        }
        client.on("error", h.onError)
        return Effect.as(Effect.addFinalizer(() => finalize(pool, h)), h)
      })
    )
    const run = statement(pool, h)
    yield* run("BEGIN", [])
    return {
      run,
      commit: Effect.suspend(() => {
        // A failed COMMIT has ended the transaction too: no ROLLBACK afterwards.
        h.finished = true
        return Effect.asVoid(run("COMMIT", []))
      })
    }
  })

/**
 * The writers of one store: `permits` puts at a time, each on a connection of `pool` when
 * given (see `held`), else through `sql.reserve` (any other PgClient; then a session ended by
 * the server is only given back when the put ends).
 */
export const make = (
  sql: SqlClient,
  pool: Option.Option<Pg.Pool>,
  query: Query,
  permits: number
): Effect.Effect<Writers> =>
  Effect.gen(function*() {
    const semaphore = yield* Effect.makeSemaphore(permits)
    const giveBack = (p: Permit) =>
      Effect.suspend(() => {
        if (!p.held) return Effect.void
        p.held = false
        return semaphore.release(1)
      })
    const permit: Writers["permit"] = Effect.flatMap(Effect.serviceOption(TransactionConnection), (outer) =>
      Option.isSome(outer)
        ? Effect.succeed(undefined)
        // Waiting for a permit stays interruptible; once taken, the scope gives it back.
        : Effect.uninterruptibleMask((restore) =>
          Effect.flatMap(restore(semaphore.take(1)), () => {
            const p: Permit = { held: true }
            return Effect.as(Effect.addFinalizer(() => giveBack(p)), p)
          })
        ))
    const viaClient = Effect.map(open(sql), (t): PutTransaction => ({
      run: (text, params) => t.run(query(text, params)),
      commit: t.commit
    }))
    const openTx: Writers["open"] = (p) =>
      Effect.flatMap(Effect.serviceOption(TransactionConnection), (outer) => {
        if (Option.isSome(outer) || Option.isNone(pool)) return viaClient
        // A retry after a lost session: the permit went back with it; take one again first.
        const again = p === undefined || p.held ? Effect.void : Effect.map(semaphore.take(1), () => {
          p.held = true
        })
        return Effect.zipRight(
          again,
          held(pool.value, () => {
            // Called from the driver's event, outside any fiber; releasing a permit is synchronous.
            if (p !== undefined) Effect.runSync(giveBack(p))
          })
        )
      })
    return { permit, open: openTx, permits }
  })
