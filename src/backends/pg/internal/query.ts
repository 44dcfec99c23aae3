/**
 * Runs one statement given as text and parameters, without @effect/sql's
 * per-statement work (compiling a template, a tracing span with its
 * attributes, looking up row transformers): tens of microseconds, which is
 * a third of a small call's time.
 *
 * The connection rules are those of @effect/sql's own statements:
 * - inside a transaction (`TransactionConnection` in the context, as set by
 *   `SqlClient.withTransaction`, UnitOfWork.atomically or `open`) the
 *   statement runs on that transaction's connection;
 * - otherwise on a pooled connection taken for this statement only.
 * Failures are the same `SqlError`s (driver error as `cause`, so PgErrors maps
 * them exactly as before), and interruption cancels the running statement
 * (`pg_cancel_backend`) before its connection goes back to the pool.
 *
 * Tracing, only when a tracer listens (kit/Tracing); the parameters never
 * go in a span:
 * - inside a transaction, each statement gets the span @effect/sql would
 *   give it (`sql.execute`, kind client, OpenTelemetry's database
 *   attributes), under the transaction's: there, which statement of several
 *   took the time is the question;
 * - outside one, a statement is the work of the Graviton call it runs in
 *   (a KV get, a small write, a page of a read): it is recorded on that
 *   call's span as a `sql.execute` event (operation, query text, outcome,
 *   duration) and the call's span takes the database attributes. A span
 *   costs tens of microseconds in the OpenTelemetry SDK, as much as such a
 *   statement; an event a fraction of that. With no Graviton span around it
 *   (a caller running the store's statements directly), it gets its span.
 */
import type { SqlClient } from "@effect/sql/SqlClient"
import { TransactionConnection } from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Pg from "pg"
import * as Tracing from "../../../kit/Tracing.js"

/** Runs `text` with `params` ($1, $2 ...) and returns its rows. */
export type Query = <A extends object = Record<string, unknown>>(
  text: string,
  params: ReadonlyArray<unknown>
) => Effect.Effect<ReadonlyArray<A>, SqlError>

/**
 * Where the pool connects, as OpenTelemetry's `db.namespace`, `server.address`
 * and `server.port`: read from its settings or its URL, never the password.
 */
export const connectionAttributes = (pool: Pg.Pool | undefined): Tracing.Attributes => {
  if (pool === undefined) return { "db.system.name": "postgresql" }
  let known = byPool.get(pool)
  if (known === undefined) byPool.set(pool, known = readConnection(pool))
  return known
}

const byPool = new WeakMap<Pg.Pool, Tracing.Attributes>()

const readConnection = (pool: Pg.Pool): Tracing.Attributes => {
  const options = (pool as unknown as { readonly options?: Pg.PoolConfig }).options ?? {}
  let host = options.host
  let port = options.port
  let database = options.database
  if (options.connectionString !== undefined) {
    try {
      const url = new URL(options.connectionString)
      host ??= url.hostname || undefined
      port ??= url.port === "" ? undefined : Number(url.port)
      database ??= decodeURIComponent(url.pathname.slice(1)) || undefined
    } catch {
      // A libpq key=value string: left out rather than parsed.
    }
  }
  return {
    "db.system.name": "postgresql",
    ...(database === undefined ? {} : { "db.namespace": database }),
    ...(host === undefined ? {} : { "server.address": host, "server.port": port ?? 5432 })
  }
}

/** The first keyword of a statement (SELECT, INSERT, WITH, BEGIN ...), OpenTelemetry's `db.operation.name`. */
const operationOf = (text: string): string => /^\s*([A-Za-z]+)/.exec(text)?.[1]?.toUpperCase() ?? "UNKNOWN"

/** A statement's own attributes: OpenTelemetry's operation name and query text (never its parameters). */
const statementAttributes = (text: string): Tracing.Attributes => {
  // The texts are the stores' constants (a few dozen): each parsed once.
  let known = byText.get(text)
  if (known === undefined) {
    known = { "db.operation.name": operationOf(text), "db.query.text": text }
    if (byText.size < 1000) byText.set(text, known)
  }
  return { ...known }
}

const byText = new Map<string, Tracing.Attributes>()

