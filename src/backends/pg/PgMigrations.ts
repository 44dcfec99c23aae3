/**
 * Schema migrations: plain SQL files with Flyway's names in the repository's
 * `migrations/` folder (`V1__init.sql`, `V2__upload_ranges.sql` ...),
 * applied in version order and recorded in Flyway's own history table,
 * `flyway_schema_history`, exactly as Flyway records them (same table, same
 * columns, type `SQL`, Flyway's checksum). So Flyway and `graviton migrate`
 * can share a database in any order: each sees what the other applied.
 *
 * Databases migrated before that recorded in `graviton_migrations`: that
 * table is still read (its versions are copied into Flyway's history on the
 * next run) and kept in step, so older Graviton processes on the same
 * database still find their migrations applied.
 *
 * Two processes may start at once (two CLI invocations, a rolling deploy,
 * Flyway beside Graviton): the whole run happens in one transaction that
 * first takes Graviton's advisory lock and then the one Flyway takes for the
 * same history table, so the others wait, then find every migration
 * recorded and do nothing. A failing migration rolls back with everything
 * else in that run.
 *
 * Used by `PgLayers` when `migrate: true`, and by `graviton migrate`
 * through `run`.
 */
import { SqlClient } from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { readdir, readFile } from "node:fs/promises"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { MetadataError } from "../../core/Errors.js"
import { BACKEND, metadataError } from "./PgErrors.js"

/** Flyway's history table (its default name); Graviton records every migration there. */
export const TABLE = "flyway_schema_history"

/** Graviton's history table before it recorded in Flyway's: read, and kept in step where it exists. */
export const LEGACY_TABLE = "graviton_migrations"

/** Advisory lock key of the migration run ("graviton" in ASCII, truncated to 63 bits). */
export const LOCK_KEY = "5139415437345744495"

/** The repository's `migrations/` folder, next to `src/`. */
export const defaultDirectory: string = fileURLToPath(new URL("../../../migrations/", import.meta.url))

const FLYWAY = /^V(\d+)__([A-Za-z0-9_.-]+)\.sql$/

/** One migration file. */
export interface MigrationFile {
  readonly version: number
  /** The version as the file name spells it (Flyway records it so: `01` stays `01`). */
  readonly versionText: string
  readonly name: string
  readonly file: string
  /** The file name, which Flyway records as `script`. */
  readonly script: string
}

/** A migration file read: its SQL and how Flyway describes it. */
export interface Migration extends MigrationFile {
  /** The SQL, without a byte order mark. */
  readonly sql: string
  /** Flyway's checksum of the file. */
  readonly checksum: number
  /** Flyway's description: the name with `_` as spaces. */
  readonly description: string
}

/** Options of a migration run. */
export interface Options {
  /** Folder of `V<n>__<name>.sql` files; default: the repository's `migrations/`. */
  readonly directory?: string | undefined
  /** Schema to create (if missing) and migrate; default: the connection's search_path. */
  readonly schema?: string | undefined
  /**
   * Records this version as a Flyway baseline first (the schema already
   * holds everything up to it, e.g. restored from a dump without history):
   * only on a schema without migration history. Migrations after it run.
   */
  readonly baseline?: number | undefined
}

const failure = (description: string, cause?: unknown) =>
  new MetadataError({
    reason: "Unknown",
    backend: BACKEND,
    method: "migrate",
    description,
    ...(cause === undefined ? {} : { cause })
  })

const conflict = (description: string) =>
  new MetadataError({ reason: "Conflict", backend: BACKEND, method: "migrate", description })

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
        if (m !== null) {
          found.push({ version: Number(m[1]), versionText: m[1]!, name: m[2]!, file: join(directory, name), script: name })
        }
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

const CRC_TABLE = (() => {
  const table = new Int32Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
    table[n] = c
  }
  return table
})()

const crc32 = (bytes: Uint8Array): number => {
  let c = -1
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8)
  return (c ^ -1) | 0
}

/**
 * Flyway's checksum of a migration's text (ChecksumCalculator): CRC-32 over
 * the UTF-8 bytes of its lines without their terminators, a leading byte
 * order mark dropped, as a signed 32-bit integer. Java's readLine ends lines
 * at `\n`, `\r` or `\r\n`, so the sum is that of the text with every CR and
 * LF removed: line endings never change it.
 */
export const checksum = (text: string): number =>
  crc32(new TextEncoder().encode(text.replace(/^\uFEFF/, "").replace(/[\r\n]/g, "")))

/** Flyway's description of a migration name. */
export const description = (name: string): string => name.replace(/_/g, " ")

