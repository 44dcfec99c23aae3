/**
 * Migrations: Flyway-named files in version order, a fresh database, a
 * re-run that does nothing, two migrators racing on one database, a schema
 * of its own, a failing migration that leaves nothing behind, and the
 * history checks Flyway makes too (an edited file, a failed or skipped
 * version). Flyway itself: Flyway.test.ts.
 */
import { describe, expect, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql/SqlClient"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Pg from "../../../src/stores/PgStore.js"
import * as PgLayers from "../../../src/backends/pg/PgLayers.js"
import * as PgMigrations from "../../../src/backends/pg/PgMigrations.js"
import { KeyValueStore } from "../../../src/ports/KeyValueStore.js"
import { utf8 } from "../../../src/testing/bytes.js"
import { gate } from "../../../src/testing/capabilities.js"
import { freshDatabase, skipReason, usePostgres } from "../../harness/postgres.js"

/** What `graviton migrate` runs: the migrations of the database named by GRAVITON_PG_*. */
const migrateFromEnv = Effect.flatMap(Pg.config, Pg.migrate)

usePostgres()
const test = gate(it.scoped, skipReason())

/** A bare client (no migration) on a fresh database. */
const bareClient = (label: string, options: Partial<PgLayers.Options> = {}) =>
  Effect.map(freshDatabase(label), (db) => PgLayers.client({ url: Redacted.make(db.url), ...options }))

const expected = [[1, "init"], [2, "upload_ranges"], [3, "replicas"]]

const tables = (schema: string) =>
  Effect.flatMap(SqlClient, (sql) =>
    Effect.map(
      sql<{ table_name: string }>`
        SELECT table_name FROM information_schema.tables WHERE table_schema = ${schema} ORDER BY table_name`,
      (rows) => rows.map((r) => r.table_name)
    ))

const scratchDir = (files: Record<string, string>) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const dir = mkdtempSync(join(tmpdir(), "graviton-migrations-"))
      for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text)
      return dir
    }),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )

