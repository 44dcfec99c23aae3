/** `graviton upload` and `graviton uploads` on bad input: exit codes and messages, no stack traces. */
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { graviton } from "./resume.js"

const home = fs.mkdtempSync(path.join(os.tmpdir(), "graviton-uploads-cli-"))
afterAll(() => fs.rmSync(home, { recursive: true, force: true }))
const env = { GRAVITON_STORE: "embedded" }

const noTrace = (stderr: string) => {
  expect(stderr).not.toMatch(/^\s+at\s/m)
  expect(stderr).not.toContain("internal error")
}

describe("graviton upload / uploads: bad input", () => {
  it("reports bad ids, unknown or finished uploads, missing files and bad options with their exit codes", () => {
    const badId = graviton(["uploads", "status", "not-an-id"], home, env)
    expect(badId.status).toBe(2)
    expect(badId.stderr.toString()).toContain("not an upload id")
    noTrace(badId.stderr.toString())

    const unknown = graviton(["uploads", "status", "0".repeat(32)], home, env)
    expect(unknown.status).toBe(3)
    noTrace(unknown.stderr.toString())

    const abortUnknown = graviton(["uploads", "abort", "0".repeat(32), "--json"], home, env)
    expect(abortUnknown.status).toBe(0)

    const missing = graviton(["upload", path.join(home, "nope.bin")], home, env)
    expect(missing.status).toBe(2)
    expect(missing.stderr.toString()).toContain("no such file")
    noTrace(missing.stderr.toString())

    const small = path.join(home, "small.bin")
    fs.writeFileSync(small, Buffer.alloc(1000, 7))
    const done = graviton(["upload", small, "--json"], home, env)
    expect(done.status, done.stderr.toString()).toBe(0)
    const { upload: finished } = JSON.parse(done.stdout.toString()) as { upload: string }
    // A finished upload is gone: resuming it is "not found".
    const again = graviton(["upload", small, "--resume", finished], home, env)
    expect(again.status).toBe(3)
    noTrace(again.stderr.toString())

    const badRate = graviton(["upload", small, "--limit-rate", "fast"], home, env)
    expect(badRate.status).toBe(2)
    const badParallel = graviton(["upload", small, "--parallel", "0"], home, env)
    expect(badParallel.status).toBe(2)

    const gc = graviton(["uploads", "gc", "--json"], home, env)
    expect(gc.status).toBe(0)
    expect(JSON.parse(gc.stdout.toString())).toEqual({ expired: [] })
  }, 60_000)
})