/** Reads the migrations of a folder. Text must be UTF-8, as Flyway reads it by default (it refuses anything else). */
export const load = (directory: string = defaultDirectory): Effect.Effect<ReadonlyArray<Migration>, MetadataError> =>
  Effect.flatMap(files(directory), (found) =>
    Effect.forEach(found, (m) =>
      Effect.tryPromise({
        try: async () => {
          const text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(await readFile(m.file))
          return { ...m, sql: text.replace(/^\uFEFF/, ""), checksum: checksum(text), description: description(m.name) }
        },
        catch: (cause) => failure(`cannot read ${m.file} as UTF-8`, cause)
      })))

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/

/** True for a schema name this backend accepts (lower-case identifier, no quoting needed). */
export const isSchemaName = (schema: string): boolean => SCHEMA_NAME.test(schema)

const quote = (identifier: string) => `"${identifier.replace(/"/g, "\"\"")}"`

/** Java's String.hashCode, which Flyway's lock key is made of. */
const javaHash = (s: string): number => {
  let h = 0
  for (let i = 0; i < s.length; i++) h = (Math.imul(31, h) + s.charCodeAt(i)) | 0
  return h
}

/**
 * The advisory lock Flyway takes while it migrates `schema`
 * (PostgreSQLAdvisoryLockTemplate): "Flyway" in ASCII plus the hash of the
 * quoted table name.
 */
export const flywayLockKey = (schema: string, table: string = TABLE): string =>
  (0x466c79776179n + BigInt(javaHash(`${quote(schema)}.${quote(table)}`))).toString()

/** Flyway's own CREATE TABLE for its history on PostgreSQL, so both tools leave the same schema. */
const historyDdl = (schema: string) => {
  const table = `${quote(schema)}.${quote(TABLE)}`
  return `CREATE TABLE ${table} (
    "installed_rank" INT NOT NULL,
    "version" VARCHAR(50),
    "description" VARCHAR(200) NOT NULL,
    "type" VARCHAR(20) NOT NULL,
    "script" VARCHAR(1000) NOT NULL,
    "checksum" INTEGER,
    "installed_by" VARCHAR(100) NOT NULL,
    "installed_on" TIMESTAMP NOT NULL DEFAULT now(),
    "execution_time" INTEGER NOT NULL,
    "success" BOOLEAN NOT NULL
);
ALTER TABLE ${table} ADD CONSTRAINT "${TABLE}_pk" PRIMARY KEY ("installed_rank");
CREATE INDEX "${TABLE}_s_idx" ON ${table} ("success");`
}

/** One row of Flyway's history. */
export interface HistoryRow {
  readonly installed_rank: number
  readonly version: string | null
  readonly description: string
  readonly type: string
  readonly script: string
  readonly checksum: number | null
  readonly success: boolean
}

/** Flyway compares versions part by part as numbers, trailing zeros ignored ("1.0" = "01"). */
const versionKey = (version: string): string => {
  const parts = version.replace(/_/g, ".").split(".").map((p) => (/^\d+$/.test(p) ? BigInt(p).toString() : p))
  while (parts.length > 1 && parts[parts.length - 1] === "0") parts.pop()
  return parts.join(".")
}

const compareVersions = (a: string, b: string): number => {
  const pa = versionKey(a).split(".")
  const pb = versionKey(b).split(".")
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = BigInt(/^\d+$/.test(pa[i] ?? "0") ? pa[i] ?? "0" : "0")
    const y = BigInt(/^\d+$/.test(pb[i] ?? "0") ? pb[i] ?? "0" : "0")
    if (x !== y) return x < y ? -1 : 1
  }
  return 0
}

/** What a history says is applied: versioned rows by version key, and the baseline if any. */
interface State {
  readonly applied: Map<string, HistoryRow>
  readonly baseline: string | undefined
  readonly failed: ReadonlyArray<HistoryRow>
}

/** Replays the history in rank order, as Flyway reads it: DELETE and UNDO rows take a version back out. */
export const state = (rows: ReadonlyArray<HistoryRow>): State => {
  const applied = new Map<string, HistoryRow>()
  const failed: Array<HistoryRow> = []
  let baseline: string | undefined
  for (const row of rows) {
    if (row.version === null) continue // the SCHEMA marker of a schema Flyway created
    const key = versionKey(row.version)
    if (!row.success) {
      failed.push(row)
    } else if (row.type === "BASELINE") {
      baseline = row.version
    } else if (row.type === "DELETE" || row.type.startsWith("UNDO_")) {
      applied.delete(key)
    } else {
      applied.set(key, row)
    }
  }
  return { applied, baseline, failed }
}

