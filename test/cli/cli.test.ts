/**
 * The `graviton` CLI end to end: each case spawns `node bin/graviton.js` in
 * a temporary GRAVITON_HOME, as a user would run it. Process start-up costs
 * about half a second, so assertions are grouped per spawn.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..")
const bin = path.join(repo, "bin", "graviton.js")

interface Result {
  readonly code: number | null
  readonly stdout: Buffer
  readonly stderr: string
  readonly out: string
}

const run = (
  args: ReadonlyArray<string>,
  options: { readonly home: string; readonly input?: Uint8Array; readonly env?: Record<string, string> }
): Promise<Result> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], {
      cwd: options.home,
      env: { ...process.env, GRAVITON_HOME: options.home, GRAVITON_LAYOUT: "monolithic", ...options.env },
      stdio: ["pipe", "pipe", "pipe"]
    })
    const out: Array<Buffer> = []
    let stderr = ""
    child.stdout.on("data", (d: Buffer) => out.push(d))
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()))
    child.on("error", reject)
    child.on("close", (code) => {
      const stdout = Buffer.concat(out)
      resolve({ code, stdout, stderr, out: stdout.toString("utf8") })
    })
    child.stdin.end(options.input ?? Buffer.alloc(0))
  })

/** No stack-trace lines ("    at f (file:1:2)") and no internal-error banner. */
const expectNoTrace = (stderr: string) => {
  expect(stderr).not.toMatch(/^\s+at\s/m)
  expect(stderr).not.toContain("internal error")
}

const sha256Key = (bytes: Uint8Array) => `sha256:${createHash("sha256").update(bytes).digest("hex")}:${bytes.length}`

/** Every regular file under `dir`, recursively. */
const filesUnder = (dir: string): Array<string> =>
  fs.existsSync(dir)
    ? fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? filesUnder(path.join(dir, e.name)) : e.isFile() ? [path.join(dir, e.name)] : []
    )
    : []

const tempDirs: Array<string> = []
const tempDir = (label: string) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `graviton-cli-${label}-`))
  tempDirs.push(dir)
  return dir
}
afterAll(() => {
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true })
})

