/**
 * `graviton replicate` and `graviton repair` as real processes: an embedded
 * store replicated to two other embedded homes, its copy then corrupted or
 * removed behind its back, and restored by `repair` from a remembered target.
 */
import { describe, expect, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..")
const bin = path.join(repo, "bin", "graviton.js")

const graviton = (cwd: string, args: ReadonlyArray<string>) => {
  const run = spawnSync(process.execPath, [bin, "--home", path.join(cwd, "primary"), ...args], {
    cwd,
    env: { ...process.env, GRAVITON_NO_PROGRESS: "1", GRAVITON_STORE: "embedded" }
  })
  return { status: run.status, stdout: run.stdout.toString(), stderr: run.stderr.toString() }
}

/** The primary's object file of a key (embedded: <home>/blobs/sha256/<2 hex>/<hex>). */
const objectFile = (cwd: string, key: string) => {
  const hex = key.split(":")[1]!
  return path.join(cwd, "primary", "blobs", "sha256", hex.slice(0, 2), hex)
}

const setup = () => {
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), "graviton-cli-replication-"))
  const content = Buffer.alloc(150_000)
  for (let i = 0; i < content.length; i++) content[i] = (i * 7919 + (i >> 8)) & 0xff
  fs.writeFileSync(path.join(cwd, "f.bin"), content)
  const put = graviton(cwd, ["put", "f.bin"])
  expect(put.status, put.stderr).toBe(0)
  return { cwd, content, key: put.stdout.trim() }
}

// About fifteen process starts per case: ~10 s on an idle machine, several times that on a loaded one.
const TIMEOUT = 120_000

describe("graviton replicate / repair", () => {
  it("replicates to two embedded homes, and repair restores a corrupted then a missing primary copy", () => {
    const { content, cwd, key } = setup()
    try {
      const replicated = graviton(cwd, ["replicate", key, "--to", "east=embedded:east", "--to", "embedded:west"])
      expect(replicated.status, replicated.stderr).toBe(0)
      expect(replicated.stdout).toContain(`copied  east replica://east/${key}`)
      expect(replicated.stdout).toMatch(new RegExp(`copied  embedded-[0-9a-f]{8} replica://embedded-[0-9a-f]{8}/`))
      // Each target is a full embedded store holding the blob.
      for (const home of ["east", "west"]) {
        const got = spawnSync(process.execPath, [bin, "--home", path.join(cwd, home), "cat", key], { cwd })
        expect(got.status).toBe(0)
        expect(Buffer.compare(got.stdout, content)).toBe(0)
      }
      const again = graviton(cwd, ["replicate", key, "--to", "east=embedded:east", "--json"])
      expect(again.status, again.stderr).toBe(0)
      expect(JSON.parse(again.stdout).targets).toEqual([{ target: "east", outcome: "present", locator: `replica://east/${key}` }])

      // Corrupted behind the store's back: verify notices, repair restores from a remembered target.
      fs.writeFileSync(objectFile(cwd, key), Buffer.alloc(content.length, 1))
      expect(graviton(cwd, ["verify", key]).status).toBe(4)
      const repaired = graviton(cwd, ["repair"])
      expect(repaired.status, repaired.stderr).toBe(0)
      expect(repaired.stdout).toContain(`restored ${key} from east`)
      expect(repaired.stderr).toContain("1 restored, 0 failed")
      expect(graviton(cwd, ["verify", key]).status).toBe(0)

      // Missing: same again, by key, in JSON; then everything is healthy.
      fs.rmSync(objectFile(cwd, key))
      const byKey = graviton(cwd, ["repair", key, "--json"])
      expect(byKey.status, byKey.stderr).toBe(0)
      expect(JSON.parse(byKey.stdout)).toEqual({ checked: 1, healthy: 0, restored: [{ key, from: "east" }], failed: [] })
      const got = spawnSync(process.execPath, [bin, "--home", path.join(cwd, "primary"), "cat", key], { cwd })
      expect(Buffer.compare(got.stdout, content)).toBe(0)
      const healthy = graviton(cwd, ["repair", "--json"])
      expect(JSON.parse(healthy.stdout)).toMatchObject({ checked: 1, healthy: 1, restored: [], failed: [] })

      // With its copy gone from east, repair reads west instead.
      const east = spawnSync(process.execPath, [bin, "--home", path.join(cwd, "east"), "rm", key], { cwd })
      expect(east.status).toBe(0)
      fs.rmSync(objectFile(cwd, key))
      const fromWest = graviton(cwd, ["repair", key])
      expect(fromWest.status, fromWest.stderr).toBe(0)
      expect(fromWest.stdout).toMatch(/restored .* from embedded-[0-9a-f]{8}/)
    } finally {
      fs.rmSync(cwd, { recursive: true, force: true })
    }
  }, TIMEOUT)

  it("refuses bad targets and reports what cannot be repaired", () => {
    const { cwd, key } = setup()
    try {
      expect(graviton(cwd, ["replicate", key]).status).toBe(2)
      expect(graviton(cwd, ["replicate", key, "--to", "embedded"]).status).toBe(2)
      expect(graviton(cwd, ["replicate", key, "--to", "nowhere:x"]).status).toBe(2)
      expect(graviton(cwd, ["replicate", key, "--to", "a=embedded:x", "--to", "a=embedded:y"]).status).toBe(2)
      expect(graviton(cwd, ["replicate", "sha256:nothex:1", "--to", "embedded:x"]).status).toBe(2)
      const unknown = `sha256:${"0".repeat(64)}:5`
      expect(graviton(cwd, ["replicate", unknown, "--to", "embedded:x"]).status).toBe(3)

      // A name is bound to the first store it named.
      expect(graviton(cwd, ["replicate", key, "--to", "east=embedded:east"]).status).toBe(0)
      const clash = graviton(cwd, ["replicate", key, "--to", "east=embedded:elsewhere"])
      expect(clash.status).toBe(2)
      expect(clash.stderr).toContain("already names")

      // A corrupted blob whose only replica is gone too: nothing to restore from (exit 4).
      spawnSync(process.execPath, [bin, "--home", path.join(cwd, "east"), "rm", key], { cwd })
      fs.writeFileSync(objectFile(cwd, key), Buffer.alloc(150_000, 2))
      const stuck = graviton(cwd, ["repair", key])
      expect(stuck.status).toBe(4)
      expect(stuck.stdout).toContain(`FAILED   ${key}`)
    } finally {
      fs.rmSync(cwd, { recursive: true, force: true })
    }
  }, TIMEOUT)
})