const isApplied = (s: State, version: string): boolean =>
  s.applied.has(versionKey(version)) || (s.baseline !== undefined && compareVersions(version, s.baseline) <= 0)

/** The pending migrations of `local` against a history, or why migrating must not go on. */
export const plan = (local: ReadonlyArray<Migration>, s: State): ReadonlyArray<Migration> | string => {
  if (s.failed.length > 0) {
    const row = s.failed[0]!
    return `${TABLE} records a failed migration (version ${row.version}, ${row.script}): ` +
      `fix the schema by hand, then run \`flyway repair\``
  }
  for (const m of local) {
    const row = s.applied.get(versionKey(m.versionText))
    if (row !== undefined && row.type === "SQL" && row.checksum !== null && row.checksum !== m.checksum) {
      return `${m.script} was changed after it was applied (checksum ${row.checksum} recorded, ${m.checksum} now): ` +
        `restore the file; never edit an applied migration`
    }
  }
  const pending = local.filter((m) => !isApplied(s, m.versionText))
  const versions = [...Array.from(s.applied.values(), (r) => r.version!), ...(s.baseline === undefined ? [] : [s.baseline])]
  const latest = versions.reduce<string | undefined>((a, v) => (a === undefined || compareVersions(v, a) > 0 ? v : a), undefined)
  const early = latest === undefined ? undefined : pending.find((m) => compareVersions(m.versionText, latest) < 0)
  if (early !== undefined) {
    return `${early.script} is not applied, but version ${latest} already is: ` +
      `migrations must be applied in version order`
  }
  return pending
}

