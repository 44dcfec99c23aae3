/**
 * The HTTP gateway (`graviton serve`, a child process) against a plain Node
 * `http` server piping `fs.createReadStream` of the same files (another
 * child process), both on loopback, one client (Node's fetch) in this
 * process:
 *
 *   gateway.get.<size>        one GET of a large blob, MB/s (ours verifies as it serves)
 *   gateway.get4k.c64         GETs of 4 KiB blobs at concurrency 64, requests/s
 *   gateway.get4k.c64.p99     our p99 latency of those GETs, ms (no baseline)
 *   gateway.rss.peak          the gateway's peak RSS over the run (VmHWM), MiB
 *
 * Sizes: 1 GiB and 10k GETs (BENCH_QUICK=1: 64 MiB and 500 GETs). Not
 * measured yet: the tus upload against @tus/server.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Bench from "./harness.js"

const MiB = 1024 * 1024
const size = Bench.size(1024 * MiB, 64 * MiB)
const smallCount = Bench.size(10_000, 500)
const CONCURRENCY = 64
const TOKEN = "bench-token"
const bin = Bench.cliBin()
const work = fs.mkdtempSync(path.join(os.tmpdir(), "graviton-bench-gateway-"))
const home = path.join(work, "home")
const files = path.join(work, "files")
fs.mkdirSync(home)
fs.mkdirSync(files)

const auth = { authorization: `Bearer ${TOKEN}` }

/** Starts a child and resolves with it and the URL it prints (`listening on URL`). */
const start = (args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = {}): Promise<{ child: ChildProcess; url: string }> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "inherit"] })
    let out = ""
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString()
      const m = /listening on (http:\/\/\S+)/.exec(out)
      if (m !== null) resolve({ child, url: m[1]! })
    })
    child.on("error", reject)
    child.on("exit", (code) => reject(new Error(`exited ${code} before listening`)))
  })

/** The baseline: files of a directory by name, piped from fs.createReadStream. */
const plainServer = `
const http = require("node:http"), fs = require("node:fs"), path = require("node:path")
const dir = process.argv[1]
const server = http.createServer((req, res) => {
  const file = path.join(dir, path.basename(req.url))
  fs.stat(file, (err, st) => {
    if (err) { res.writeHead(404); return res.end() }
    res.writeHead(200, { "content-length": st.size, "content-type": "application/octet-stream" })
    fs.createReadStream(file).pipe(res)
  })
})
server.listen(0, "127.0.0.1", () => console.log("listening on http://127.0.0.1:" + server.address().port))
`

/** Reads a whole response body, counting bytes (not keeping them). */
const drain = async (res: Response): Promise<number> => {
  let n = 0
  const reader = res.body!.getReader()
  for (;;) {
    const { done, value } = await reader.read()
    if (done) return n
    n += value.length
  }
}

const keyOfFile = (file: string): string => {
  const hash = createHash("sha256")
  const fd = fs.openSync(file, "r")
  const buffer = Buffer.allocUnsafe(8 * MiB)
  for (;;) {
    const n = fs.readSync(fd, buffer, 0, buffer.length, null)
    if (n === 0) break
    hash.update(buffer.subarray(0, n))
  }
  fs.closeSync(fd)
  return `sha256:${hash.digest("hex")}:${fs.statSync(file).size}`
}

const vmHwmMiB = (pid: number): number => {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))
  return m === null ? Number.NaN : Number(m[1]) / 1024
}

const main = async () => {
  const big = path.join(files, "big.bin")
  Bench.randomFile(big, size)
  const bigKey = keyOfFile(big)
  const ours = await start([bin, "serve", "--listen", "127.0.0.1:0"], {
    GRAVITON_HOME: home,
    GRAVITON_STORE: "embedded",
    GRAVITON_GATEWAY_TOKENS: `read,write,delete:${TOKEN}`
  })
  const plain = await start(["-e", plainServer, files])
  try {
    // The large blob, stored through the gateway itself.
    const put = await fetch(`${ours.url}/blobs`, {
      method: "PUT",
      headers: auth,
      body: fs.createReadStream(big) as unknown as ReadableStream,
      duplex: "half"
    } as RequestInit)
    if (put.status !== 201) throw new Error(`PUT answered ${put.status}`)

    const get = (url: string, headers: Record<string, string> = {}) => async () => {
      const seconds = await Bench.time(async () => {
        const res = await fetch(url, { headers })
        const n = await drain(res)
        if (n !== size) throw new Error(`read ${n} of ${size} bytes`)
      })
      return Bench.mbps(size, seconds)
    }
    await Bench.compare({
      name: `gateway.get.${size / MiB}MiB`,
      unit: "MB/s",
      baselineName: "node http + fs.createReadStream",
      higherIsBetter: true,
      ours: get(`${ours.url}/blobs/${bigKey}`, auth),
      baseline: get(`${plain.url}/big.bin`)
    })

    // Small blobs: the same 4 KiB files on both sides.
    const smallKeys: Array<string> = []
    const smallNames: Array<string> = []
    const distinct = Math.min(smallCount, 1000)
    for (let i = 0; i < distinct; i++) {
      const bytes = Buffer.alloc(4096, 0)
      bytes.writeUInt32BE(i, 0)
      const name = `small-${i}.bin`
      fs.writeFileSync(path.join(files, name), bytes)
      smallNames.push(name)
      const res = await fetch(`${ours.url}/blobs`, { method: "PUT", headers: auth, body: bytes })
      if (res.status !== 201) throw new Error(`PUT answered ${res.status}`)
      smallKeys.push(((await res.json()) as { key: string }).key)
    }
    let latencies: Array<number> = []
    const many = (url: (i: number) => string, headers: Record<string, string>, record: boolean) => async () => {
      let next = 0
      const seen: Array<number> = []
      const seconds = await Bench.time(() =>
        Promise.all(Array.from({ length: CONCURRENCY }, async () => {
          while (next < smallCount) {
            const i = next++
            const t0 = process.hrtime.bigint()
            const res = await fetch(url(i % distinct), { headers })
            if ((await drain(res)) !== 4096) throw new Error("short small read")
            seen.push(Number(process.hrtime.bigint() - t0) / 1e6)
          }
        }))
      )
      if (record) latencies = seen
      return smallCount / seconds
    }
    await Bench.compare({
      name: `gateway.get4k.c${CONCURRENCY}`,
      unit: "req/s",
      baselineName: "node http + fs.createReadStream",
      higherIsBetter: true,
      ours: many((i) => `${ours.url}/blobs/${smallKeys[i]}`, auth, true),
      baseline: many((i) => `${plain.url}/${smallNames[i]}`, {}, false)
    })
    latencies.sort((a, b) => a - b)
    Bench.single(`gateway.get4k.c${CONCURRENCY}.p99`, "ms", latencies[Math.floor(latencies.length * 0.99)] ?? Number.NaN)
    Bench.single("gateway.rss.peak", "MiB", vmHwmMiB(ours.child.pid!))
  } finally {
    ours.child.kill("SIGTERM")
    plain.child.kill("SIGTERM")
    fs.rmSync(work, { recursive: true, force: true })
  }
}

await main()
