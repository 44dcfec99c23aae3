/**
 * What the CLI prints (issue #16, items 5, 6 and 7): the progress line on a
 * terminal (through `script`), help and usage errors, and the smaller
 * cases: long or hostile file names, a bad home, a huge key length, an
 * unknown upload id.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { hasScript, hasTrace, removeTempDirs, repo, run, runOnTty, sha256Key, tempDir } from "./runCli.js"

afterAll(removeTempDirs)

const version: string = JSON.parse(fs.readFileSync(path.join(repo, "package.json"), "utf8")).version
// eslint-disable-next-line no-control-regex
const ESCAPE = /\x1b/
// eslint-disable-next-line no-control-regex
const stripAnsi = (s: string) => s.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "")
/** Progress enabled whatever the environment of the test run says. */
const withProgress = { GRAVITON_NO_PROGRESS: undefined }

/**
 * The text a terminal keeps on the row where `needle` was printed: what
 * follows the last carriage return before it (each frame starts with
 * `\r\x1b[K`, erasing the row).
 */
const rowOf = (tty: string, needle: string): string => {
  const at = tty.indexOf(needle)
  expect(at).toBeGreaterThanOrEqual(0)
  const start = Math.max(tty.lastIndexOf("\n", at), tty.lastIndexOf("\r", at)) + 1
  const end = tty.indexOf("\n", at)
  return stripAnsi(tty.slice(start, end < 0 ? undefined : end)).replace(/\r$/, "")
}

describe.skipIf(!hasScript)("progress on a terminal (through script -qc; needs util-linux script)", () => {
  let home: string
  let work: string
  const content = randomBytes(24 * 1024 * 1024 + 11)
  const key = sha256Key(content)

  beforeAll(() => {
    home = tempDir("tty-home")
    work = tempDir("tty-work")
    fs.writeFileSync(path.join(work, "big.bin"), content)
  })

  it("put: the bar ends at 100% and is erased before the key and the note; rates in MiB/s like sizes", async () => {
    const r = await runOnTty(["put", path.join(work, "big.bin")], { home, env: withProgress })
    expect(r.code).toBe(0)
    const frames = r.tty.split(/[\r\n]+/).map(stripAnsi).filter((l) => l.startsWith("put ["))
    expect(frames.length).toBeGreaterThan(0)
    expect(frames[frames.length - 1]).toMatch(/\] 100%  24\.0 MiB \/ 24\.0 MiB  [\d.]+ MiB\/s$/)
    expect(rowOf(r.tty, key)).toBe(key)
    const stored = rowOf(r.tty, "stored ")
    expect(stored).toMatch(/^stored .*big\.bin \(24\.0 MiB\) in [\d.]+ s, [\d.]+ MiB\/s$/)
    expect(r.tty).not.toMatch(/\bMB\/s/)
  })

  it("upload: the last frame shows 100%, the key has a row of its own", async () => {
    const up = await runOnTty(["upload", path.join(work, "big.bin")], { home: tempDir("tty-upload"), env: withProgress })
    expect(up.code).toBe(0)
    expect(rowOf(up.tty, key)).toBe(key)
    const frames = up.tty.split(/[\r\n]+/).map(stripAnsi).filter((l) => l.startsWith("upload ["))
    expect(frames[frames.length - 1]).toContain("] 100%  24.0 MiB / 24.0 MiB")
  })

  it("get -o: the bar is erased before the result line", async () => {
    const target = path.join(work, "copy.bin")
    const r = await runOnTty(["get", key, "-o", target], { home, env: withProgress })
    expect(r.code).toBe(0)
    expect(rowOf(r.tty, "wrote ")).toMatch(/^wrote .*copy\.bin \(24\.0 MiB, verified\) in [\d.]+ s, [\d.]+ MiB\/s$/)
    const frames = r.tty.split(/[\r\n]+/).map(stripAnsi).filter((l) => l.startsWith("get ["))
    expect(frames[frames.length - 1]).toContain("] 100%")
  })
})

