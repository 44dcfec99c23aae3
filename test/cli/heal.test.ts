/**
 * `graviton put` of content whose stored bytes were deleted or damaged
 * stores them again and says `repaired` (issue #16, item 3); `verify`
 * names that remedy. The default check is a size (head) per object found;
 * GRAVITON_HEAL=verify also reads it back, catching a flipped byte.
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

const graviton = (home: string, args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  spawnSync(process.execPath, [bin, ...args], {
    cwd: home,
    env: { ...process.env, GRAVITON_HOME: path.join(home, "store"), GRAVITON_STORE: "embedded", GRAVITON_NO_PROGRESS: "1", ...env },
    encoding: "utf8"
  })

/** The blob's object file, wherever the home lays it out. */
const objectFile = (home: string, hex: string) => {
  const found = fs.readdirSync(home, { recursive: true, encoding: "utf8" }).filter((p) => path.basename(p) === hex)
  expect(found.length).toBe(1)
  return path.join(home, found[0]!)
}

const setup = () => {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "graviton-heal-"))
  dirs.push(home)
  const bytes = randomBytes(300_000)
  const file = path.join(home, "in.bin")
  fs.writeFileSync(file, bytes)
  const hex = createHash("sha256").update(bytes).digest("hex")
  expect(graviton(home, ["put", file]).status).toBe(0)
  return { home, file, bytes, hex }
}

describe("graviton put heals", () => {
  it("a deleted blob: verify exits 4 naming the remedy, put says repaired, verify is clean", () => {
    const { home, file, hex } = setup()
    fs.rmSync(objectFile(home, hex))
    const bad = graviton(home, ["verify"])
    expect(bad.status).toBe(4)
    expect(bad.stderr).toMatch(/putting the same content again repairs/)
    const put = graviton(home, ["put", file])
    expect(put.status, put.stderr).toBe(0)
    expect(put.stderr).toMatch(/^repaired: /m)
    expect(graviton(home, ["verify"]).status).toBe(0)
  })

  it("a truncated blob is repaired by the default size check", () => {
    const { home, file, hex } = setup()
    fs.truncateSync(objectFile(home, hex), 1000)
    const put = graviton(home, ["put", file, "--json"])
    expect(put.status, put.stderr).toBe(0)
    expect(JSON.parse(put.stdout)).toMatchObject({ deduplicated: false, repaired: true })
    expect(graviton(home, ["verify"]).status).toBe(0)
  })

  it("a flipped byte (same size) is repaired with GRAVITON_HEAL=verify", () => {
    const { home, file, hex } = setup()
    const object = objectFile(home, hex)
    const fd = fs.openSync(object, "r+")
    fs.writeSync(fd, Buffer.from([0x55 ^ fs.readFileSync(object)[10]!]), 0, 1, 10)
    fs.closeSync(fd)
    expect(graviton(home, ["verify"]).status).toBe(4)
    const put = graviton(home, ["put", file], { GRAVITON_HEAL: "verify" })
    expect(put.status, put.stderr).toBe(0)
    expect(put.stderr).toMatch(/^repaired: /m)
    expect(graviton(home, ["verify"]).status).toBe(0)
  })
})
