/**
 * PgLayers: every PostgreSQL port from one PgClient.
 *
 * - `client(options)` builds the pool and the PgClient / SqlClient over it
 *   (search_path and statement_timeout are set per connection; the
 *   password is registered with PgErrors.scrub so that it never shows up in
 *   an error or a log line; pool gauges are sampled into the
 *   MetricsRegistry, when one is provided);
 * - `ports(options)` provides ImmutableObjectStore, MutableObjectStore,
 *   KeyValueStore, RangeTracker and ReplicaIndex over any PgClient;
 * - `live(options)` is both, migrating first when `migrate: true`;
 * - `layerConfig()` reads the options from the environment (see `config`).
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import { SqlClient } from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as Pg from "pg"
import { MetadataError, type ObjectStoreError } from "../../core/Errors.js"
import type { KeyValueStore } from "../../ports/KeyValueStore.js"
import type { ImmutableObjectStore, MutableObjectStore } from "../../ports/ObjectStore.js"
import type { RangeTracker } from "../../ports/RangeTracker.js"
import type { ReplicaIndex } from "../../ports/ReplicaIndex.js"
import { UnitOfWork } from "../../ports/UnitOfWork.js"
import { PgPool } from "./internal/pool.js"
import { transaction } from "./internal/sql.js"
import { BACKEND, metadataError, registerSecret, scrub } from "./PgErrors.js"
import * as PgKeyValueStore from "./PgKeyValueStore.js"
import * as PgMetrics from "./PgMetrics.js"
import * as PgMigrations from "./PgMigrations.js"
import * as PgObjectStore from "./PgObjectStore.js"
import * as PgRangeTracker from "./PgRangeTracker.js"
import * as PgReplicaIndex from "./PgReplicaIndex.js"

/** Options of the PostgreSQL backend. */
export interface Options {
  /** `postgres://user:password@host:port/database` (a secret: it holds the password). */
  readonly url: Redacted.Redacted<string>
  /** Connections in the pool (default 10). A put holds one for its whole stream. */
  readonly poolSize?: number | undefined
  /** Schema holding Graviton's tables (default: the role's search_path, usually `public`). */
  readonly schema?: string | undefined
  /** Server-side limit per statement (default 30 seconds; 0 = none). */
  readonly statementTimeout?: Duration.DurationInput | undefined
  /** Limit for opening a connection (default 10 seconds). */
  readonly connectTimeout?: Duration.DurationInput | undefined
  /** Apply pending migrations when the layer is built (default false: run `graviton migrate`). */
  readonly migrate?: boolean | undefined
  /** Chunk size of new objects in bytes (default 1 MiB). */
  readonly chunkSize?: number | undefined
  /** Shown in pg_stat_activity (default "graviton"). */
  readonly applicationName?: string | undefined
}

/** The five ports of the backend, and the unit of work that spans them. */
export type Ports = MutableObjectStore | ImmutableObjectStore | KeyValueStore | RangeTracker | ReplicaIndex | UnitOfWork

/** The backend-neutral port, re-exported for callers that import it from here. */
export { UnitOfWork }

/** The underlying `pg` pool, for tools and the raw-driver benchmark (the stores run single statements on it). */
export { PgPool }

const connectError = (description: string) =>
  new MetadataError({ reason: "InvalidInput", backend: BACKEND, method: "connect", description })

/** The password in a connection URL, registered for scrubbing before anything can fail. */
const registerUrlSecrets = (url: string): void => {
  try {
    const parsed = new URL(url)
    if (parsed.password !== "") {
      registerSecret(parsed.password)
      registerSecret(decodeURIComponent(parsed.password))
    }
  } catch {
    // Not a URL (a libpq key=value string): the `password=` value is the secret.
    const m = /password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)/.exec(url)
    if (m) registerSecret(m[1]!.replace(/^'|'$/g, ""))
  }
}

/** Per-connection settings, passed as the `options` startup parameter. */
const startupOptions = (options: Options): string => {
  const parts: Array<string> = []
  if (options.schema !== undefined) parts.push(`-c search_path=${options.schema}`)
  const timeout = Duration.toMillis(Duration.decode(options.statementTimeout ?? Duration.seconds(30)))
  parts.push(`-c statement_timeout=${Math.max(0, Math.round(timeout))}`)
  return parts.join(" ")
}

/** Builds the pool, checks that it connects, and closes it with the scope. */
export const makePool = (options: Options): Effect.Effect<Pg.Pool, MetadataError, Scope.Scope> =>
  Effect.gen(function*() {
    const url = Redacted.value(options.url)
    registerUrlSecrets(url)
    if (options.schema !== undefined && !PgMigrations.isSchemaName(options.schema)) {
      return yield* connectError(`schema ${JSON.stringify(options.schema)} must be a lower-case identifier`)
    }
    const poolSize = options.poolSize ?? 10
    if (!Number.isSafeInteger(poolSize) || poolSize < 1) {
      return yield* connectError(`poolSize must be a positive integer, got ${poolSize}`)
    }
    const connectTimeout = Duration.decode(options.connectTimeout ?? Duration.seconds(10))
    const pool = yield* Effect.acquireRelease(
      Effect.try({
        try: () =>
          new Pg.Pool({
            connectionString: url,
            max: poolSize,
            options: startupOptions(options),
            application_name: options.applicationName ?? "graviton",
            connectionTimeoutMillis: Math.max(1, Math.round(Duration.toMillis(connectTimeout)))
          }),
        catch: metadataError("connect")
      }),
      (pool) => Effect.promise(() => pool.end()).pipe(Effect.timeoutOption(Duration.seconds(5)), Effect.ignore)
    )
    // An idle connection that dies emits "error" on the pool; unhandled, it would end the process.
    pool.on("error", () => {})
    yield* Effect.tryPromise({
      try: () => pool.query("SELECT 1"),
      catch: metadataError("connect")
    }).pipe(
      Effect.timeoutFail({
        duration: Duration.sum(connectTimeout, Duration.seconds(1)),
        onTimeout: () =>
          new MetadataError({ reason: "Timeout", backend: BACKEND, method: "connect", description: "no connection within the connect timeout" })
      })
    )
    return pool
  })

