/**
 * Two `graviton serve` processes over one PostgreSQL store are one
 * service: two PATCHes of one upload at once, one through each process —
 * one proceeds, the other gets 423, and the blob is exactly the bytes of
 * the one that proceeded; a tus upload begun on one process, that process
 * SIGKILLed mid-PATCH, resumed with tus-js-client through the other: the
 * killed writer's lease (2 seconds here) runs out, the blob is byte-exact.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as http from "node:http"
import * as tus from "tus-js-client"
import * as PgStore from "../../src/stores/PgStore.js"
import { createDatabase, dropDatabase, skipReason, usePostgres } from "../harness/postgres.js"
import { type Child, kill, reader, startCli, tempHome, writer, WRITER } from "./servers.js"

usePostgres()
const pgSkip = skipReason()
const suffix = pgSkip === undefined ? "" : ` (skipped: ${pgSkip})`

const tusHeaders = { ...writer, "tus-resumable": "1.0.0" }
const keyOf = (bytes: Uint8Array) => `sha256:${createHash("sha256").update(bytes).digest("hex")}:${bytes.length}`

let db: { url: string; name: string } | undefined
let home: string | undefined
const children: Array<Child> = []

const serve = async () => {
  const child = await startCli(home!, "127.0.0.1:0", {
    GRAVITON_STORE: "pg",
    GRAVITON_PG_URL: db!.url,
    GRAVITON_GATEWAY_UPLOAD_LEASE: "2 seconds"
  })
  children.push(child)
  return child
}

beforeAll(async () => {
  if (pgSkip !== undefined) return
  db = await createDatabase("gateway")
  await Effect.runPromise(PgStore.migrate({ url: Redacted.make(db.url) }))
  home = tempHome("pg")
}, 60_000)

afterAll(async () => {
  for (const c of children) await kill(c)
  if (db) await dropDatabase(db.name).catch(() => undefined)
  if (home) fs.rmSync(home, { recursive: true, force: true })
})

const fetchBlob = async (base: string, key: string) => {
  const res = await fetch(`${base}/blobs/${key}`, { headers: reader })
  expect(res.status).toBe(200)
  return Buffer.from(await res.arrayBuffer())
}

/** A PATCH that sends `sent` bytes of `bytes` and waits; `finish` sends the rest, `drop` gives up. */
const held = (url: string, bytes: Buffer, sent: number) => {
  const request = http.request(url, {
    method: "PATCH",
    headers: {
      ...tusHeaders,
      "content-type": "application/offset+octet-stream",
      "upload-offset": "0",
      "content-length": String(bytes.length)
    }
  })
  const response = new Promise<{ status: number; key: string | undefined }>((resolve, reject) => {
    request.on("response", (res) => {
      res.resume()
      resolve({ status: res.statusCode!, key: res.headers["graviton-key"] as string | undefined })
    })
    request.on("error", reject)
  })
  request.write(bytes.subarray(0, sent))
  return {
    response,
    finish: () => request.end(bytes.subarray(sent)),
    drop: () => request.destroy()
  }
}