/** Runs one statement in a `sql.execute` span with `connection`'s attributes (see the module comment). */
export const traced = (connection: Tracing.Attributes) =>
<A, E, R>(text: string, self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Tracing.run(self, "sql.execute", "client", () => ({ ...connection, ...statementAttributes(text) }), undefined)

/** Best-effort cancellation of what `client` is running, bounded like @effect/sql's. */
export const cancel = (pool: Pg.Pool, client: Pg.PoolClient): Effect.Effect<void> => {
  const pid = (client as unknown as { readonly processID?: number }).processID
  if (pid === undefined) return Effect.void
  return Effect.async<void>((resume) => {
    if ((pool as unknown as { readonly ending?: boolean }).ending) return resume(Effect.void)
    pool.query(`SELECT pg_cancel_backend(${pid})`, () => resume(Effect.void))
  }).pipe(Effect.interruptible, Effect.timeoutOption(5000), Effect.asVoid)
}

/**
 * One statement on a pooled connection held for it alone. A class rather than
 * closures made per call: under esbuild's keepNames (how tsx runs the tests
 * and benchmarks) each named closure costs a defineProperty on every call.
 */
class PoolStatement<A> {
  /** The connection has gone back to the pool (or was never needed): nothing more to resume. */
  done = false
  client: Pg.PoolClient | undefined = undefined
  /** A connection that dies mid-statement emits "error"; the pool must not reuse it. */
  readonly onError: (cause: Error) => void
  constructor(
    readonly pool: Pg.Pool,
    readonly resume: (effect: Effect.Effect<ReadonlyArray<A>, SqlError>) => void
  ) {
    this.onError = errorListener(this)
  }
  release(broken?: Error): void {
    if (this.done) return
    this.done = true
    if (this.client !== undefined) {
      this.client.off("error", this.onError)
      this.client.release(broken)
    }
  }
  failed(cause: Error): void {
    this.release(cause)
    this.resume(Effect.fail(new SqlError({ cause, message: "Connection error" })))
  }
  connected(cause: Error | undefined, pooled: Pg.PoolClient | undefined, text: string, params: ReadonlyArray<unknown>): void {
    if (this.done) {
      // Interrupted while waiting for the connection.
      pooled?.release()
      return
    }
    if (cause) return this.resume(Effect.fail(new SqlError({ cause, message: "Failed to acquire connection" })))
    if (!pooled) {
      return this.resume(Effect.fail(new SqlError({ cause: new Error("No client returned"), message: "Failed to acquire connection" })))
    }
    this.client = pooled
    pooled.once("error", this.onError)
    pooled.query(text, params as Array<unknown>, (err: Error | null, result: Pg.QueryResult) => this.answered(err, result))
  }
  answered(err: Error | null, result: Pg.QueryResult): void {
    if (this.done) return
    this.release()
    this.resume(
      err
        ? Effect.fail(new SqlError({ cause: err, message: "Failed to execute statement" }))
        : Effect.succeed((result.rows ?? []) as ReadonlyArray<A>)
    )
  }
  /** Interrupted: cancel what runs server-side, then give the connection back. */
  interrupted(): Effect.Effect<void> {
    const held = this.client
    if (this.done || held === undefined) {
      this.done = true
      return Effect.void
    }
    return Effect.ensuring(cancel(this.pool, held), Effect.sync(() => this.release()))
  }
}

const errorListener = <A>(s: PoolStatement<A>) => (cause: Error): void => s.failed(cause)

/** One statement on a connection of `pool` held for just that statement. */
const onPool = (pool: Pg.Pool) => <A>(text: string, params: ReadonlyArray<unknown>): Effect.Effect<ReadonlyArray<A>, SqlError> =>
  Effect.async<ReadonlyArray<A>, SqlError>((resume) => {
    const s = new PoolStatement<A>(pool, resume)
    pool.connect((cause, pooled) => s.connected(cause, pooled, text, params))
    return Effect.suspend(() => s.interrupted())
  })

/**
 * The statement runner of a store: on `pool` directly when the client was
 * built over it (PgLayers.client provides it as PgPool), else through
 * `sql.unsafe` (any other PgClient), with the same results either way.
 */
export const make = (sql: SqlClient, pool: Option.Option<Pg.Pool>): Query => {
  const connection = connectionAttributes(Option.getOrUndefined(pool))
  const direct = Option.isSome(pool) ? onPool(pool.value) : undefined
  // One fiber step decides where the statement runs and how it is traced (see the module comment).
  return <A extends object>(text: string, params: ReadonlyArray<unknown>) =>
    Effect.withFiberRuntime<ReadonlyArray<A>, SqlError>((fiber) => {
      const tx = Context.getOption(fiber.currentContext, TransactionConnection)
      if (Option.isNone(tx) && direct === undefined) {
        // `sql.unsafe` makes its own span.
        return sql.unsafe<A & object>(text, params) as Effect.Effect<ReadonlyArray<A>, SqlError>
      }
      const statement = Option.isSome(tx)
        ? tx.value[0].execute(text, params, undefined) as Effect.Effect<ReadonlyArray<A>, SqlError>
        : direct!<A>(text, params)
      if (!Tracing.isTracing(fiber)) return statement
      // Outside a transaction, the statement is the Graviton call's own work: an event on its span.
      const owner = Option.isNone(tx) ? Tracing.owner(fiber) : undefined
      return owner !== undefined
        ? Tracing.asEvent(fiber, owner, statement, "sql.execute", connection, () => statementAttributes(text))
        : Tracing.run(statement, "sql.execute", "client", () => ({ ...connection, ...statementAttributes(text) }), undefined)
    })
}
