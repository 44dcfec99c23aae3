/**
 * The server under load: `graviton serve` as a child process (embedded
 * store), many clients at once on loopback mixing GETs (whole, ranged,
 * conditional), PUTs (new and repeated content) and tus uploads (create,
 * then two PATCHes), for a bounded time. No 5xx but the limits' own 503
 * (and 429), no other unexpected status, no failed connection; afterwards
 * every stored blob reads back matching its key and `graviton verify`
 * passes over the home. The server's memory stays flat: its resident size
 * in the second half of the run stays within 1.5 times (plus 64 MiB) the
 * peak of the first half, where the load was the same (a leak per request
 * would keep it growing).
 *
 * GRAVITON_SOAK_CLIENTS (default 200) and GRAVITON_SOAK_SECONDS (default
 * 30, as the issue asks) bound it.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { bodyOf, type Child, kill, repo, startCli, tempHome, TOKENS_ENV, writer } from "./servers.js"

const CLIENTS = Number(process.env.GRAVITON_SOAK_CLIENTS ?? 200)
const SECONDS = Number(process.env.GRAVITON_SOAK_SECONDS ?? 30)

const keyOf = (b: Uint8Array) => `sha256:${createHash("sha256").update(b).digest("hex")}:${b.length}`
const tusHeaders = { ...writer, "tus-resumable": "1.0.0" }
const offsetType = { "content-type": "application/offset+octet-stream" }

let home: string | undefined
let child: Child | undefined
afterAll(async () => {
  if (child) await kill(child)
  if (home) fs.rmSync(home, { recursive: true, force: true })
})

/** Resident and peak memory of a process, from /proc (undefined elsewhere). */
const memoryOf = (pid: number): { rss: number; peak: number } | undefined => {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8")
    const kib = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN) * 1024
    return { rss: kib("VmRSS"), peak: kib("VmHWM") }
  } catch {
    return undefined
  }
}

