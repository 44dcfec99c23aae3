/**
 * Flyway and `graviton migrate` sharing one database, with real Flyway
 * (test/harness/flyway.ts): in every order both end up to date with the same
 * schema and the same history; Flyway's checksums are ours (line endings and
 * byte order marks included); a database migrated by Flyway, by Graviton
 * before it recorded in Flyway's table, or restored without any history, is
 * adopted.
 */
import { describe, expect, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { execFile, spawnSync } from "node:child_process"
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as PgLayers from "../../../src/backends/pg/PgLayers.js"
import * as PgMigrations from "../../../src/backends/pg/PgMigrations.js"
import { gate } from "../../../src/testing/capabilities.js"
import * as Flyway from "../../harness/flyway.js"
import { findBinDir, freshDatabase, skipReason, usePostgres } from "../../harness/postgres.js"

usePostgres()
const test = gate(it.scoped, skipReason(), Flyway.skipReason())

const repoMigrations = join(process.cwd(), "migrations")
const versions = ["1", "2", "3"]

/** `graviton migrate` on `url`: the versions it applied. */
const graviton = (url: string, options: PgMigrations.Options = {}) =>
  PgMigrations.run(options).pipe(
    Effect.map((applied) => applied.map(([v]) => String(v))),
    Effect.provide(PgLayers.client({ url: Redacted.make(url) }))
  )

/** `flyway migrate` on `url`: the number of migrations it executed; fails the test with Flyway's message otherwise. */
const flyway = (target: Flyway.Target) =>
  Effect.promise(() => Flyway.flyway(["migrate"], target)).pipe(
    Effect.map((r) => {
      expect(r.error, "flyway migrate").toBe("")
      return r.results.migrate!.executed as number
    })
  )

const withClient = <A, E>(url: string, f: Effect.Effect<A, E, SqlClient>) =>
  Effect.provide(f, PgLayers.client({ url: Redacted.make(url) }))

/**
 * Both tools find nothing to do (Flyway says so in its own words), Flyway
 * validates, and `flyway info` lists every migration applied. One JVM for
 * Flyway's three commands.
 */
const expectUpToDate = (
  target: Flyway.Target,
  states: ReadonlyArray<readonly [string, string]> = versions.map((v) => [v, "SUCCESS"] as const)
) =>
  Effect.gen(function*() {
    expect(yield* graviton(target.url, { schema: target.schema })).toEqual([])
    const r = yield* Effect.promise(() => Flyway.flyway(["migrate", "validate", "info"], target))
    expect(r.error, r.log).toBe("")
    expect(r.results.migrate!.executed, r.log).toBe(0)
    expect(r.log).toMatch(/Schema "[a-z_]+" is up to date/)
    expect(r.results.validate, r.log).toEqual({ valid: true, errors: "" })
    const listed = r.results.info!.migrations as ReadonlyArray<Flyway.Info>
    expect(listed.filter((m) => m.version !== null).map((m) => [m.version, m.state])).toEqual(states)
    return listed
  })

/** What a history records, less times, durations and ranks' owners. */
const history = (url: string, schema = "public") =>
  withClient(
    url,
    Effect.flatMap(SqlClient, (sql) =>
      sql<Record<string, unknown>>`
        SELECT installed_rank, version, description, type, script, checksum, installed_by, success
        FROM ${sql(schema)}.flyway_schema_history WHERE version IS NOT NULL ORDER BY installed_rank`)
  )

const runFile = (command: string, args: ReadonlyArray<string>) =>
  new Promise<string>((resolve, reject) =>
    execFile(command, args, { maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) =>
      error === null ? resolve(stdout) : reject(new Error(`${command} failed: ${stderr}`))))

/** pg_dump --schema-only of the database, less comments, settings and the dump's random restrict key. */
const schemaDump = (url: string) =>
  Effect.promise(async () => {
    const bin = findBinDir()
    const dump = await runFile(bin === undefined ? "pg_dump" : join(bin, "pg_dump"), [
      "--schema-only",
      "--no-owner",
      "--no-privileges",
      `--dbname=${url}`
    ])
    return dump.split("\n")
      .filter((l) => l.trim() !== "" && !l.startsWith("--") && !/^\\(un)?restrict /.test(l) && !/^(SET|SELECT pg_catalog\.set_config)/.test(l))
      .join("\n")
  })

/** Runs the migrations' SQL straight, as a schema restored without history would be. */
const applyByHand = (url: string, upTo: number) =>
  withClient(
    url,
    Effect.flatMap(SqlClient, (sql) =>
      Effect.forEach(
        readdirSync(repoMigrations).filter((f) => /^V\d+__/.test(f)).sort().filter((f) => Number(/^V(\d+)/.exec(f)![1]) <= upTo),
        (f) => sql.unsafe(readFileSync(join(repoMigrations, f), "utf8")).raw
      ))
  )

const dumps = new Map<string, { schema: string; history: unknown }>()

describe("Flyway interoperability", () => {
  const orders: ReadonlyArray<ReadonlyArray<"flyway" | "graviton">> = [
    ["flyway", "graviton"],
    ["graviton", "flyway"],
    ["flyway", "graviton", "flyway", "graviton"],
    ["graviton", "flyway", "graviton", "flyway"]
  ]
  for (const order of orders) {
    test(`${order.join(" then ")}: the first applies V1-V3, every later run finds the schema up to date`, () =>
      Effect.gen(function*() {
        const db = yield* freshDatabase(`fw_${order.map((t) => t[0]).join("")}`)
        for (const [i, tool] of order.entries()) {
          const applied = tool === "graviton"
            ? (yield* graviton(db.url)).length
            : yield* flyway({ url: db.url })
          expect(applied, `${tool} run ${i + 1}`).toBe(i === 0 ? 3 : 0)
        }
        yield* expectUpToDate({ url: db.url })
        dumps.set(order.join(","), { schema: yield* schemaDump(db.url), history: yield* history(db.url) })
      }), 180_000)
  }

  test("every order leaves the same schema (pg_dump) and the same history", () =>
    Effect.sync(() => {
      const all = orders.map((o) => dumps.get(o.join(",")))
      expect(all.every((d) => d !== undefined), "the four order tests ran").toBe(true)
      for (const d of all.slice(1)) {
        expect(d!.schema).toBe(all[0]!.schema)
        expect(d!.history).toEqual(all[0]!.history)
      }
      expect(all[0]!.schema).toContain("CREATE TABLE public.flyway_schema_history")
      expect(all[0]!.schema).toContain("CREATE TABLE public.objects")
    }))

  test("in a schema of their own (GRAVITON_PG_SCHEMA = Flyway's schemas), both orders, the same schema", () =>
    Effect.gen(function*() {
      const schemas: Array<string> = []
      for (const first of ["flyway", "graviton"] as const) {
        const db = yield* freshDatabase(`fw_schema_${first}`)
        const target = { url: db.url, schema: "graviton" }
        if (first === "flyway") expect(yield* flyway(target)).toBe(3)
        else expect(yield* graviton(db.url, { schema: "graviton" })).toEqual(versions)
        yield* expectUpToDate(target)
        const tables = yield* withClient(
          db.url,
          Effect.flatMap(SqlClient, (sql) => sql<{ n: string }>`
            SELECT count(*)::text AS n FROM information_schema.tables WHERE table_schema = 'public'`)
        )
        expect(tables[0]!.n).toBe("0")
        schemas.push(yield* schemaDump(db.url))
      }
      expect(schemas[1]).toBe(schemas[0])
    }), 180_000)

  test("Flyway's checksums are ours: the repository's files, and files with CRLF, CR, a byte order mark and non-ASCII text", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "graviton-flyway-sums-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
      writeFileSync(join(dir, "V1__crlf.sql"), "-- Windows\r\nCREATE TABLE a (id int);\r\n\r\n")
      writeFileSync(join(dir, "V2__bom_and_cr.sql"), "\uFEFFCREATE TABLE b (id int);\rCREATE TABLE c (id int);")
      writeFileSync(join(dir, "V3__unicode_text.sql"), "-- Grüße, 日本語, 🚀\nCREATE TABLE d (note text DEFAULT 'é');\n")
      writeFileSync(join(dir, "V4__no_newline.sql"), "SELECT 1")
      const db = yield* freshDatabase("fw_checksums")
      for (const directory of [repoMigrations, dir]) {
        const theirs = yield* Effect.promise(() => Flyway.info({ url: db.url, directory }))
        const ours = yield* PgMigrations.load(directory)
        expect(ours.length).toBeGreaterThan(0)
        expect(theirs.map((m) => [m.version, m.description, m.script, m.checksum])).toEqual(
          ours.map((m) => [m.versionText, m.description, m.script, m.checksum])
        )
      }
      // And the sum ignores line endings, as Flyway's does.
      expect(PgMigrations.checksum("a\r\nb\r\n")).toBe(PgMigrations.checksum("a\nb"))
      expect(PgMigrations.checksum("\uFEFFa\rb")).toBe(PgMigrations.checksum("a\nb"))
    }), 120_000)

  test("a database Graviton migrated before it used Flyway's table (graviton_migrations only) migrates forward; Flyway then accepts it", () =>
    Effect.gen(function*() {
      const db = yield* freshDatabase("fw_legacy")
      // What the previous migrator left: V1 and V2 applied, recorded in its own table only.
      yield* applyByHand(db.url, 2)
      yield* withClient(
        db.url,
        Effect.flatMap(SqlClient, (sql) =>
          Effect.zipRight(
            sql.unsafe(`CREATE TABLE graviton_migrations (
              migration_id integer PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now(), name text NOT NULL)`).raw,
            sql`INSERT INTO graviton_migrations (migration_id, name) VALUES (1, 'init'), (2, 'upload_ranges')`
          ))
      )
      expect(yield* graviton(db.url)).toEqual(["3"])
      yield* expectUpToDate({ url: db.url })
      const legacy = yield* withClient(
        db.url,
        Effect.flatMap(SqlClient, (sql) => sql<{ migration_id: number }>`SELECT migration_id FROM graviton_migrations ORDER BY 1`)
      )
      expect(legacy.map((r) => r.migration_id)).toEqual([1, 2, 3])
    }), 120_000)

  test("a schema without any history: graviton migrate refuses and names --baseline; --baseline records what flyway baseline records", () =>
    Effect.gen(function*() {
      const ours = yield* freshDatabase("fw_baseline_ours")
      const theirs = yield* freshDatabase("fw_baseline_theirs")
      for (const db of [ours, theirs]) yield* applyByHand(db.url, 2)
      const refused = yield* Effect.flip(graviton(ours.url))
      expect(refused.reason).toBe("Conflict")
      expect(refused.description).toContain("--baseline")
      expect(yield* graviton(ours.url, { baseline: 2 })).toEqual(["3"])
      expect(yield* graviton(ours.url, { baseline: 2 })).toEqual([])
      const baselined = yield* Effect.promise(() => Flyway.flyway(["baseline"], { url: theirs.url, settings: { baselineVersion: "2" } }))
      expect(baselined.error).toBe("")
      expect(yield* graviton(theirs.url)).toEqual(["3"])
      const states = [["1", "BELOW_BASELINE"], ["2", "BASELINE_IGNORED"], ["2", "BASELINE"], ["3", "SUCCESS"]] as const
      const a = yield* expectUpToDate({ url: ours.url }, states)
      const b = yield* expectUpToDate({ url: theirs.url }, states)
      expect(a).toEqual(b)
      expect(yield* history(ours.url)).toEqual(yield* history(theirs.url))
    }), 180_000)

  test("graviton migrate --baseline 3 (the CLI) adopts a hand-made schema; Flyway then finds it up to date", () =>
    Effect.gen(function*() {
      const db = yield* freshDatabase("fw_cli_baseline")
      yield* applyByHand(db.url, 3)
      const cli = (args: ReadonlyArray<string>) =>
        spawnSync(process.execPath, [join(process.cwd(), "bin", "graviton.js"), "migrate", ...args], {
          env: { ...process.env, GRAVITON_PG_URL: db.url, GRAVITON_NO_PROGRESS: "1" },
          encoding: "utf8"
        })
      const refused = cli([])
      expect(refused.status).not.toBe(0)
      expect(refused.stderr).toContain("--baseline")
      const adopted = cli(["--baseline", "3", "--json"])
      expect(adopted.stderr).toBe("")
      expect(JSON.parse(adopted.stdout)).toEqual({ applied: [] })
      expect(cli([]).stderr).toContain("up to date")
      yield* expectUpToDate({ url: db.url }, [["1", "BELOW_BASELINE"], ["2", "BELOW_BASELINE"], ["3", "BASELINE_IGNORED"], ["3", "BASELINE"]])
    }), 120_000)

  test("Flyway and Graviton racing on a fresh database: together they apply each migration once, both succeed", () =>
    Effect.gen(function*() {
      const db = yield* freshDatabase("fw_race")
      const [ours, theirs] = yield* Effect.all([graviton(db.url), flyway({ url: db.url })], { concurrency: "unbounded" })
      expect(ours.length + theirs).toBe(3)
      yield* expectUpToDate({ url: db.url })
    }), 180_000)
})
