/**
 * PgLayers: every PostgreSQL port from one PgClient.
 *
 * - `client(options)` builds the pool and the PgClient / SqlClient over it
 *   (search_path, statement_timeout and idle_in_transaction_session_timeout
 *   are set per connection; the
 *   password is registered with PgErrors.scrub so that it never shows up in
 *   an error or a log line; pool gauges are sampled into the
 *   MetricsRegistry, when one is provided);
 * - `live(options)` is the client and every port (object store included),
 *   migrating first when `migrate: true`; `layerConfig()` reads the options
 *   from the environment (see `config`);
 * - `metadata(options)` / `metadataConfig()` are the same without the object
 *   store: KeyValueStore, RangeTracker, ReplicaIndex and UnitOfWork, for a
 *   store whose bytes live elsewhere (S3 bytes, PostgreSQL metadata). Bytes
 *   cannot end up in PostgreSQL through it, whatever the merge order.
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
import type { UnitOfWork } from "../../ports/UnitOfWork.js"
import { PgPool } from "./internal/pool.js"
import { defaultPermits } from "./internal/writers.js"
import { BACKEND, metadataError, registerSecret } from "./PgErrors.js"
import * as PgKeyValueStore from "./PgKeyValueStore.js"
import * as PgMetrics from "./PgMetrics.js"
import * as PgMigrations from "./PgMigrations.js"
import * as PgObjectStore from "./PgObjectStore.js"
import * as PgRangeTracker from "./PgRangeTracker.js"
import * as PgReplicaIndex from "./PgReplicaIndex.js"
import * as PgUnitOfWork from "./PgUnitOfWork.js"

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
  /**
   * How long a session may sit idle inside an open transaction before the server ends it
   * (`idle_in_transaction_session_timeout`; default 60 seconds; 0 = none). A streaming put holds a
   * transaction while its caller sends the bytes: a caller that stalls this long loses the put
   * (Timeout) and its connection goes back to the pool, instead of holding it forever.
   */
  readonly idleInTransactionTimeout?: Duration.DurationInput | undefined
  /**
   * Streaming puts that may hold a connection at once (default: half the pool, at least 1). The
   * others wait their turn, and the rest of the pool is kept for reads, small writes and metadata.
   */
  readonly maxWriters?: number | undefined
  /** Limit for opening a connection (default 10 seconds). */
  readonly connectTimeout?: Duration.DurationInput | undefined
  /** Apply pending migrations when the layer is built (default false: run `graviton migrate`). */
  readonly migrate?: boolean | undefined
  /** Chunk size of new objects in bytes (default 1 MiB). */
  readonly chunkSize?: number | undefined
  /** Shown in pg_stat_activity (default "graviton"). */
  readonly applicationName?: string | undefined
}

/** The metadata ports: what `metadata` provides besides the clients. */
export type MetadataPorts = KeyValueStore | RangeTracker | ReplicaIndex | UnitOfWork

/** The clients every layer of this module provides too. */
export type Clients = PgClient.PgClient | SqlClient | PgPool

/** Every service `live` provides: the object store ports, the metadata ports and the clients. */
export type Services = MutableObjectStore | ImmutableObjectStore | MetadataPorts | Clients

/** The default of `maxWriters` for a pool of `poolSize` connections: half of it, at least one. */
export const defaultMaxWriters = defaultPermits

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

/** Default of `idleInTransactionTimeout`: far above the gap between two chunks of any live writer. */
export const DEFAULT_IDLE_IN_TRANSACTION = Duration.seconds(60)

/** Per-connection settings, passed as the `options` startup parameter. */
const startupOptions = (options: Options): string => {
  const parts: Array<string> = []
  if (options.schema !== undefined) parts.push(`-c search_path=${options.schema}`)
  const timeout = Duration.toMillis(Duration.decode(options.statementTimeout ?? Duration.seconds(30)))
  parts.push(`-c statement_timeout=${Math.max(0, Math.round(timeout))}`)
  const idle = Duration.toMillis(Duration.decode(options.idleInTransactionTimeout ?? DEFAULT_IDLE_IN_TRANSACTION))
  parts.push(`-c idle_in_transaction_session_timeout=${Math.max(0, Math.round(idle))}`)
  return parts.join(" ")
}

/** Builds the pool, checks that it connects, and closes it with the scope. */
const makePool = (options: Options): Effect.Effect<Pg.Pool, MetadataError, Scope.Scope> =>
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
    if (options.maxWriters !== undefined && (!Number.isSafeInteger(options.maxWriters) || options.maxWriters < 1)) {
      return yield* connectError(`maxWriters must be a positive integer, got ${options.maxWriters}`)
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

/** The client, migrated first when `options.migrate` is true. */
const connected = (options: Options): Layer.Layer<Clients, MetadataError> =>
  options.migrate === true
    ? Layer.provideMerge(PgMigrations.layer({ schema: options.schema }), client(options))
    : client(options)

const metadataPorts: Layer.Layer<MetadataPorts, never, SqlClient> = Layer.mergeAll(
  PgKeyValueStore.layer,
  PgRangeTracker.layer,
  PgReplicaIndex.layer,
  PgUnitOfWork.layer
)

/** Every port plus the clients, from one pool; migrates first when `options.migrate` is true. */
export const live = (options: Options): Layer.Layer<Services, MetadataError | ObjectStoreError> =>
  Layer.provideMerge(
    Layer.merge(PgObjectStore.layer({ chunkSize: options.chunkSize, maxWriters: options.maxWriters }), metadataPorts),
    connected(options)
  )

/** The metadata ports plus the clients, without an object store; migrates first when `options.migrate` is true. */
export const metadata = (options: Options): Layer.Layer<MetadataPorts | Clients, MetadataError> =>
  Layer.provideMerge(metadataPorts, connected(options))

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
  idleInTransactionTimeout: Config.duration("GRAVITON_PG_IDLE_IN_TRANSACTION_TIMEOUT").pipe(
    Config.withDefault(DEFAULT_IDLE_IN_TRANSACTION),
    Config.withDescription("A session idle this long inside a transaction (a stalled put) is ended by the server (0 = never)")
  ),
  maxWriters: Config.integer("GRAVITON_PG_MAX_WRITERS").pipe(
    Config.validate({ message: "must be at least 1", validation: (n) => n >= 1 }),
    Config.option,
    Config.map((o) => (o._tag === "Some" ? o.value : undefined)),
    Config.withDescription("Streaming puts holding a connection at once (default: half the pool)")
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
  options: Config.Config.Wrap<Options> = config
): Layer.Layer<Services, MetadataError | ObjectStoreError | ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(options), live))

/** Like `metadata`, with options from `Config` (by default `config`). */
export const metadataConfig = (
  options: Config.Config.Wrap<Options> = config
): Layer.Layer<MetadataPorts | Clients, MetadataError | ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(options), metadata))
