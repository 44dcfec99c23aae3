/**
 * Runs `node bin/graviton.js` as a user would (the CLI tests of output,
 * help and `get -o`): in a temporary home, with piped standard streams, or
 * under `script` for a terminal.
 */
import { spawn, spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

export const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..")
export const bin = path.join(repo, "bin", "graviton.js")

export interface Result {
  readonly code: number | null
  readonly stdout: Buffer
  readonly stderr: string
  readonly out: string
}

/** Runs the CLI with `args` in `home` (also its working directory). */
export const run = (
  args: ReadonlyArray<string>,
  options: { readonly home: string; readonly input?: Uint8Array; readonly env?: Record<string, string | undefined> }
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

/** True when util-linux `script` can give a command a terminal here. */
export const hasScript = spawnSync("script", ["-qc", "true", "/dev/null"]).status === 0

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`

/**
 * Runs the CLI on a pseudo-terminal through `script -qc` (stdout and stderr
 * both on it, as in an interactive shell); returns everything the terminal
 * received and the exit code.
 */
export const runOnTty = (
  args: ReadonlyArray<string>,
  options: { readonly home: string; readonly env?: Record<string, string | undefined> }
): Promise<{ readonly code: number | null; readonly tty: string }> =>
  new Promise((resolve, reject) => {
    const command = [process.execPath, bin, ...args].map(shellQuote).join(" ")
    const child = spawn("script", ["-qec", command, "/dev/null"], {
      cwd: options.home,
      env: { ...process.env, GRAVITON_HOME: options.home, GRAVITON_LAYOUT: "monolithic", COLUMNS: "200", ...options.env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let tty = ""
    child.stdout.on("data", (d: Buffer) => (tty += d.toString()))
    child.on("error", reject)
    child.on("close", (code) => resolve({ code, tty }))
  })

export const sha256Key = (bytes: Uint8Array) =>
  `sha256:${createHash("sha256").update(bytes).digest("hex")}:${bytes.length}`

const tempDirs: Array<string> = []

/** A fresh temporary directory, removed by `removeTempDirs`. */
export const tempDir = (label: string) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `graviton-cli-${label}-`))
  tempDirs.push(dir)
  return dir
}

/** Removes every directory `tempDir` made (an afterAll of each test file). */
export const removeTempDirs = () => {
  for (const dir of tempDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true })
}

/** No stack-trace lines and no internal-error banner. */
export const hasTrace = (stderr: string) => /^\s+at\s/m.test(stderr) || stderr.includes("internal error")

export const isRoot = process.getuid?.() === 0