/** PgClient and SqlClient over a fresh pool (plus the pool itself as PgPool). */
export const client = (options: Options): Layer.Layer<PgClient.PgClient | SqlClient | PgPool, MetadataError> =>
  Layer.scopedContext(
    Effect.gen(function*() {
      const pool = yield* makePool(options)
      yield* PgMetrics.samplePool(pool)
      const pg = yield* PgClient.fromPool({
        acquire: Effect.succeed(pool),
        applicationName: options.applicationName ?? "graviton"
      }).pipe(Effect.mapError((e: SqlError) => metadataError("connect")(e)))
      return Context.make(PgClient.PgClient, pg).pipe(Context.add(SqlClient, pg), Context.add(PgPool, pool))
    })
  ).pipe(Layer.provide(Reactivity.layer))

/** The five ports (and UnitOfWork) over the PgClient of the context. */
export const ports = (
  options: Pick<Options, "chunkSize"> = {}
): Layer.Layer<Ports, ObjectStoreError, SqlClient> =>
  Layer.mergeAll(
    PgObjectStore.layer({ chunkSize: options.chunkSize }),
    PgKeyValueStore.layer,
    PgRangeTracker.layer,
    PgReplicaIndex.layer,
    unitOfWorkLayer
  )

/** Every port plus the clients, from one pool; migrates first when `options.migrate` is true. */
export const live = (
  options: Options
): Layer.Layer<Ports | PgClient.PgClient | SqlClient | PgPool, MetadataError | ObjectStoreError> => {
  const base = client(options)
  const migrated = options.migrate === true
    ? Layer.provideMerge(PgMigrations.layer({ schema: options.schema }), base)
    : base
  return Layer.provideMerge(ports(options), migrated)
}

/**
 * Runs `effect` in one database transaction: PostgreSQL ports called inside
 * it join that transaction (nested transactions become savepoints), so their
 * writes commit together or not at all. The hook for a unit of work that
 * spans ports, such as finalizing a content-addressed put.
 */
export const unitOfWork = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | MetadataError, R | SqlClient> =>
  Effect.flatMap(SqlClient, (sql) =>
    transaction(sql)(effect).pipe(
      Effect.catchIf((e): e is SqlError => e instanceof SqlError, (e) => Effect.fail(metadataError("commit")(e)))
    ))

/**
 * The UnitOfWork port over the SqlClient of the context: `atomically`
 * commits the writes that PostgreSQL ports make inside it together, or none
 * of them (CasBlobStore wraps its claim-move-publish step in it).
 */
export const unitOfWorkLayer: Layer.Layer<UnitOfWork, never, SqlClient> = Layer.effect(
  UnitOfWork,
  Effect.map(SqlClient, (sql) => ({
    atomically: <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      transaction(sql)(effect).pipe(
        Effect.catchIf((e): e is SqlError => e instanceof SqlError, (e) => Effect.fail(metadataError("commit")(e)))
      )
  }))
)

/** Options from the environment: GRAVITON_PG_URL (required) and the optional settings below. */
export const config: Config.Config<Options> = Config.all({
  url: Config.redacted("GRAVITON_PG_URL").pipe(
    Config.withDescription("PostgreSQL connection URL, postgres://user:password@host:port/database")
  ),
  poolSize: Config.integer("GRAVITON_PG_POOL_SIZE").pipe(
    Config.withDefault(10),
    Config.validate({ message: "must be at least 1", validation: (n) => n >= 1 }),
    Config.withDescription("Connections in the pool")
  ),
  schema: Config.string("GRAVITON_PG_SCHEMA").pipe(
    Config.validate({ message: "must be a lower-case SQL identifier", validation: PgMigrations.isSchemaName }),
    Config.option,
    Config.map((o) => (o._tag === "Some" ? o.value : undefined)),
    Config.withDescription("Schema of Graviton's tables (default: the role's search_path)")
  ),
  statementTimeout: Config.duration("GRAVITON_PG_STATEMENT_TIMEOUT").pipe(
    Config.withDefault(Duration.seconds(30)),
    Config.withDescription("Server-side statement timeout, e.g. '30 seconds' (0 = none)")
  ),
  migrate: Config.boolean("GRAVITON_PG_MIGRATE").pipe(
    Config.withDefault(false),
    Config.withDescription("Apply pending migrations on start")
  ),
  chunkSize: Config.integer("GRAVITON_PG_CHUNK_SIZE").pipe(
    Config.withDefault(PgObjectStore.DEFAULT_CHUNK_SIZE),
    Config.withDescription("Bytes per chunk row of new objects")
  )
})

/** Like `live`, with options from `Config` (by default `config`, i.e. the GRAVITON_PG_* variables). */
export const layerConfig = (
  options: Config.Config<Options> = config
): Layer.Layer<Ports | PgClient.PgClient | SqlClient | PgPool, MetadataError | ObjectStoreError | ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(options, live))

/** `url` with its password replaced by `***`, for messages and logs. */
export const redactUrl = (url: Redacted.Redacted<string>): string => scrub(Redacted.value(url))