describe("help and usage", () => {
  let home: string
  beforeAll(() => {
    home = tempDir("help-home")
  })

  const commands = [
    [], ["put"], ["get"], ["cat"], ["stat"], ["rm"], ["ls"], ["verify"], ["metrics"], ["migrate"], ["upload"],
    ["uploads"], ["uploads", "abort"], ["replicate"], ["repair"]
  ]

  it("--help piped has no escape sequences, fits 100 columns, and never says 'A user-defined piece of text.'", async () => {
    for (const c of commands) {
      const r = await run([...c, "--help"], { home })
      expect(r.code, c.join(" ")).toBe(0)
      expect(r.out, c.join(" ")).not.toMatch(ESCAPE)
      expect(r.out).not.toContain("A user-defined piece of text.")
      expect(Math.max(...r.out.split("\n").map((l) => l.length)), c.join(" ")).toBeLessThanOrEqual(100)
    }
  })

  it("global options are described once (in graviton --help), not on every command", async () => {
    const root = await run(["--help"], { home })
    expect(root.out.match(/^\s+--store\b/gm)).toHaveLength(1)
    const get = await run(["get", "--help"], { home })
    expect(get.out).toContain("-o, --output")
    expect(get.out).not.toContain("Storage backend")
    expect(get.out).not.toMatch(/^\s+--store\b/m)
  })

  it.skipIf(!hasScript)("on a terminal: colour only when neither NO_COLOR nor TERM=dumb says otherwise", async () => {
    const coloured = await runOnTty(["get", "--help"], { home, env: { NO_COLOR: undefined, TERM: "xterm" } })
    expect(coloured.tty).toMatch(ESCAPE)
    const noColor = await runOnTty(["get", "--help"], { home, env: { NO_COLOR: "1", TERM: "xterm" } })
    expect(noColor.tty).toContain("Usage: graviton get")
    expect(noColor.tty).not.toMatch(ESCAPE)
    const dumb = await runOnTty(["get", "--help"], { home, env: { NO_COLOR: undefined, TERM: "dumb" } })
    expect(dumb.tty).toContain("Usage: graviton get")
    expect(dumb.tty).not.toMatch(ESCAPE)
  })

  it("an unknown subcommand of uploads lists ls, status, abort, gc (exit 2, graviton: prefix)", async () => {
    const r = await run(["uploads", "bogus"], { home })
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/^graviton: unknown command "bogus" for graviton uploads; use one of: ls, status, abort, gc/)
    expect(r.stderr).not.toContain("'put'")
    expect(r.stderr).not.toMatch(ESCAPE)
    const top = await run(["bogus"], { home })
    expect(top.code).toBe(2)
    expect(top.stderr).toMatch(/^graviton: unknown command "bogus" for graviton; use one of: put, get, /)
  })

  it("usage errors are one line with the graviton: prefix and exit 2", async () => {
    for (
      const args of [
        ["get"], // missing argument
        ["put", "--no-such-option", "x"], // unknown option
        ["stat", "--store", "nope", "x"], // bad choice
        ["upload", "f", "--parallel", "many"] // not an integer
      ]
    ) {
      const r = await run(args, { home })
      expect(r.code, args.join(" ")).toBe(2)
      expect(r.stderr, args.join(" ")).toMatch(/^graviton: [^\n]+\n$/)
      expect(r.stderr).not.toMatch(ESCAPE)
      expect(hasTrace(r.stderr)).toBe(false)
    }
  })

  it("--version prints the version and one newline", async () => {
    const r = await run(["--version"], { home })
    expect(r.code).toBe(0)
    expect(r.out).toBe(`${version}\n`)
  })
})

describe("names, homes, keys and ids", () => {
  let home: string
  let work: string
  beforeAll(() => {
    home = tempDir("misc-home")
    work = tempDir("misc-work")
  })

  it("put of a 256-character name (unreadable: too long) exits 2 as documented", async () => {
    const r = await run(["put", path.join(work, "x".repeat(256))], { home })
    expect(r.code).toBe(2)
    expect(r.stderr).toContain("the file name is too long")
    expect(hasTrace(r.stderr)).toBe(false)
  })

  it("--home under a regular file is a clear usage error", async () => {
    const file = path.join(work, "a-file")
    fs.writeFileSync(file, "x")
    const r = await run(["--home", path.join(file, "home"), "ls"], { home })
    expect(r.code).toBe(2)
    expect(r.stderr).toBe(`graviton: the home ${path.join(file, "home")} cannot be used: ${file} is not a directory\n`)
    expect(r.stderr).not.toContain("conflicting concurrent change")
  })

  it("a 20-digit length in a key is echoed exactly, not rounded", async () => {
    const text = `sha256:${"a".repeat(64)}:12345678901234567890`
    const r = await run(["stat", text], { home })
    expect(r.code).toBe(2)
    expect(r.stderr).toContain(`"${text}"`)
    expect(r.stderr).not.toContain("12345678901234567000")
  })

  it("control characters in a file name are escaped when echoed (result notes and errors)", async () => {
    const name = path.join(work, "evil\x1b[2J\x1b]0;title\x07\nname")
    fs.writeFileSync(name, "hello")
    const put = await run(["put", name], { home })
    expect(put.code).toBe(0)
    expect(put.stderr).not.toMatch(ESCAPE)
    expect(put.stderr).toContain("evil\\x1b[2J\\x1b]0;title\\x07\\nname")
    expect(put.stderr.trim().split("\n")).toHaveLength(1)
    const missing = await run(["put", `${name}-missing`], { home })
    expect(missing.code).toBe(2)
    expect(missing.stderr).not.toMatch(ESCAPE)
    expect(missing.stderr).toContain("\\x1b[2J")
  })

  it("uploads abort of an unknown id says it is unknown (exit 0, like rm of a key not stored)", async () => {
    const id = "0123456789abcdef0123456789abcdef"
    const r = await run(["uploads", "abort", id], { home })
    expect(r.code).toBe(0)
    expect(r.stderr).toBe(`unknown upload ${id}: nothing to abort\n`)
    const json = await run(["uploads", "abort", id, "--json"], { home })
    expect(JSON.parse(json.out)).toEqual({ id, aborted: false })
  })
})

