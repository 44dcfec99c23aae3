/**
 * Crash and resume with real processes: `graviton upload` of 64 MiB is
 * SIGKILLed once it has stored a span, then `graviton upload --resume`
 * in a new process finishes it. The blob must come back byte-exact, and the
 * resume must send exactly the ranges the store was missing (the bytes it
 * reports sending plus those it found stored make the file, and at least
 * what the killed process had reported stored is not sent again).
 *
 * Runs on the embedded store and on PostgreSQL (skipped, with the reason in
 * the title, when no PostgreSQL is available); test/cli/uploadResume.s3.test.ts
 * does the same on S3.
 */
import { afterAll, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { gate } from "../../src/testing/capabilities.js"
import { freshDatabase, skipReason, usePostgres } from "../harness/postgres.js"
import { crashAndResume } from "./resume.js"

usePostgres()

const dirs: Array<string> = []
const tempDir = (label: string) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `graviton-resume-${label}-`))
  dirs.push(dir)
  return dir
}
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true })
})

const content = randomBytes(64 * 1024 * 1024)
const key = `sha256:${createHash("sha256").update(content).digest("hex")}:${content.length}`

describe("graviton upload: SIGKILL midway, resume in a new process", () => {
  it.live("embedded store", () =>
    Effect.promise(async () => {
      const home = tempDir("embedded")
      await crashAndResume({ home, content, key, env: { GRAVITON_STORE: "embedded" } })
    }), 120_000)

  gate(it.scoped, skipReason())("PostgreSQL store", () =>
    Effect.gen(function*() {
      const db = yield* freshDatabase("cli_resume")
      const home = tempDir("pg")
      yield* Effect.promise(() =>
        crashAndResume({ home, content, key, env: { GRAVITON_STORE: "pg", GRAVITON_PG_URL: db.url }, migrate: true })
      )
    }), 180_000)
})
