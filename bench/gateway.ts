/**
 * The HTTP gateway (`graviton serve`, a child process, embedded store)
 * against the plain servers of the ecosystem, each another child process,
 * all on loopback, the clients in this process:
 *
 *   gateway.get.<size>        one GET of a large blob (Node's fetch), MB/s, vs a plain
 *                             Node `http` server piping `fs.createReadStream` of the same
 *                             file (ours verifies as it serves)
 *   gateway.get4k.c64         GETs of 4 KiB blobs at concurrency 64, requests/s, vs the
 *                             plain server serving the same files
 *   gateway.get4k.c64.p99     our p99 latency of those GETs, ms (no baseline)
 *   gateway.tus.<size>        one tus upload of the large file with tus-js-client (reading
 *                             the file by path, 64 MiB chunks), MB/s, vs @tus/server with
 *                             @tus/file-store (same client, same chunks); ours ends with the
 *                             blob verified and published, theirs with a file on disk
 *   gateway.rss.peak          the gateway's peak RSS over the whole run, GETs and uploads
 *                             of the large blob included (VmHWM), MiB (no baseline)
 *
 * Sizes: 1 GiB and 10k GETs (BENCH_QUICK=1: 64 MiB and 500 GETs).
 */
import { type ChildProcess, spawn } from "node:child_process"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as tus from "tus-js-client"
import * as Bench from "./harness.js"

const MiB = 1024 * 1024
const size = Bench.size(1024 * MiB, 64 * MiB)
const smallCount = Bench.size(10_000, 500)
const CONCURRENCY = 64
/** tus chunk size, the same for both servers (a multiple of the store's 8 MiB segments). */
const TUS_CHUNK = 64 * MiB
const TOKEN = "bench-token"
const bin = Bench.cliBin()
const work = fs.mkdtempSync(path.join(os.tmpdir(), "graviton-bench-gateway-"))
const home = path.join(work, "home")
const files = path.join(work, "files")
fs.mkdirSync(home)
fs.mkdirSync(files)

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const auth = { authorization: `Bearer ${TOKEN}` }

/** Starts a child and resolves with it and the URL it prints (`listening on URL`). */
const start = (args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = {}): Promise<{ child: ChildProcess; url: string }> =>
  new Promise((resolve, reject) => {
    // From the repository, where the baselines' imports resolve.
    const child = spawn(process.execPath, args, {
      cwd: repo,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "inherit"]
    })
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

/** The ecosystem's reference tus server: @tus/server with @tus/file-store in a directory. */
const tusServer = `
import http from "node:http"
import { Server } from "@tus/server"
import { FileStore } from "@tus/file-store"
const server = new Server({ path: "/files", datastore: new FileStore({ directory: process.argv[1] }) })
const listener = http.createServer((req, res) => server.handle(req, res))
listener.listen(0, "127.0.0.1", () => console.log("listening on http://127.0.0.1:" + listener.address().port))
`

/** One tus upload of `file` with tus-js-client; resolves with the upload's URL and the Graviton-Key answered, if any. */
const tusUpload = (endpoint: string, file: string, headers: Record<string, string>) =>
  new Promise<{ url: string; key: string | null }>((resolve, reject) => {
    let key: string | null = null
    // tus-js-client reads a file stream by its path, a chunk at a time; the stream itself stays unread.
    const input = fs.createReadStream(file)
    const upload: tus.Upload = new tus.Upload(input, {
      endpoint,
      headers,
      chunkSize: TUS_CHUNK,
      retryDelays: [],
      storeFingerprintForResuming: false,
      metadata: { filename: path.basename(file) },
      onAfterResponse: (_req, res) => {
        key = res.getHeader("graviton-key") ?? key
      },
      onError: (e) => {
        input.destroy()
        reject(e)
      },
      onSuccess: () => {
        input.destroy()
        resolve({ url: upload.url!, key })
      }
    })
    upload.start()
  })

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
  const tusFiles = path.join(work, "tus-file-store")
  fs.mkdirSync(tusFiles)
  const reference = await start(["--input-type=module", "-e", tusServer, tusFiles])
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

    // tus uploads of the large file. Ours: the blob is removed after each run (not timed), so that every
    // upload stores it anew; theirs: the uploaded file and its .json are removed likewise.
    await Bench.compare({
      name: `gateway.tus.${size / MiB}MiB`,
      unit: "MB/s",
      baselineName: "@tus/server + @tus/file-store",
      higherIsBetter: true,
      ours: async () => {
        let key: string | null = null
        const seconds = await Bench.time(async () => {
          key = (await tusUpload(`${ours.url}/files/`, big, auth)).key
        })
        if (key !== bigKey) throw new Error(`the gateway answered ${key} for ${bigKey}`)
        const removed = await fetch(`${ours.url}/blobs/${bigKey}`, { method: "DELETE", headers: auth })
        if (removed.status !== 204) throw new Error(`DELETE answered ${removed.status}`)
        return Bench.mbps(size, seconds)
      },
      baseline: async () => {
        let url = ""
        const seconds = await Bench.time(async () => {
          url = (await tusUpload(`${reference.url}/files/`, big, {})).url
        })
        const id = path.basename(new URL(url).pathname)
        const stored = fs.statSync(path.join(tusFiles, id)).size
        if (stored !== size) throw new Error(`@tus/file-store holds ${stored} of ${size} bytes`)
        fs.rmSync(path.join(tusFiles, id))
        fs.rmSync(path.join(tusFiles, `${id}.json`), { force: true })
        return Bench.mbps(size, seconds)
      }
    })
    Bench.single("gateway.rss.peak", "MiB", vmHwmMiB(ours.child.pid!))
  } finally {
    ours.child.kill("SIGTERM")
    plain.child.kill("SIGTERM")
    reference.child.kill("SIGTERM")
    fs.rmSync(work, { recursive: true, force: true })
  }
}

await main()
