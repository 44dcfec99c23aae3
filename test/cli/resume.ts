/**
 * The crash-and-resume scenario shared by the per-store test files: a real
 * `graviton upload` process, SIGKILLed once it reports a stored span, then
 * resumed by a new process; assertions on the bytes and on what was sent.
 */
import { expect } from "@effect/vitest"
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..")
const bin = path.join(repo, "bin", "graviton.js")

/** Runs the CLI to completion. */
export const graviton = (args: ReadonlyArray<string>, home: string, env: Record<string, string>) =>
  spawnSync(process.execPath, [bin, ...args], {
    cwd: home,
    env: { ...process.env, GRAVITON_HOME: path.join(home, "store"), GRAVITON_NO_PROGRESS: "1", ...env },
    maxBuffer: 256 * 1024 * 1024
  })

/**
 * Starts an upload throttled to 32 MiB/s (4 spans of 8 MiB/s), kills it
 * with SIGKILL as soon as it reports its first stored span, and returns the
 * upload id and the bytes it had reported stored.
 */
const startAndKill = (file: string, home: string, env: Record<string, string>) =>
  new Promise<{ id: string; stored: number }>((resolve, reject) => {
    const child = spawn(process.execPath, [bin, "upload", file, "--limit-rate", "32M", "--verbose", "--parallel", "4"], {
      cwd: home,
      env: { ...process.env, GRAVITON_HOME: path.join(home, "store"), GRAVITON_NO_PROGRESS: "1", ...env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stderr = ""
    let killed = false
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString()
      if (!killed && /stored \[\d+, \d+\)/.test(stderr)) {
        killed = true
        child.kill("SIGKILL")
      }
    })
    child.on("error", reject)
    child.on("close", (code, signal) => {
      const id = /upload ([0-9a-f]{32})/.exec(stderr)?.[1]
      if (signal !== "SIGKILL" || id === undefined) {
        reject(new Error(`the upload was not killed midway (code ${code}, signal ${signal}): ${stderr}`))
        return
      }
      const stored = Array.from(stderr.matchAll(/stored \[(\d+), (\d+)\)/g)).reduce((n, m) => n + Number(m[2]) - Number(m[1]), 0)
      resolve({ id, stored })
    })
  })

/** The whole scenario; fails the calling test on any mismatch. */
export const crashAndResume = async (options: {
  readonly home: string
  readonly content: Uint8Array
  readonly key: string
  readonly env: Record<string, string>
  readonly migrate?: boolean
}): Promise<void> => {
  const { home, content, key, env } = options
  if (options.migrate === true) {
    const migrated = graviton(["migrate"], home, env)
    expect(migrated.status, migrated.stderr.toString()).toBe(0)
  }
  const file = path.join(home, "big.bin")
  fs.writeFileSync(file, content)

  const first = await startAndKill(file, home, env)
  expect(first.stored).toBeGreaterThan(0)

  // A new process sees what the killed one stored.
  const status = graviton(["uploads", "status", first.id, "--json"], home, env)
  expect(status.status, status.stderr.toString()).toBe(0)
  const before = JSON.parse(status.stdout.toString()) as { received: number; missing: Array<[number, number]> }
  expect(before.received).toBeGreaterThanOrEqual(first.stored)
  expect(before.received).toBeLessThan(content.length)

  const resumed = graviton(["upload", file, "--resume", first.id, "--json"], home, env)
  expect(resumed.status, resumed.stderr.toString()).toBe(0)
  const result = JSON.parse(resumed.stdout.toString()) as { key: string; resumedBytes: number; sentBytes: number }
  expect(result.key).toBe(key)
  expect(result.resumedBytes).toBe(before.received)
  // Only the missing ranges were sent.
  expect(result.sentBytes).toBe(before.missing.reduce((n, [s, e]) => n + e - s, 0))
  expect(result.sentBytes + result.resumedBytes).toBe(content.length)

  const back = graviton(["cat", key], home, env)
  expect(back.status, back.stderr.toString()).toBe(0)
  expect(Buffer.compare(back.stdout, Buffer.from(content.buffer, content.byteOffset, content.length))).toBe(0)

  // Nothing left in progress.
  const left = graviton(["uploads", "ls", "--json"], home, env)
  expect(left.status).toBe(0)
  expect(left.stdout.toString().trim()).toBe("")
}