describe("two gateway processes over one PostgreSQL store", () => {
  it.skipIf(pgSkip !== undefined)(`two PATCHes of one upload at once, one per process: one proceeds, the other gets 423${suffix}`, async () => {
    const [a, b] = [await serve(), await serve()]
    const size = 3 * 1024 * 1024
    const created = await fetch(`${a.url}/files/`, { method: "POST", headers: { ...tusHeaders, "upload-length": String(size) } })
    expect(created.status).toBe(201)
    const location = created.headers.get("location")!
    // Different bytes through each: whatever is stored must be exactly one of them, whole.
    const bytesA = randomBytes(size)
    const bytesB = randomBytes(size)
    const one = held(`${a.url}${location}`, bytesA, 1024 * 1024)
    const two = held(`${b.url}${location}`, bytesB, 1024 * 1024)
    // Both hold their request open: the one refused answers at once, the one holding the lease waits for its body.
    const tagged = (p: typeof one.response, which: "a" | "b") => p.then((r) => ({ ...r, which }))
    const first = await Promise.race([
      tagged(one.response, "a"),
      tagged(two.response, "b"),
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error("neither PATCH was refused while the other held the upload")), 30_000)
      )
    ])
    expect(first.status).toBe(423)
    const [winner, loser, bytes] = first.which === "a" ? [two, one, bytesB] : [one, two, bytesA]
    loser.drop()
    winner.finish()
    const done = await winner.response
    expect(done.status).toBe(204)
    expect(done.key).toBe(keyOf(bytes))
    // Both processes see the completed upload and serve the winner's bytes.
    for (const base of [a.url, b.url]) {
      const head = await fetch(`${base}${location}`, { method: "HEAD", headers: tusHeaders })
      expect(head.status).toBe(200)
      expect(head.headers.get("upload-offset")).toBe(String(size))
      expect(head.headers.get("graviton-key")).toBe(keyOf(bytes))
      expect((await fetchBlob(base, keyOf(bytes))).equals(bytes)).toBe(true)
    }
    const other = await fetch(`${a.url}/blobs/${keyOf(bytes === bytesA ? bytesB : bytesA)}`, { headers: reader })
    expect(other.status).toBe(404)
  }, 120_000)

  it.skipIf(pgSkip !== undefined)(`a tus upload begun on one process, SIGKILLed mid-PATCH, resumed through the other${suffix}`, async () => {
    const [a, b] = [await serve(), await serve()]
    const size = 24 * 1024 * 1024
    const chunkSize = 8 * 1024 * 1024
    const content = randomBytes(size)
    // Through A, until A is killed in the middle of the second chunk.
    let killed: Promise<void> | undefined
    const uploadUrl = await new Promise<string>((resolve, reject) => {
      const u: tus.Upload = new tus.Upload(content, {
        endpoint: `${a.url}/files/`,
        headers: { authorization: `Bearer ${WRITER}` },
        chunkSize,
        retryDelays: [],
        onProgress: (sent) => {
          if (killed === undefined && sent >= chunkSize + chunkSize / 2) killed = kill(a)
        },
        onError: () => (killed === undefined ? reject(new Error("the upload failed before A was killed")) : resolve(u.url!)),
        onSuccess: () => reject(new Error("the upload finished before A was killed"))
      })
      u.start()
    })
    await killed
    // Through B, from where the store says: the client asks B (HEAD), then PATCHes, retrying while A's lease lasts.
    const statuses: Array<number> = []
    let resumedAt: number | undefined
    let key: string | null = null
    await new Promise<void>((resolve, reject) => {
      const u = new tus.Upload(content, {
        endpoint: `${b.url}/files/`,
        uploadUrl: `${b.url}${new URL(uploadUrl).pathname}`,
        headers: { authorization: `Bearer ${WRITER}` },
        chunkSize,
        retryDelays: [200, 500, 1000, 1000, 1000, 2000, 2000, 3000],
        onBeforeRequest: (req) => {
          if (req.getMethod() === "PATCH" && resumedAt === undefined) resumedAt = Number(req.getHeader("Upload-Offset"))
        },
        onAfterResponse: (req, res) => {
          if (req.getMethod() === "PATCH") statuses.push(res.getStatus())
          const k = res.getHeader("graviton-key")
          if (k) key = k
        },
        onError: reject,
        onSuccess: () => resolve()
      })
      u.start()
    })
    // Resumed past the chunk A stored, not from scratch.
    expect(resumedAt).toBeGreaterThanOrEqual(chunkSize)
    expect(key).toBe(keyOf(content))
    expect((await fetchBlob(b.url, keyOf(content))).equals(content)).toBe(true)
    // 423s while A's lease lasted (how many depends on the timing), then the writes went through.
    expect(statuses.filter((s) => s !== 423 && s !== 204)).toEqual([])
    console.log(`resumed at ${resumedAt}; PATCH statuses through B: ${statuses.join(" ")}`)
  }, 180_000)
})