/**
 * Applies every pending migration and returns the ones applied (empty when
 * the database was up to date). Safe to run concurrently from several
 * processes, and beside Flyway.
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
    const local = yield* load(options.directory)
    const body = Effect.gen(function*() {
      yield* sql`SELECT pg_advisory_xact_lock(${LOCK_KEY}::bigint)`
      if (options.schema !== undefined) yield* sql.unsafe(`CREATE SCHEMA IF NOT EXISTS ${options.schema}`)
      const schema = options.schema ??
        (yield* sql<{ readonly s: string | null }>`SELECT current_schema() AS s`)[0]?.s ?? null
      if (schema === null) {
        return yield* Effect.fail(failure("no schema to migrate: the search_path names no existing schema (set GRAVITON_PG_SCHEMA)"))
      }
      // The search_path Flyway migrates with (PostgreSQLConnection.changeCurrentSchemaTo): the
      // schema put in front of the session's path. Functions created with `SET search_path FROM
      // CURRENT` record it, so only the same path leaves the same schema whichever tool ran.
      const original = (yield* sql<{ readonly search_path: string }>`SHOW search_path`)[0]?.search_path ?? ""
      if (original !== schema && !original.startsWith(`${schema},`)) {
        const path = original === "" ? quote(schema) : `${quote(schema)},${original}`
        yield* sql`SELECT set_config('search_path', ${path}, true)`
      }
      yield* sql`SELECT pg_advisory_xact_lock(${flywayLockKey(schema)}::bigint)`
      const table = `${quote(schema)}.${quote(TABLE)}`
      const exists = (name: string) =>
        Effect.map(
          sql<{ readonly t: string | null }>`SELECT to_regclass(${`${quote(schema)}.${quote(name)}`})::text AS t`,
          (rows) => rows[0]?.t != null
        )
      if (!(yield* exists(TABLE))) yield* sql.unsafe(historyDdl(schema)).raw
      const history = () =>
        sql<HistoryRow>`SELECT installed_rank, version, description, type, script, checksum, success
          FROM ${sql(schema)}.${sql(TABLE)} ORDER BY installed_rank`
      const record = (row: {
        readonly version: string
        readonly description: string
        readonly type: string
        readonly script: string
        readonly checksum: number | null
        readonly executionTime: number
        readonly installedOn?: Date | undefined
      }) =>
        sql.unsafe(
          `INSERT INTO ${table} (installed_rank, version, description, type, script, checksum, installed_by,
             installed_on, execution_time, success)
           SELECT coalesce(max(installed_rank), 0) + 1, $1::varchar, $2::varchar, $3::varchar, $4::varchar, $5::integer,
             current_user, coalesce($6::timestamptz, now()), $7::integer, true
           FROM ${table}`,
          [row.version, row.description, row.type, row.script, row.checksum, row.installedOn ?? null, row.executionTime]
        )

      const legacy = (yield* exists(LEGACY_TABLE))
        ? yield* sql<{ readonly migration_id: number; readonly created_at: Date }>`
            SELECT migration_id, created_at FROM ${sql(schema)}.${sql(LEGACY_TABLE)} ORDER BY migration_id`
        : undefined

      let rows = yield* history()
      if (options.baseline !== undefined) {
        const recorded = state(rows).baseline
        // Asking again for the baseline already recorded is a no-op, as with Flyway.
        if (recorded === undefined || compareVersions(recorded, String(options.baseline)) !== 0) {
          if (rows.some((r) => r.version !== null) || (legacy?.length ?? 0) > 0) {
            return yield* Effect.fail(conflict(`cannot baseline: ${TABLE} already records migrations`))
          }
          yield* record({
            version: String(options.baseline),
            description: "<< Flyway Baseline >>",
            type: "BASELINE",
            script: "<< Flyway Baseline >>",
            checksum: null,
            executionTime: 0
          })
          rows = yield* history()
        }
      }

      // A database migrated before Flyway's table was used: copy its versions over, once.
      if (legacy !== undefined) {
        const s = state(rows)
        for (const { migration_id, created_at } of legacy) {
          const m = local.find((l) => l.version === migration_id)
          if (m === undefined || isApplied(s, m.versionText)) continue
          yield* record({ ...m, version: m.versionText, type: "SQL", executionTime: 0, installedOn: created_at })
        }
        rows = yield* history()
      }

      const s = state(rows)
      const pending = plan(local, s)
      if (typeof pending === "string") return yield* Effect.fail(conflict(pending))
      if (s.applied.size === 0 && s.baseline === undefined && pending.length > 0 && (yield* exists("objects"))) {
        return yield* Effect.fail(conflict(
          `schema ${schema} already holds Graviton's tables but no migration history: if they are those of ` +
            `V<n>, record that with \`graviton migrate --baseline <n>\` (or Flyway's baselineVersion)`
        ))
      }
      for (const m of pending) {
        const started = Date.now()
        // No parameters: the simple query protocol, which accepts several statements.
        yield* sql.unsafe(m.sql).raw
        yield* record({ ...m, version: m.versionText, type: "SQL", executionTime: Date.now() - started })
      }
      if (legacy !== undefined) {
        for (const m of local) {
          if (!isApplied(s, m.versionText) && !pending.includes(m)) continue
          yield* sql`INSERT INTO ${sql(schema)}.${sql(LEGACY_TABLE)} (migration_id, name)
            VALUES (${m.version}, ${m.name}) ON CONFLICT DO NOTHING`
        }
      }
      return pending.map((m) => [m.version, m.name] as const)
    })
    return yield* sql.withTransaction(body).pipe(
      Effect.catchAll((error) => Effect.fail(error instanceof MetadataError ? error : metadataError("migrate")(error)))
    )
  })

const nameOf = (script: string, fallback: string): string => /^V[^_]+__(.+)\.sql$/.exec(script)?.[1] ?? fallback

/** The migrations recorded in the database, in version order (empty before the first run). */
export const applied: Effect.Effect<ReadonlyArray<readonly [number, string]>, MetadataError, SqlClient> = Effect.gen(
  function*() {
    const sql = yield* SqlClient
    const exists = (name: string) =>
      Effect.map(sql<{ readonly t: string | null }>`SELECT to_regclass(${name})::text AS t`, (rows) => rows[0]?.t != null)
    const found = new Map<number, string>()
    if (yield* exists(TABLE)) {
      const s = state(yield* sql<HistoryRow>`
        SELECT installed_rank, version, description, type, script, checksum, success
        FROM ${sql(TABLE)} ORDER BY installed_rank`)
      for (const row of s.applied.values()) {
        found.set(Number(row.version), nameOf(row.script, row.description.replace(/ /g, "_")))
      }
    }
    if (yield* exists(LEGACY_TABLE)) {
      const rows = yield* sql<{ readonly migration_id: number; readonly name: string }>`
        SELECT migration_id, name FROM ${sql(LEGACY_TABLE)}`
      for (const r of rows) if (!found.has(r.migration_id)) found.set(r.migration_id, r.name)
    }
    return Array.from(found.entries()).sort((a, b) => a[0] - b[0]).map(([v, n]) => [v, n] as const)
  }
).pipe(Effect.mapError(metadataError("migrate")))

/** A layer that migrates when built (for `PgLayers.live({ migrate: true })`). */
export const layer = (options: Options = {}): Layer.Layer<never, MetadataError, SqlClient> =>
  Layer.effectDiscard(run(options))
