/**
 * `graviton upload --resume` with another file, or with the same file
 * changed, is refused with exit 2 before a byte is sent (issue #16, item 2:
 * it used to store a mixed blob). The interrupted upload is made for real: a
 * throttled `graviton upload`, SIGKILLed once it has stored a span.
 */
import { afterAll, describe, expect, it } from "vitest"
import { spawn, spawnSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..")
const bin = path.join(repo, "bin", "graviton.js")
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "graviton-resumecheck-"))
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))
const env = { ...process.env, GRAVITON_HOME: path.join(dir, "store"), GRAVITON_STORE: "embedded", GRAVITON_NO_PROGRESS: "1" }

const graviton = (...args: Array<string>) => spawnSync(process.execPath, [bin, ...args], { cwd: dir, env, encoding: "utf8" })

/** Starts a throttled upload of `file` and SIGKILLs it once a span is stored; returns its id. */
const interrupted = (file: string) =>
  new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, [bin, "upload", file, "--limit-rate", "16M", "--verbose", "--parallel", "1"], {
      cwd: dir,
      env,
      stdio: ["ignore", "ignore", "pipe"]
    })
    let stderr = ""
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString()
      if (/stored \[\d+, \d+\)/.test(stderr)) child.kill("SIGKILL")
    })
    child.on("close", () => {
      const id = /upload ([0-9a-f]{32})/.exec(stderr)?.[1]
      if (id === undefined || !/stored/.test(stderr)) reject(new Error(`not interrupted midway: ${stderr}`))
      else resolve(id)
    })
  })

const received = (id: string) => {
  const r = graviton("uploads", "status", id, "--json")
  expect(r.status, r.stderr).toBe(0)
  return JSON.parse(r.stdout) as { received: number }
}

describe("graviton upload --resume: one source per upload", () => {
  const size = 40 * 1024 * 1024
  const f = path.join(dir, "f.bin")
  const g = path.join(dir, "g.bin")
  fs.writeFileSync(f, randomBytes(size))
  fs.writeFileSync(g, randomBytes(size))

  it("another file of the same size is refused with exit 2, nothing sent; a changed file too; then the original resumes", async () => {
    const id = await interrupted(f)
    const before = received(id).received
    expect(before).toBeGreaterThan(0)

    const other = graviton("upload", g, "--resume", id, "--verbose")
    expect(other.status, other.stderr).toBe(2)
    expect(other.stderr).toMatch(/begun from another file, or .* changed since/)
    expect(other.stderr).toContain(`graviton uploads abort ${id}`)
    expect(other.stderr).not.toMatch(/stored \[/)
    expect(received(id).received).toBe(before)

    // The already-sent region changed in place (same size, same inode), its times put back as they were.
    const st = fs.statSync(f)
    const original = Buffer.from(fs.readFileSync(f).subarray(0, 16))
    const fd = fs.openSync(f, "r+")
    fs.writeSync(fd, Buffer.alloc(16, 0xab), 0, 16, 0)
    fs.closeSync(fd)
    fs.utimesSync(f, st.atime, st.mtime)
    const changed = graviton("upload", f, "--resume", id, "--verbose")
    expect(changed.status, changed.stderr).toBe(2)
    expect(changed.stderr).toMatch(/changed since/)
    expect(received(id).received).toBe(before)

    // Not resumable from a pipe: says how to start over.
    const piped = spawnSync(process.execPath, [bin, "upload", "--resume", id, "-"], { cwd: dir, env, input: "x", encoding: "utf8" })
    expect(piped.status, piped.stderr).toBe(2)
    expect(piped.stderr).toMatch(/cannot resume from -: .*graviton put/)

    // Put back as it was (the change time moved on: still refused), so a new upload is the way.
    const fd2 = fs.openSync(f, "r+")
    fs.writeSync(fd2, original, 0, 16, 0)
    fs.closeSync(fd2)
    expect(graviton("upload", f, "--resume", id).status).toBe(2)
    const fresh = graviton("upload", f)
    expect(fresh.status, fresh.stderr).toBe(0)
    const put = graviton("put", f)
    expect(put.stdout.trim()).toBe(fresh.stdout.trim())
  }, 120_000)
})