describe("PgMigrations", () => {
  it.effect("the repository's migrations are found in version order; other files are ignored", () =>
    Effect.gen(function*() {
      const found = yield* PgMigrations.files()
      expect(found.map((m) => [m.version, m.name])).toEqual(expected)
    }))

  it.scoped("two files with one version are an error", () =>
    Effect.gen(function*() {
      const dir = yield* scratchDir({ "V1__a.sql": "", "V1__b.sql": "", "V2__c.sql": "", "README.md": "", "V3_bad.sql": "" })
      const error = yield* Effect.flip(PgMigrations.files(dir))
      expect(error.description).toContain("version 1")
    }))

  test("a fresh database gets every migration; running again applies nothing", () =>
    Effect.gen(function*() {
      const client = yield* bareClient("migrate_fresh")
      yield* Effect.gen(function*() {
        expect(yield* PgMigrations.applied).toEqual([])
        expect(yield* PgMigrations.run()).toEqual(expected)
        expect(yield* PgMigrations.applied).toEqual(expected)
        expect(yield* tables("public")).toEqual(
          ["flyway_schema_history", "kv", "object_chunks", "object_contents", "objects", "replicas", "upload_ranges"]
        )
        expect(yield* PgMigrations.run()).toEqual([])
        expect(yield* PgMigrations.applied).toEqual(expected)
      }).pipe(Effect.provide(client))
    }))

  test("two migrators racing on one database: one applies everything, the other nothing, both succeed", () =>
    Effect.gen(function*() {
      const db = yield* freshDatabase("migrate_race")
      const client = () => PgLayers.client({ url: Redacted.make(db.url), poolSize: 2 })
      const [a, b] = yield* Effect.all([
        Effect.provide(PgMigrations.run(), client()),
        Effect.provide(PgMigrations.run(), client())
      ], { concurrency: "unbounded" })
      expect([a, b].map((r) => r.length).sort()).toEqual([0, 3])
      expect(yield* Effect.provide(PgMigrations.applied, client())).toEqual(expected)
      // And the layer's opt-in migration on top of that is a no-op that works.
      const works = yield* Effect.flatMap(KeyValueStore, (kv) =>
        Effect.zipRight(kv.put("k", utf8("v")), kv.get("k"))).pipe(
          Effect.provide(PgLayers.live({ url: Redacted.make(db.url), migrate: true }))
        )
      expect(Option.isSome(works)).toBe(true)
    }), 60_000)

  test("a schema of its own: created, migrated, and used through search_path", () =>
    Effect.gen(function*() {
      const db = yield* freshDatabase("migrate_schema")
      const live = PgLayers.live({ url: Redacted.make(db.url), schema: "graviton_app", migrate: true })
      yield* Effect.gen(function*() {
        const kv = yield* KeyValueStore
        yield* kv.put("in-schema", utf8("yes"))
        expect(yield* tables("graviton_app")).toContain("kv")
        expect(yield* tables("public")).toEqual([])
        const sql = yield* SqlClient
        const rows = yield* sql<{ n: string }>`SELECT count(*)::text AS n FROM graviton_app.kv`
        expect(rows[0]!.n).toBe("1")
      }).pipe(Effect.provide(Layer.fresh(live)))
    }))

  test("PgStore.migrate with PgStore.config (graviton migrate) migrates the database and schema named by GRAVITON_PG_*", () =>
    Effect.gen(function*() {
      const db = yield* freshDatabase("migrate_env")
      const env = ConfigProvider.fromMap(new Map([["GRAVITON_PG_URL", db.url], ["GRAVITON_PG_SCHEMA", "from_env"]]))
      const first = yield* Effect.withConfigProvider(migrateFromEnv, env)
      expect(first).toEqual(expected)
      expect(yield* Effect.withConfigProvider(migrateFromEnv, env)).toEqual([])
      const inSchema = yield* tables("from_env").pipe(Effect.provide(PgLayers.client({ url: Redacted.make(db.url) })))
      expect(inSchema).toContain("objects")
      // Without GRAVITON_PG_URL it is a configuration error, not a defect.
      const missing = yield* Effect.flip(Effect.withConfigProvider(migrateFromEnv, ConfigProvider.fromMap(new Map())))
      expect(missing._tag).not.toBe("MetadataError")
    }))

  test("a migration edited after it was applied, a failed migration in the history, or one applied out of order stop the run", () =>
    Effect.gen(function*() {
      const first = { "V1__a.sql": "CREATE TABLE a (id int);\n", "V2__b.sql": "CREATE TABLE b (id int);\n" }
      const client = yield* bareClient("migrate_history")
      yield* Effect.gen(function*() {
        const sql = yield* SqlClient
        expect(yield* PgMigrations.run({ directory: yield* scratchDir(first) })).toEqual([[1, "a"], [2, "b"]])
        // Same statements with other line endings: Flyway's checksum ignores them, so does ours.
        const crlf = yield* scratchDir({ "V1__a.sql": "CREATE TABLE a (id int);\r\n", "V2__b.sql": "CREATE TABLE b (id int);" })
        expect(yield* PgMigrations.run({ directory: crlf })).toEqual([])

        const edited = yield* Effect.flip(PgMigrations.run({ directory: yield* scratchDir({ ...first, "V2__b.sql": "CREATE TABLE b (id bigint);" }) }))
        expect(edited.reason).toBe("Conflict")
        expect(edited.description).toContain("V2__b.sql was changed after it was applied")

        const gap = yield* Effect.flip(PgMigrations.run({
          directory: yield* scratchDir({ ...first, "V0__early.sql": "SELECT 1;", "V3__c.sql": "CREATE TABLE c (id int);" })
        }))
        expect(gap.description).toContain("V0__early.sql is not applied, but version 2 already is")
        expect(yield* tables("public")).not.toContain("c")

        yield* sql`UPDATE flyway_schema_history SET success = false WHERE version = '2'`
        const failed = yield* Effect.flip(PgMigrations.run({ directory: yield* scratchDir(first) }))
        expect(failed.description).toContain("records a failed migration (version 2")
      }).pipe(Effect.provide(client))
    }))

  test("a failing migration fails the run, and everything of that run is rolled back", () =>
    Effect.gen(function*() {
      const dir = yield* scratchDir({
        "V1__good.sql": "CREATE TABLE good (id int);",
        "V2__bad.sql": "CREATE TABLE worse (id int); SELECT no_such_function();"
      })
      const client = yield* bareClient("migrate_fail")
      yield* Effect.gen(function*() {
        const error = yield* Effect.flip(PgMigrations.run({ directory: dir }))
        expect(error._tag).toBe("MetadataError")
        expect(error.method).toBe("migrate")
        expect(error.description).toContain("no_such_function")
        expect(yield* PgMigrations.applied).toEqual([])
        // Not even the migrations table: it was created in the same, rolled-back transaction.
        expect(yield* tables("public")).toEqual([])
      }).pipe(Effect.provide(client))
    }))
})
