/**
 * `graviton replicate` targets (issue #16, item 4): a target is remembered
 * only once it opened and took a verified copy; `replicate targets` lists
 * them and `targets rm NAME` forgets one; no target can hang the CLI: the
 * mkdir walk is bounded (`embedded:/proc/nope` spun at 100% CPU forever) and
 * a command stuck opening a target ends within a second of SIGTERM/SIGINT.
 */
import { afterAll, describe, expect, it } from "vitest"
import { execFileSync, spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { recordFault } from "../harness/reliability.js"

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..")
const bin = path.join(repo, "bin", "graviton.js")
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "graviton-targets-"))
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))
const env = { ...process.env, GRAVITON_HOME: path.join(dir, "home"), GRAVITON_STORE: "embedded", GRAVITON_NO_PROGRESS: "1" }

const graviton = (...args: Array<string>) =>
  spawnSync(process.execPath, [bin, ...args], { cwd: dir, env, encoding: "utf8", timeout: 30_000 })

const file = path.join(dir, "in.txt")
fs.writeFileSync(file, "replicate me\n")
const key = () => graviton("put", file).stdout.trim()
const listed = () => graviton("replicate", "targets").stdout.trim().split("\n").filter((l) => l.length > 0)

describe("graviton replicate targets", () => {
  it("failing targets are reported and not remembered: /proc/nope ends at once, a file as a directory too", () => {
    const k = key()
    const proc = graviton("replicate", k, "--to", "x=embedded:/proc/nope")
    // Before: never returned (spawnSync's timeout kills it: status null).
    expect(proc.status, proc.stderr).toBe(5)
    expect(proc.stdout).toMatch(/FAILED +x: .*cannot create the store directory/)
    const asDir = graviton("replicate", k, "--to", `f=embedded:${file}/sub`)
    expect(asDir.status, asDir.stderr).toBe(5)
    expect(listed()).toEqual([])
    const repair = graviton("repair")
    expect(repair.stderr).not.toMatch(/skipping target/)
    recordFault({
      area: "cli",
      fault: "replicate to an unwritable target (embedded:/proc/nope, a file as a directory)",
      expected: "fails at once with exit 5; the target is not remembered",
      observed: `exit ${proc.status} and ${asDir.status}; remembered: ${listed().length}`
    })
  })

  it("a good target is remembered, listed, and forgotten by targets rm; an unknown name is exit 3", () => {
    const k = key()
    const target = path.join(dir, "replica")
    const ok = graviton("replicate", k, "--to", `r=embedded:${target}`)
    expect(ok.status, ok.stderr).toBe(0)
    expect(listed()).toEqual([`r embedded:${target}`])
    expect(JSON.parse(graviton("replicate", "targets", "--json").stdout)).toEqual([{ name: "r", spec: `embedded:${target}` }])
    const rm = graviton("replicate", "targets", "rm", "r")
    expect(rm.status, rm.stderr).toBe(0)
    expect(listed()).toEqual([])
    expect(graviton("replicate", "targets", "rm", "r").status).toBe(3)
    expect(graviton("replicate").status).toBe(2)
  })

  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    it(`a target that hangs while opening: ${signal} ends the command within a second (margin: 3 s)`, async () => {
      const k = key()
      // LevelDB reads <meta>/CURRENT when it exists: a FIFO with no writer blocks that read forever, in the
      // thread pool, inside the store's (uninterruptible) opening.
      const hanging = path.join(dir, `hang-${signal}`)
      fs.mkdirSync(path.join(hanging, "meta"), { recursive: true })
      execFileSync("mkfifo", [path.join(hanging, "meta", "CURRENT")])
      const child = spawn(process.execPath, [bin, "replicate", k, "--to", `h=embedded:${hanging}`], { cwd: dir, env, stdio: "ignore" })
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
        child.on("exit", (code, sig) => resolve({ code, signal: sig, at: performance.now() }))
      )
      await new Promise((r) => setTimeout(r, 2500))
      expect(child.exitCode).toBe(null)
      const sent = performance.now()
      child.kill(signal)
      const end = await Promise.race([exited, new Promise<undefined>((r) => setTimeout(r, 3000))])
      if (end === undefined) child.kill("SIGKILL")
      expect(end, "still running 3 s after the signal").toBeDefined()
      expect(end!.code === 130 || end!.signal === signal).toBe(true)
      expect(listed()).toEqual([])
      recordFault({
        area: "cli",
        fault: `replicate to a target whose opening blocks forever, then ${signal}`,
        expected: "the command ends within a second of the signal",
        observed: `ended after ${Math.round(end!.at - sent)} ms (${end!.signal ?? `exit ${end!.code}`})`
      })
    }, 30_000)
  }
})
