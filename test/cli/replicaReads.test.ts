/**
 * The CLI's replicated reads (issue #16, item 8): with a copy on a
 * remembered replication target, `get` of a blob whose primary object is
 * gone or corrupted is served, verified, from the replica and says so on
 * stderr (docs/replication.md). Before, it failed with exit 4.
 */
import { afterAll, describe, expect, it } from "vitest"
import { spawnSync } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..")
const bin = path.join(repo, "bin", "graviton.js")
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "graviton-replica-reads-"))
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))
const home = path.join(dir, "primary")
const env = { ...process.env, GRAVITON_HOME: home, GRAVITON_STORE: "embedded", GRAVITON_NO_PROGRESS: "1" }
const graviton = (...args: Array<string>) => spawnSync(process.execPath, [bin, ...args], { cwd: dir, env, timeout: 60_000 })

const object = (hex: string) => path.join(home, "blobs", "sha256", hex.slice(0, 2), hex)

const stored = (seed: number) => {
  const bytes = randomBytes(120_000 + seed)
  const file = path.join(dir, `f${seed}.bin`)
  fs.writeFileSync(file, bytes)
  const put = graviton("put", file)
  expect(put.status, put.stderr.toString()).toBe(0)
  const hex = createHash("sha256").update(bytes).digest("hex")
  return { bytes, key: put.stdout.toString().trim(), hex }
}

describe("graviton get with a replica", () => {
  it("a gone primary object is served from the replica (-o), a corrupted one too (stdout); without a replica exit 4", () => {
    const a = stored(1)
    const rep = graviton("replicate", a.key, "--to", `backup=embedded:${path.join(dir, "backup")}`)
    expect(rep.status, rep.stderr.toString()).toBe(0)

    fs.rmSync(object(a.hex))
    const out = path.join(dir, "out.bin")
    const gone = graviton("get", a.key, "-o", out)
    expect(gone.status, gone.stderr.toString()).toBe(0)
    expect(gone.stderr.toString()).toMatch(/served from replica backup/)
    expect(Buffer.compare(fs.readFileSync(out), a.bytes)).toBe(0)

    // Back in place (a repair), then one byte flipped: the pre-read catches it before any byte is written.
    expect(graviton("repair", a.key).status).toBe(0)
    const fd = fs.openSync(object(a.hex), "r+")
    fs.writeSync(fd, Buffer.from([a.bytes[5]! ^ 0xff]), 0, 1, 5)
    fs.closeSync(fd)
    const corrupted = graviton("get", a.key)
    expect(corrupted.status, corrupted.stderr.toString()).toBe(0)
    expect(corrupted.stderr.toString()).toMatch(/served from replica backup/)
    expect(Buffer.compare(corrupted.stdout, a.bytes)).toBe(0)

    const b = stored(2)
    fs.rmSync(object(b.hex))
    const none = graviton("get", b.key, "-o", path.join(dir, "none.bin"))
    expect(none.status).toBe(4)
    expect(none.stderr.toString()).not.toMatch(/served from replica/)
  }, 120_000)
})
