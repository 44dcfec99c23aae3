/**
 * `graviton gc`, `check` and `stats` as a user runs them on an embedded
 * home: the user's scenario of issue #17 (the metadata deleted, objects
 * left) and a staged leftover, with exit codes and `--json`.
 */
import { describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"
import { tempDir } from "../blobs/fixtures.js"
import { run } from "../cli/runCli.js"
import * as Harness from "../harness/s3.js"

const json = (out: string) => JSON.parse(out.trim().split("\n").at(-1)!)

describe("graviton gc, check, stats", () => {
  it("after the metadata is deleted: stats says 0, check --repair rebuilds, verify passes", async () => {
    const home = tempDir("lifecycle-cli-")
    fs.writeFileSync(path.join(home, "a.txt"), "hello lifecycle\n")
    fs.writeFileSync(path.join(home, "b.bin"), Buffer.alloc(100_000, 7))
    expect((await run(["put", "a.txt"], { home })).code).toBe(0)
    expect((await run(["put", "b.bin"], { home })).code).toBe(0)
    fs.rmSync(path.join(home, "meta"), { recursive: true, force: true })

    const before = await run(["stats", "--json"], { home })
    expect(before.code).toBe(0)
    expect(json(before.out).blobs).toBe(0)
    const gc = await run(["gc", "--grace", "0s", "--json"], { home })
    expect(gc.code).toBe(0)
    expect(json(gc.out).total.count).toBe(0)
    const check = await run(["check", "--repair", "--json"], { home })
    expect(check.code, check.stderr).toBe(0)
    expect(json(check.out).repairs.reindexed).toBe(2)
    const after = await run(["stats"], { home })
    expect(after.out).toMatch(/blobs\s+2 \(2 monolithic, 0 chunked\)/)
    expect((await run(["verify"], { home })).code).toBe(0)
  })

  it("gc --dry-run reports a staged leftover, gc removes it; a bad --grace is a usage error", async () => {
    const home = tempDir("lifecycle-cli-gc-")
    fs.writeFileSync(path.join(home, "a.txt"), "x")
    expect((await run(["put", "a.txt"], { home })).code).toBe(0)
    const staged = path.join(home, "blobs", "staging", "0b6bdfe5-2d1f-4c0c-9a26-7ad1f0d8f8a1")
    fs.mkdirSync(path.dirname(staged), { recursive: true })
    fs.writeFileSync(staged, Buffer.alloc(1000))
    const old = new Date(Date.now() - 48 * 3600 * 1000)
    fs.utimesSync(staged, old, old)

    const dry = await run(["gc", "--dry-run"], { home })
    expect(dry.code).toBe(0)
    expect(dry.out).toContain("would reclaim staging: 1 (1000 B)")
    expect(fs.existsSync(staged)).toBe(true)
    const real = await run(["gc"], { home })
    expect(real.out).toContain("reclaimed staging: 1 (1000 B)")
    expect(fs.existsSync(staged)).toBe(false)
    const again = await run(["gc", "--json"], { home })
    expect(json(again.out).total).toEqual({ count: 0, bytes: 0 })
    expect((await run(["check"], { home })).code).toBe(0)
    const bad = await run(["gc", "--grace", "soon"], { home })
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain("invalid --grace")
  })

  it("check exits 4 when a blob's object is gone", async () => {
    const home = tempDir("lifecycle-cli-check-")
    fs.writeFileSync(path.join(home, "a.txt"), "gone soon")
    const put = await run(["put", "a.txt", "--json"], { home })
    const key: string = json(put.out).key
    const hex = key.split(":")[1]!
    fs.rmSync(path.join(home, "blobs", "sha256", hex.slice(0, 2), hex))
    const check = await run(["check"], { home })
    expect(check.code).toBe(4)
    expect(check.out).toContain(`PROBLEM missingObject blobs/${key}`)
  })

  const s3 = Harness.available().find((c) => c.name === "env" || c.name === "moto")
  it.skipIf(s3 === undefined)("on the plain s3 store (no metadata store) each refuses with exit 2 and says why (skipped: no moto or GRAVITON_TEST_S3_ENDPOINT)", async () => {
    const running = await Harness.server(s3!)
    const place = await Harness.prepare(running, Harness.freshBucket("lifecycle-cli-s3"))
    const home = tempDir("lifecycle-cli-s3-")
    for (const command of ["gc", "check", "stats"]) {
      const r = await run([command], { home, env: Harness.cliEnv(running, place) })
      expect(r.code, r.stderr).toBe(2)
      expect(r.stderr).toContain("no metadata store")
      expect(r.stderr).toContain("S3 lifecycle rule")
    }
  }, 120_000)
})
