/** `graviton migrate` and `--store pg` end to end: a real process against a fresh database. */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { spawnSync } from "node:child_process"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { gate } from "../../../src/testing/capabilities.js"
import { freshDatabase, skipReason, usePostgres } from "../../harness/postgres.js"

usePostgres()
const test = gate(it.scoped, skipReason())

const graviton = (args: ReadonlyArray<string>, env: Record<string, string>, input?: string) =>
  spawnSync(process.execPath, [join(process.cwd(), "bin", "graviton.js"), ...args], {
    env: { ...process.env, ...env, GRAVITON_NO_PROGRESS: "1" },
    encoding: "utf8",
    ...(input === undefined ? {} : { input })
  })

describe("graviton migrate", () => {
  test("applies every migration once, then reports the schema up to date; --store pg then works", () =>
    Effect.gen(function*() {
      const db = yield* freshDatabase("cli_migrate")
      const env = { GRAVITON_PG_URL: db.url }
      const first = graviton(["migrate", "--json"], env)
      expect(first.stderr).toBe("")
      expect(first.status).toBe(0)
      expect(JSON.parse(first.stdout)).toEqual({ applied: ["V1__init", "V2__upload_ranges", "V3__replicas"] })
      const again = graviton(["migrate"], env)
      expect(again.status).toBe(0)
      expect(again.stderr).toContain("up to date")

      const file = join(mkdtempSync(join(tmpdir(), "graviton-pg-cli-")), "in.txt")
      writeFileSync(file, "stored in postgres")
      const put = graviton(["put", file, "--store", "pg", "--json"], env)
      expect(put.status).toBe(0)
      const { key } = JSON.parse(put.stdout) as { key: string }
      const cat = graviton(["cat", key, "--store", "pg"], env)
      expect(cat.status).toBe(0)
      expect(cat.stdout).toBe("stored in postgres")
    }), 120_000)

  test("a bad password fails with the storage exit code and never prints the password", () =>
    Effect.gen(function*() {
      const db = yield* freshDatabase("cli_migrate_bad")
      const url = new URL(db.url)
      url.username = "nobody"
      url.password = "s3cr3t-Pa55word"
      const result = graviton(["migrate"], { GRAVITON_PG_URL: url.toString() })
      expect(result.status).toBe(5)
      expect(result.stdout + result.stderr).not.toContain("s3cr3t-Pa55word")
      expect(result.stderr).toMatch(/^graviton: /)
    }), 60_000)
})
