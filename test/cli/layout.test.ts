/**
 * The embedded home's layout (issue #16, item 7): blob bytes under
 * `<home>/blobs/sha256/...`, no `blobs/blobs/...` and no empty
 * `blobs/.graviton/meta`; a home made with the earlier layout (object store
 * rooted at `<home>/blobs`) is moved to the plain one when opened, and its
 * blobs and resumable uploads stay readable.
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
const dirs: Array<string> = []
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true })
})
const tempDir = () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "graviton-layout-"))
  dirs.push(d)
  return d
}

const graviton = (home: string, args: ReadonlyArray<string>, input?: Uint8Array) =>
  spawnSync(process.execPath, [bin, ...args], {
    cwd: home,
    env: { ...process.env, GRAVITON_HOME: home, GRAVITON_STORE: "embedded", GRAVITON_NO_PROGRESS: "1" },
    ...(input === undefined ? {} : { input }),
    encoding: "utf8"
  })

/** Every directory and file under `dir`, relative, sorted. */
const tree = (dir: string): Array<string> =>
  fs.readdirSync(dir, { recursive: true, encoding: "utf8" }).map((p) => p.split(path.sep).join("/")).sort()

describe("embedded home layout", () => {
  it("a new home is plain: blobs/sha256/<2>/<hex>, no blobs/blobs, no blobs/.graviton", () => {
    const home = tempDir()
    const bytes = randomBytes(70_000)
    const put = graviton(home, ["put", "-"], bytes)
    expect(put.status, put.stderr).toBe(0)
    const hex = createHash("sha256").update(bytes).digest("hex")
    const entries = tree(home)
    expect(entries).toContain(`blobs/sha256/${hex.slice(0, 2)}/${hex}`)
    expect(entries.filter((e) => e.startsWith("blobs/blobs") || e.startsWith("blobs/.graviton"))).toEqual([])
  })

  it("a home made by the earlier layout is migrated on open; its blobs read and verify", () => {
    // Built as the base commit's code lays a home out: the object store rooted at <home>/blobs.
    const home = tempDir()
    const bytes = randomBytes(50_000)
    expect(graviton(home, ["put", "-"], bytes).status).toBe(0)
    const hex = createHash("sha256").update(bytes).digest("hex")
    const key = `sha256:${hex}:${bytes.length}`
    const aside = path.join(home, "old-root")
    fs.renameSync(path.join(home, "blobs"), path.join(aside))
    fs.mkdirSync(path.join(home, "blobs"))
    fs.renameSync(aside, path.join(home, "blobs", "blobs"))
    fs.mkdirSync(path.join(home, "blobs", ".graviton", "meta"), { recursive: true })
    fs.mkdirSync(path.join(home, "blobs", ".graviton", "tmp"), { recursive: true })
    expect(fs.existsSync(path.join(home, "blobs", "blobs", "sha256", hex.slice(0, 2), hex))).toBe(true)

    const got = spawnSync(process.execPath, [bin, "get", key], {
      cwd: home,
      env: { ...process.env, GRAVITON_HOME: home, GRAVITON_STORE: "embedded", GRAVITON_NO_PROGRESS: "1" }
    })
    expect(got.status, got.stderr.toString()).toBe(0)
    expect(Buffer.compare(got.stdout, bytes)).toBe(0)
    const entries = tree(home)
    expect(entries).toContain(`blobs/sha256/${hex.slice(0, 2)}/${hex}`)
    expect(entries.filter((e) => e.startsWith("blobs/blobs") || e.startsWith("blobs/.graviton") || e.startsWith(".graviton-migrating"))).toEqual([])
    const verify = graviton(home, ["verify"])
    expect(verify.status, verify.stderr).toBe(0)
  })

  it("an interrupted migration (the old root renamed aside) is finished by the next open", () => {
    const home = tempDir()
    const bytes = randomBytes(30_000)
    expect(graviton(home, ["put", "-"], bytes).status).toBe(0)
    const hex = createHash("sha256").update(bytes).digest("hex")
    // The state between the migration's two renames: <home>/blobs moved aside as the old root.
    const aside = path.join(home, ".graviton-migrating")
    fs.mkdirSync(aside)
    fs.renameSync(path.join(home, "blobs"), path.join(aside, "blobs"))
    const got = spawnSync(process.execPath, [bin, "get", `sha256:${hex}:${bytes.length}`], {
      cwd: home,
      env: { ...process.env, GRAVITON_HOME: home, GRAVITON_STORE: "embedded", GRAVITON_NO_PROGRESS: "1" }
    })
    expect(got.status, got.stderr.toString()).toBe(0)
    expect(fs.existsSync(aside)).toBe(false)
  })
})
