/**
 * Schema migrations: plain SQL files with Flyway-style names in the
 * repository's `migrations/` folder (`V1__init.sql`, `V2__upload_ranges.sql`
 * ...), applied in version order through `@effect/sql`'s Migrator and
 * recorded in the `graviton_migrations` table.
 *
 * Two processes may start at once (two CLI invocations, a rolling deploy):
 * the whole run happens in one transaction that first takes a
 * transaction-level advisory lock, so the second waits, then finds every
 * migration recorded and does nothing. A failing migration rolls back with
 * everything else in that run.
 *
 * Used by `PgLayers` when `migrate: true`, and by `graviton migrate`
 * through `run` / `runFromConfig`.
 */
import * as Migrator from "@effect/sql/Migrator"
import { SqlClient } from "@effect/sql/SqlClient"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { readdir, readFile } from "node:fs/promises"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { MetadataError } from "../../core/Errors.js"
import { BACKEND, metadataError } from "./PgErrors.js"

/** Table recording applied migrations (same shape as @effect/sql's default). */
export const TABLE = "graviton_migrations"

/** Advisory lock key of the migration run ("graviton" in ASCII, truncated to 63 bits). */
export const LOCK_KEY = "5139415437345744495"

/** The repository's `migrations/` folder, next to `src/`. */
export const defaultDirectory: string = fileURLToPath(new URL("../../../migrations/", import.meta.url))

const FLYWAY = /^V(\d+)__([A-Za-z0-9_.-]+)\.sql$/

/** One migration file. */
export interface MigrationFile {
  readonly version: number
  readonly name: string
  readonly file: string
}

/** Options of a migration run. */
export interface Options {
  /** Folder of `V<n>__<name>.sql` files; default: the repository's `migrations/`. */
  readonly directory?: string | undefined
  /** Schema to create (if missing) and migrate; default: the connection's search_path. */
  readonly schema?: string | undefined
}

const failure = (description: string, cause?: unknown) =>
  new MetadataError({
    reason: "Unknown",
    backend: BACKEND,
    method: "migrate",
    description,
    ...(cause === undefined ? {} : { cause })
  })

/** Lists the migration files of a folder in version order; duplicate versions are an error. */
export const files = (directory: string = defaultDirectory): Effect.Effect<ReadonlyArray<MigrationFile>, MetadataError> =>
  Effect.tryPromise({
    try: () => readdir(directory),
    catch: (cause) => failure(`cannot read the migrations folder ${directory}`, cause)
  }).pipe(
    Effect.flatMap((names) => {
      const found: Array<MigrationFile> = []
      for (const name of names) {
        const m = FLYWAY.exec(name)
        if (m !== null) found.push({ version: Number(m[1]), name: m[2]!, file: join(directory, name) })
      }
      found.sort((a, b) => a.version - b.version)
      for (let i = 1; i < found.length; i++) {
        if (found[i]!.version === found[i - 1]!.version) {
          return Effect.fail(failure(`two migrations have version ${found[i]!.version}`))
        }
      }
      return Effect.succeed(found)
    })
  )

/** A Migrator loader for Flyway-named SQL files: each migration runs its file as one multi-statement script. */
export const loader = (directory: string = defaultDirectory): Migrator.Loader =>
  files(directory).pipe(
    Effect.map((found) =>
      found.map((m): Migrator.ResolvedMigration => [
        m.version,
        m.name,
        Effect.succeed(
          Effect.flatMap(
            Effect.promise(() => readFile(m.file, "utf8")),
            // No parameters: the simple query protocol, which accepts several statements.
            (text) => Effect.flatMap(SqlClient, (sql) => sql.unsafe(text).raw)
          )
        )
      ])
    ),
    Effect.mapError((e) => new Migrator.MigrationError({ reason: "import-error", message: e.message, cause: e }))
  )

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/

/** True for a schema name this backend accepts (lower-case identifier, no quoting needed). */
export const isSchemaName = (schema: string): boolean => SCHEMA_NAME.test(schema)

const migrator = Migrator.make({})

/**
 * Applies every pending migration and returns the ones applied (empty when
 * the database was up to date). Safe to run concurrently from several processes.
 */
export const run = (options: Options = {}): Effect.Effect<ReadonlyArray<readonly [number, string]>, MetadataError, SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    if (options.schema !== undefined && !isSchemaName(options.schema)) {
      return yield* new MetadataError({
        reason: "InvalidInput",
        backend: BACKEND,
        method: "migrate",
        description: `schema ${JSON.stringify(options.schema)} must be a lower-case identifier`
      })
    }
    const body = Effect.gen(function*() {
      yield* sql`SELECT pg_advisory_xact_lock(${LOCK_KEY}::bigint)`
      if (options.schema !== undefined) {
        yield* sql.unsafe(`CREATE SCHEMA IF NOT EXISTS ${options.schema}`)
        yield* sql.unsafe(`SET LOCAL search_path TO ${options.schema}`)
      }
      // Created here, under the lock: the Migrator's own probe-then-create
      // would abort this transaction on a fresh database.
      yield* sql.unsafe(`CREATE TABLE IF NOT EXISTS ${TABLE} (
        migration_id integer PRIMARY KEY,
        created_at timestamptz NOT NULL DEFAULT now(),
        name text NOT NULL
      )`)
      return yield* migrator({ loader: loader(options.directory), table: TABLE })
    })
    return yield* sql.withTransaction(body).pipe(
      // The Migrator turns a failing migration into a defect; it is an ordinary failure here.
      Effect.catchAllCause((cause) => {
        const error = Option.getOrElse(Cause.failureOption(cause), () => Cause.squash(cause))
        return Cause.isInterruptedOnly(cause)
          ? Effect.failCause(cause as Cause.Cause<never>)
          : Effect.fail(
            error instanceof Migrator.MigrationError
              ? metadataError("migrate")(error.cause ?? error)
              : metadataError("migrate")(error)
          )
      }),
      Effect.map((applied) => applied.map(([id, name]) => [id, name] as const))
    )
  })

/** The migrations recorded in the database, in version order (empty before the first run). */
export const applied: Effect.Effect<ReadonlyArray<readonly [number, string]>, MetadataError, SqlClient> = Effect.gen(
  function*() {
    const sql = yield* SqlClient
    const exists = yield* sql<{ readonly t: string | null }>`SELECT to_regclass(${TABLE})::text AS t`
    if (exists[0]?.t == null) return []
    const rows = yield* sql<{ readonly migration_id: number; readonly name: string }>`
      SELECT migration_id, name FROM ${sql(TABLE)} ORDER BY migration_id`
    return rows.map((r) => [r.migration_id, r.name] as const)
  }
).pipe(Effect.mapError(metadataError("migrate")))

/** A layer that migrates when built (for `PgLayers.live({ migrate: true })`). */
export const layer = (options: Options = {}): Layer.Layer<never, MetadataError, SqlClient> =>
  Layer.effectDiscard(run(options))
