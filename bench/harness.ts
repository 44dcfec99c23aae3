/**
 * The shared benchmark helper (see ../shared/BENCHMARKS.md): a warm-up, then
 * runs alternating ours / baseline (A B A B ...), the median of each, the
 * ratio of the medians and the min-max spread, printed as one `BENCH {...}`
 * line per comparison plus a short human line.
 */
import { spawn, spawnSync } from "node:child_process"
import { randomFillSync } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

/**
 * bin/graviton.js, with the CLI built first when a source is newer than the last build (the
 * command runs dist/cli, not the sources).
 */
export const cliBin = (): string => {
  const root = path.join(path.dirname(fileURLToPath(import.meta.url)), "..")
  const built = spawnSync(process.execPath, [path.join(root, "scripts", "build.mjs"), "--if-stale"], { stdio: "inherit" })
  if (built.status !== 0) throw new Error(`the build failed (exit ${built.status})`)
  return path.join(root, "bin", "graviton.js")
}

/** True under BENCH_QUICK=1: shrink sizes and counts for a smoke run. */
export const quick: boolean = process.env.BENCH_QUICK === "1"

/** Picks the quick or the full value. */
export const size = <A>(full: A, smoke: A): A => (quick ? smoke : full)

export interface Comparison {
  readonly name: string
  /** Unit of the figure each run returns: "MB/s", "ops/s", "ms", "MiB" ... */
  readonly unit: string
  readonly baselineName: string
  readonly higherIsBetter: boolean
  /** Measured runs of each side after the warm-up (default 5, quick 3; at least 3). */
  readonly runs?: number
  /** Skip the warm-up run (for very long runs). */
  readonly noWarmup?: boolean
  /** One run of our code; resolves to its figure. */
  readonly ours: () => Promise<number>
  /** One run of the baseline on the same data; resolves to its figure. */
  readonly baseline: () => Promise<number>
}

export interface Result {
  readonly name: string
  readonly unit: string
  readonly ours: number
  readonly baseline: number
  readonly ratio: number
  readonly oursSpread: readonly [number, number]
  readonly baselineSpread: readonly [number, number]
}

/** Median of a non-empty list. */
export const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}

const round = (x: number): number => (Math.abs(x) >= 100 ? Math.round(x * 10) / 10 : Math.round(x * 1000) / 1000)

/** Runs a comparison and prints its BENCH line. */
export const compare = async (c: Comparison): Promise<Result> => {
  const runs = Math.max(3, c.runs ?? (quick ? 3 : 5))
  if (!c.noWarmup) {
    await c.ours()
    await c.baseline()
  }
  const ours: Array<number> = []
  const base: Array<number> = []
  for (let i = 0; i < runs; i++) {
    // Alternate which side goes first so drift on a noisy machine hits both.
    if (i % 2 === 0) {
      ours.push(await c.ours())
      base.push(await c.baseline())
    } else {
      base.push(await c.baseline())
      ours.push(await c.ours())
    }
  }
  return summarize(c, ours, base)
}

/** The description of a comparison that `summarize` reports. */
export type Described = Pick<Comparison, "name" | "unit" | "baselineName" | "higherIsBetter">

/**
 * Reports runs measured elsewhere (a three-way alternation, say): medians, ratio, spread, and every
 * run's ratio (run i of ours against run i of the baseline, measured next to each other).
 */
export const summarize = (c: Described, ours: ReadonlyArray<number>, base: ReadonlyArray<number>): Result => {
  const o = median(ours)
  const b = median(base)
  const result: Result = {
    name: c.name,
    unit: c.unit,
    ours: o,
    baseline: b,
    ratio: b === 0 ? 0 : o / b,
    oursSpread: [Math.min(...ours), Math.max(...ours)],
    baselineSpread: [Math.min(...base), Math.max(...base)]
  }
  line({
    name: c.name,
    unit: c.unit,
    ours: round(o),
    baseline: round(b),
    baselineName: c.baselineName,
    ratio: Math.round(result.ratio * 1000) / 1000,
    higherIsBetter: c.higherIsBetter
  })
  const each = ours.map((x, i) => (base[i] ? (x / base[i]!).toFixed(2) : "-")).join(" ")
  console.log(
    `  ${c.name}: ours ${round(o)} ${c.unit} [${round(result.oursSpread[0])}-${round(result.oursSpread[1])}]` +
      ` vs ${c.baselineName} ${round(b)} ${c.unit} [${round(result.baselineSpread[0])}-${
        round(result.baselineSpread[1])
      }] -> ratio ${result.ratio.toFixed(3)} (${ours.length} runs each; per run ${each})`
  )
  return result
}

/** Prints a figure with no baseline (e.g. peak memory). */
export const single = (name: string, unit: string, value: number, higherIsBetter = false): void =>
  line({ name, unit, ours: round(value), baseline: null, baselineName: null, ratio: null, higherIsBetter })

const line = (record: Record<string, unknown>): void => {
  console.log(`BENCH ${JSON.stringify(record)}`)
}

/** Times one async run; returns seconds. */
export const time = async (run: () => Promise<unknown>): Promise<number> => {
  const start = process.hrtime.bigint()
  await run()
  return Number(process.hrtime.bigint() - start) / 1e9
}

/** Throughput in MB/s (10^6 bytes per second) of moving `bytes` in `seconds`. */
export const mbps = (bytes: number, seconds: number): number => bytes / 1e6 / seconds

/**
 * Runs a command in its own process (under GNU time, package `time`) and
 * returns its peak RSS in MiB, so the figure covers only that work.
 */
export const peakRssMiB = (command: string, args: ReadonlyArray<string>, env?: NodeJS.ProcessEnv): Promise<number> =>
  new Promise((resolve, reject) => {
    // GNU time prints "Maximum resident set size (kbytes): N" with -v.
    const child = spawn("/usr/bin/time", ["-v", command, ...args], {
      env: { ...process.env, ...env },
      stdio: ["ignore", "ignore", "pipe"]
    })
    let stderr = ""
    child.stderr.on("data", (d) => (stderr += d))
    child.on("error", reject)
    child.on("close", (code) => {
      const m = /Maximum resident set size \(kbytes\): (\d+)/.exec(stderr)
      if (code !== 0 || !m) return reject(new Error(`${command} exited ${code}: ${stderr.slice(-2000)}`))
      resolve(Number(m[1]) / 1024)
    })
  })

/** Writes `bytes` of random data (incompressible, no accidental block dedup) to `file`. */
export const randomFile = (file: string, bytes: number): void => {
  const fd = fs.openSync(file, "w")
  const buffer = Buffer.allocUnsafe(8 * 1024 * 1024)
  for (let written = 0; written < bytes; written += buffer.length) {
    randomFillSync(buffer)
    fs.writeSync(fd, buffer, 0, Math.min(buffer.length, bytes - written))
  }
  fs.closeSync(fd)
}