describe("graviton CLI (embedded store, monolithic layout)", () => {
  let home: string
  let work: string
  const content = randomBytes(300 * 1024 + 7)
  const piped = new TextEncoder().encode("hello from a pipe\n")
  const key = sha256Key(content)
  const pipedKey = sha256Key(piped)

  beforeAll(() => {
    home = tempDir("home")
    work = tempDir("work")
    fs.writeFileSync(path.join(work, "data.bin"), content)
  })

  it("put prints the key; a second put of the same file says deduplicated", async () => {
    const first = await run(["put", path.join(work, "data.bin")], { home })
    expect(first.code).toBe(0)
    expect(first.out.trim()).toBe(key)
    expect(first.stderr).toMatch(/^stored /)
    expect(fs.existsSync(path.join(home, "blobs"))).toBe(true)
    expect(fs.existsSync(path.join(home, "meta"))).toBe(true)

    const again = await run(["put", "--json", path.join(work, "data.bin")], { home })
    expect(again.code).toBe(0)
    const json = JSON.parse(again.out)
    expect(json).toMatchObject({ key, size: content.length, deduplicated: true })
    expect(typeof json.locator).toBe("string")
  })

  it("put - reads standard input (and the options may come before the subcommand)", async () => {
    const r = await run(["--json", "put", "-"], { home, input: piped })
    expect(r.code).toBe(0)
    expect(JSON.parse(r.out)).toMatchObject({ key: pipedKey, size: piped.length, deduplicated: false })
  })

  it("stat --json and stat for people", async () => {
    const r = await run(["stat", key, "--json"], { home })
    expect(r.code).toBe(0)
    const json = JSON.parse(r.out)
    expect(json.key).toBe(key)
    expect(json.size).toBe(content.length)
    expect(Object.keys(json).sort()).toEqual(["createdAt", "key", "locator", "size"])
    const human = await run(["stat", pipedKey], { home })
    expect(human.code).toBe(0)
    expect(human.out).toContain(`size:     ${piped.length} bytes`)
  })

  it("get -o writes the verified bytes; cat streams them to stdout", async () => {
    const target = path.join(work, "copy.bin")
    const r = await run(["get", key, "-o", target, "--json"], { home })
    expect(r.code).toBe(0)
    expect(JSON.parse(r.out)).toEqual({ key, size: content.length, output: target, verified: true })
    expect(fs.readFileSync(target).equals(content)).toBe(true)
    expect(fs.readdirSync(work).filter((f) => f.endsWith(".part"))).toEqual([])

    const cat = await run(["cat", pipedKey], { home })
    expect(cat.code).toBe(0)
    expect(cat.stdout.equals(Buffer.from(piped))).toBe(true)
  })

  it("ls streams every key with its size; verify finds them intact", async () => {
    const ls = await run(["ls", "--json"], { home })
    expect(ls.code).toBe(0)
    const rows = ls.out.trim().split("\n").map((l) => JSON.parse(l))
    expect(rows.map((r) => [r.key, r.size]).sort()).toEqual([[key, content.length], [pipedKey, piped.length]].sort())

    const verify = await run(["verify"], { home })
    expect(verify.code).toBe(0)
    expect(verify.stderr).toContain("verified 2 blobs")
    expect(verify.stderr).toContain("all intact")
  })

  it("bad key text exits 2 with a clear message and no stack trace", async () => {
    const r = await run(["stat", "sha256:not-hex:12"], { home })
    expect(r.code).toBe(2)
    expect(r.stderr).toContain("invalid input")
    expect(r.stderr).toContain("sha256:not-hex:12")
    expectNoTrace(r.stderr)
  })

  it("a missing key exits 3 and creates no output file; an unknown option exits 2", async () => {
    const missing = `sha256:${"0".repeat(64)}:5`
    const target = path.join(work, "missing.bin")
    const r = await run(["get", missing, "-o", target], { home })
    expect(r.code).toBe(3)
    expect(r.stderr).toContain(`not found: no blob is stored under ${missing}`)
    expectNoTrace(r.stderr)
    expect(fs.existsSync(target)).toBe(false)

    const usage = await run(["put", "--no-such-option", "x"], { home })
    expect(usage.code).toBe(2)
    expectNoTrace(usage.stderr)
  })

  it("metrics prints Prometheus text accumulated over earlier runs", async () => {
    const r = await run(["metrics"], { home })
    expect(r.code).toBe(0)
    // Two puts of `content` and one of `piped` were ingested by earlier processes.
    const ingested = r.out.split("\n").filter((l) => l.startsWith("graviton_bytes_ingested"))
    expect(ingested.length).toBeGreaterThan(0)
    const total = ingested.reduce((n, l) => n + Number(l.slice(l.lastIndexOf(" ") + 1)), 0)
    expect(total).toBe(2 * content.length + piped.length)
    expect(r.out).toMatch(/^graviton_stored_blobs 2$/m)
    expect(r.out).toContain("# TYPE graviton_bytes_ingested counter")
  })

  it("a flipped byte on disk: get exits 4 and leaves no file, verify reports the key", async () => {
    // The blob's object is the only stored file holding exactly its bytes.
    const stored = filesUnder(path.join(home, "blobs")).filter((f) => fs.statSync(f).size === content.length)
      .filter((f) => fs.readFileSync(f).equals(content))
    expect(stored).toHaveLength(1)
    const bytes = fs.readFileSync(stored[0]!)
    bytes[1000] = bytes[1000]! ^ 0xff
    fs.writeFileSync(stored[0]!, bytes)

    const target = path.join(work, "corrupt.bin")
    const r = await run(["get", key, "-o", target], { home })
    expect(r.code).toBe(4)
    expect(r.stderr).toMatch(/corrupt/i)
    expectNoTrace(r.stderr)
    expect(fs.existsSync(target)).toBe(false)
    expect(fs.readdirSync(work).filter((f) => f.includes("corrupt.bin"))).toEqual([])

    const verify = await run(["verify", "--json"], { home })
    expect(verify.code).toBe(4)
    const report = JSON.parse(verify.out)
    expect(report.checked).toBe(2)
    expect(report.ok).toBe(1)
    expect(report.bad).toHaveLength(1)
    expect(report.bad[0]).toMatchObject({ key, reason: "Corrupted" })
    expect(verify.stderr).toContain("verification failed: 1 of 2 blobs")
    expectNoTrace(verify.stderr)
  })

  it("rm removes a blob (stat then exits 3); removing it again succeeds and says so", async () => {
    const r = await run(["rm", key, "--json"], { home })
    expect(r.code).toBe(0)
    expect(JSON.parse(r.out)).toEqual({ key, removed: true })
    const stat = await run(["stat", key], { home })
    expect(stat.code).toBe(3)
    const again = await run(["rm", key], { home })
    expect(again.code).toBe(0)
    expect(again.stderr).toContain("nothing to remove")
    const ls = await run(["ls"], { home })
    expect(ls.out.trim()).toBe(`${pipedKey}  ${piped.length} B`)
  })
})

