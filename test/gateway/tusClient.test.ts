/**
 * tus with the real client, tus-js-client in Node: a 64 MiB upload in one
 * go; the same upload with `graviton serve` SIGKILLed midway and a new
 * process started on the same home and port, which the client resumes
 * with its own state (same Upload object): the blob comes out byte-exact
 * and the client sent at most one chunk again; termination.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as tus from "tus-js-client"
import { type Child, type InProcess, kill, reader, startCli, startInProcess, tempHome, WRITER } from "./servers.js"

const SIZE = 64 * 1024 * 1024
const content = randomBytes(SIZE)
const key = `sha256:${createHash("sha256").update(content).digest("hex")}:${SIZE}`
const homes: Array<string> = []

afterAll(() => {
  for (const h of homes) fs.rmSync(h, { recursive: true, force: true })
})

interface Outcome {
  readonly key: string | null
  readonly url: string | null
}

/** Runs an upload to its end; `hooks` sees every request and progress. */
const upload = (
  endpoint: string,
  bytes: Buffer,
  options: Partial<tus.UploadOptions> = {}
): Promise<Outcome> =>
  new Promise((resolve, reject) => {
    let finalKey: string | null = null
    const u: tus.Upload = new tus.Upload(bytes, {
      endpoint: `${endpoint}/files/`,
      headers: { authorization: `Bearer ${WRITER}` },
      metadata: { filename: "content.bin" },
      retryDelays: [100, 300, 500, 1000, 1000, 2000, 2000, 3000, 5000],
      ...options,
      onAfterResponse: (req, res) => {
        const k = res.getHeader("graviton-key")
        if (k) finalKey = k
        return options.onAfterResponse?.(req, res)
      },
      onError: reject,
      onSuccess: () => resolve({ key: finalKey, url: u.url })
    })
    u.start()
  })

const fetchBlob = async (base: string, k: string) => {
  const res = await fetch(`${base}/blobs/${k}`, { headers: { authorization: reader.authorization } })
  expect(res.status).toBe(200)
  return Buffer.from(await res.arrayBuffer())
}

describe("tus-js-client against the gateway", () => {
  let server: InProcess
  beforeAll(async () => {
    const home = tempHome("tusjs")
    homes.push(home)
    server = await startInProcess(home)
  })
  afterAll(() => server?.close())

  it("uploads 64 MiB in one request; the response names the blob", async () => {
    const outcome = await upload(server.url, content)
    expect(outcome.key).toBe(key)
    expect((await fetchBlob(server.url, key)).equals(content)).toBe(true)
  }, 120_000)

  it("uploads in 5 MiB chunks (not a multiple of the staging's segments)", async () => {
    const bytes = randomBytes(23 * 1024 * 1024 + 5)
    const k = `sha256:${createHash("sha256").update(bytes).digest("hex")}:${bytes.length}`
    const outcome = await upload(server.url, bytes, { chunkSize: 5 * 1024 * 1024 })
    expect(outcome.key).toBe(k)
    expect((await fetchBlob(server.url, k)).equals(bytes)).toBe(true)
  }, 120_000)

  it("terminates an upload (abort with termination)", async () => {
    const bytes = randomBytes(20 * 1024 * 1024)
    let created: string | null = null
    await new Promise<void>((resolve, reject) => {
      const u = new tus.Upload(bytes, {
        endpoint: `${server.url}/files/`,
        headers: { authorization: `Bearer ${WRITER}` },
        chunkSize: 4 * 1024 * 1024,
        onChunkComplete: () => {
          if (created !== null) return
          created = u.url
          u.abort(true).then(resolve, reject)
        },
        onError: reject,
        onSuccess: () => reject(new Error("the upload finished before it was terminated"))
      })
      u.start()
    })
    expect(created).not.toBeNull()
    const res = await fetch(created!, { method: "HEAD", headers: { authorization: `Bearer ${WRITER}`, "tus-resumable": "1.0.0" } })
    expect(res.status).toBe(404)
  }, 60_000)
})

describe("tus-js-client across a SIGKILLed server", () => {
  let first: Child | undefined
  let second: Child | undefined
  afterAll(async () => {
    if (first) await kill(first)
    if (second) await kill(second)
  })

  it("resumes on a new process over the same home: byte-exact, at most one chunk sent again", async () => {
    const home = tempHome("tus-kill")
    homes.push(home)
    first = await startCli(home)
    const port = new URL(first.url).port
    const chunkSize = 8 * 1024 * 1024
    // Bytes the client sent, request by request (tus-js-client reports offset + bytes sent in this request).
    let requestOffset = 0
    let sentInRequest = 0
    let sent = 0
    let restarted: Promise<void> | undefined
    // The offset of the first PATCH after the kill: where the new process said to go on.
    let resumedAt: number | undefined
    const outcome = await upload(first.url, content, {
      chunkSize,
      onBeforeRequest: (req) => {
        if (req.getMethod() !== "PATCH") return
        sent += sentInRequest
        sentInRequest = 0
        requestOffset = Number(req.getHeader("Upload-Offset"))
        if (restarted !== undefined && second !== undefined && resumedAt === undefined) resumedAt = requestOffset
      },
      onProgress: (bytesSent) => {
        sentInRequest = Math.max(sentInRequest, bytesSent - requestOffset)
        if (restarted === undefined && bytesSent >= 28 * 1024 * 1024) {
          restarted = kill(first!).then(async () => {
            second = await startCli(home, `127.0.0.1:${port}`)
          })
        }
      }
    })
    sent += sentInRequest
    expect(restarted).toBeDefined()
    await restarted
    expect(outcome.key).toBe(key)
    expect((await fetchBlob(second!.url, key)).equals(content)).toBe(true)
    // Resumed midway (not from scratch), at a chunk boundary the first process had stored.
    expect(resumedAt).toBeGreaterThan(0)
    expect(resumedAt).toBeLessThan(SIZE)
    expect(resumedAt! % chunkSize).toBe(0)
    expect(sent).toBeGreaterThanOrEqual(SIZE)
    expect(sent - SIZE).toBeLessThanOrEqual(chunkSize)
  }, 180_000)
})