const mib = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`

describe("soak", () => {
  it(`${CLIENTS} clients mixing GET, PUT and tus for ${SECONDS} s: no 5xx but the limits', every blob verifies`, async () => {
    home = tempHome("soak")
    child = await startCli(home, "127.0.0.1:0", { GRAVITON_GATEWAY_MAX_UPLOADS: "32" })
    const url = child.url
    const pid = child.process.pid!

    const stored = new Map<string, Buffer>()
    const statuses = new Map<string, number>()
    const unexpected: Array<string> = []
    const count = (what: string, status: number) => statuses.set(`${what} ${status}`, (statuses.get(`${what} ${status}`) ?? 0) + 1)
    const expectStatus = (what: string, status: number, allowed: ReadonlyArray<number>) => {
      count(what, status)
      // The limits answer 503 (uploads running at once) or 429; nothing else may be refused or fail.
      if (!allowed.includes(status) && status !== 503 && status !== 429) unexpected.push(`${what} → ${status}`)
      return allowed.includes(status)
    }
    // A few blobs to read from the start, and content every client may PUT again (deduplicated).
    const shared = Array.from({ length: 8 }, (_, i) => randomBytes(1024 * (i + 1) * 7))
    for (const bytes of shared) {
      const res = await fetch(`${url}/blobs`, { method: "PUT", headers: writer, body: bodyOf(bytes) })
      expect(res.status).toBe(201)
      stored.set(keyOf(bytes), bytes)
    }
    const known = () => Array.from(stored.keys())
    const pick = <A>(xs: ReadonlyArray<A>) => xs[Math.floor(Math.random() * xs.length)]!

    const get = async () => {
      const key = pick(known())
      const bytes = stored.get(key)!
      const mode = Math.floor(Math.random() * 3)
      const headers: Record<string, string> = { ...writer }
      if (mode === 1) headers.range = `bytes=${Math.floor(bytes.length / 3)}-${Math.floor(bytes.length / 2)}`
      if (mode === 2) headers["if-none-match"] = `"${key}"`
      const res = await fetch(`${url}/blobs/${key}`, { headers })
      const body = Buffer.from(await res.arrayBuffer())
      if (!expectStatus("GET", res.status, [[200], [206], [304]][mode]!)) return
      const want = mode === 0 ? bytes : mode === 1 ? bytes.subarray(Math.floor(bytes.length / 3), Math.floor(bytes.length / 2) + 1) : Buffer.alloc(0)
      if (!body.equals(want)) unexpected.push(`GET ${mode} of ${key}: other bytes`)
    }

    const put = async () => {
      const bytes = Math.random() < 0.2 ? pick(shared) : randomBytes(1 + Math.floor(Math.random() * 64 * 1024))
      const res = await fetch(`${url}/blobs`, { method: "PUT", headers: writer, body: bodyOf(bytes) })
      const body = await res.json() as { key?: string }
      if (!expectStatus("PUT", res.status, [201])) return
      if (body.key !== keyOf(bytes)) unexpected.push(`PUT answered ${body.key} for ${keyOf(bytes)}`)
      stored.set(keyOf(bytes), bytes)
    }

    const tus = async () => {
      const bytes = randomBytes(64 * 1024 + Math.floor(Math.random() * 512 * 1024))
      const created = await fetch(`${url}/files/`, { method: "POST", headers: { ...tusHeaders, "upload-length": String(bytes.length) } })
      if (!expectStatus("tus POST", created.status, [201])) return
      const location = `${url}${created.headers.get("location")}`
      const half = Math.floor(bytes.length / 2)
      let key: string | null = null
      for (const [from, to] of [[0, half], [half, bytes.length]] as const) {
        // A PATCH refused by the upload limit is sent again (the offset did not move).
        for (let attempt = 0;; attempt++) {
          const res = await fetch(location, {
            method: "PATCH",
            headers: { ...tusHeaders, ...offsetType, "upload-offset": String(from) },
            body: bodyOf(bytes.subarray(from, to))
          })
          await res.arrayBuffer()
          if (expectStatus("tus PATCH", res.status, [204])) {
            key = res.headers.get("graviton-key")
            break
          }
          if (res.status !== 503 || attempt > 50) return
          await new Promise((r) => setTimeout(r, 50 + Math.random() * 100))
        }
      }
      if (key !== keyOf(bytes)) unexpected.push(`tus upload answered ${key} for ${keyOf(bytes)}`)
      else stored.set(key, bytes)
    }

    const errors: Array<string> = []
    const end = Date.now() + SECONDS * 1000
    // Resident size sampled through the run, by half: the first half's peak is the plateau the load needs.
    const half = Date.now() + (SECONDS * 1000) / 2
    const peaks = [0, 0]
    const sampler = setInterval(() => {
      const rss = memoryOf(pid)?.rss ?? 0
      const i = Date.now() < half ? 0 : 1
      peaks[i] = Math.max(peaks[i]!, rss)
    }, 250)
    const client = async () => {
      while (Date.now() < end) {
        const r = Math.random()
        await (r < 0.5 ? get() : r < 0.8 ? put() : tus()).catch((e: unknown) => {
          errors.push(String((e as Error)?.cause ?? e))
        })
      }
    }
    await Promise.all(Array.from({ length: CLIENTS }, client))
    clearInterval(sampler)

    const memory = memoryOf(pid)
    const summary = Array.from(statuses).sort().map(([k, n]) => `${k}: ${n}`).join(", ")
    console.log(
      `soak: ${CLIENTS} clients, ${SECONDS} s; ${summary}; ${stored.size} blobs stored; ` +
        `server RSS sampled peak ${mib(peaks[0]!)} in the first half, ${mib(peaks[1]!)} in the second, ` +
        `at the end ${memory ? mib(memory.rss) : "?"}, kernel peak ${memory ? mib(memory.peak) : "?"}`
    )
    expect(errors.slice(0, 5)).toEqual([])
    expect(unexpected.slice(0, 10)).toEqual([])
    const served = Array.from(statuses).filter(([k]) => / 20[146]$/.test(k)).reduce((n, [, c]) => n + c, 0)
    expect(served).toBeGreaterThan(CLIENTS)
    // Memory flat (where /proc tells): no growth past the plateau of the first half.
    if (peaks[0]! > 0) expect(peaks[1]!).toBeLessThanOrEqual(peaks[0]! * 1.5 + 64 * 1024 * 1024)

    // Every blob stored reads back whole and matching its key (the server re-hashes as it serves).
    const keys = known()
    for (let i = 0; i < keys.length; i += 16) {
      await Promise.all(keys.slice(i, i + 16).map(async (key) => {
        const res = await fetch(`${url}/blobs/${key}`, { headers: writer })
        expect(res.status).toBe(200)
        expect(keyOf(Buffer.from(await res.arrayBuffer()))).toBe(key)
      }))
    }
    // And the store as a whole verifies, the server stopped (the embedded store is one process at a time).
    await kill(child, "SIGTERM")
    const verify = spawnSync(process.execPath, [path.join(repo, "bin", "graviton.js"), "verify", "--json"], {
      cwd: home,
      env: { ...process.env, GRAVITON_HOME: home, GRAVITON_STORE: "embedded", GRAVITON_GATEWAY_TOKENS: TOKENS_ENV },
      encoding: "utf8"
    })
    expect(verify.status, verify.stderr).toBe(0)
    const report = JSON.parse(verify.stdout) as { checked: number; ok: number }
    expect(report.checked).toBe(stored.size)
    expect(report.ok).toBe(stored.size)
  }, 300_000)
})