describe("graviton CLI (other stores and layouts)", () => {
  it("--store memory works without touching the home directory", async () => {
    const home = tempDir("memory")
    const input = randomBytes(5000)
    const r = await run(["put", "-", "--store", "memory", "--json"], { home, input })
    expect(r.code).toBe(0)
    expect(JSON.parse(r.out)).toMatchObject({ key: sha256Key(input), deduplicated: false })
    expect(fs.readdirSync(home)).toEqual([])
  })

  it("a second process on a busy home exits 5; Ctrl-C on a put exits 130 and leaves nothing", async () => {
    const home = tempDir("busy")
    // A put reading a pipe that stays open holds the store until we interrupt it.
    const child = spawn(process.execPath, [bin, "put", "-"], {
      cwd: home,
      env: { ...process.env, GRAVITON_HOME: home },
      stdio: ["pipe", "pipe", "pipe"]
    })
    let stderr = ""
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()))
    const exited = new Promise<number | null>((resolve) => child.on("close", resolve))
    child.stdin.write(randomBytes(64 * 1024))
    // Its staging file appears once the store is open and bytes are flowing.
    const staging = () => filesUnder(home).filter((f) => f.includes(`${path.sep}.graviton${path.sep}tmp`))
    for (let i = 0; i < 600 && staging().length === 0; i++) await new Promise((r) => setTimeout(r, 50))
    expect(staging().length).toBe(1)

    const busy = await run(["ls"], { home })
    expect(busy.code).toBe(5)
    expect(busy.stderr).toContain("storage unavailable")
    expect(busy.stderr).toContain("another process")
    expectNoTrace(busy.stderr)

    child.kill("SIGINT")
    expect(await exited).toBe(130)
    expectNoTrace(stderr)
    expect(staging()).toEqual([])
    const ls = await run(["ls", "--json"], { home })
    expect(ls.code).toBe(0)
    expect(ls.out).toBe("")
  })

  it("the chunked layout round-trips a multi-block file", async () => {
    const home = tempDir("chunked")
    const file = path.join(home, "big.bin")
    const content = randomBytes(6 * 1024 * 1024 + 123)
    fs.writeFileSync(file, content)
    const put = await run(["put", file, "--json"], { home, env: { GRAVITON_LAYOUT: "chunked" } })
    expect(put.code).toBe(0)
    expect(JSON.parse(put.out).key).toBe(sha256Key(content))
    const out = path.join(home, "back.bin")
    const get = await run(["get", sha256Key(content), "-o", out], { home, env: { GRAVITON_LAYOUT: "chunked" } })
    expect(get.code).toBe(0)
    expect(fs.readFileSync(out).equals(content)).toBe(true)
  })
})
