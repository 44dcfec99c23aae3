/**
 * Two `graviton serve` processes over one PostgreSQL store (`pg`, and
 * `pg-s3` with the bytes in S3 when the harness has moto) are one
 * service: two PATCHes of one upload at once, one through each process —
 * one proceeds, the other gets 423, and the blob is exactly the bytes of
 * the one that proceeded; a tus upload begun on one process, that process
 * SIGKILLed mid-PATCH, resumed with tus-js-client through the other: the
 * killed writer's lease (5 seconds here) runs out, the blob is byte-exact.
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
import * as S3Harness from "../harness/s3.js"
import { bodyOf, type Child, kill, reader, startCli, tempHome, writer, WRITER } from "./servers.js"

usePostgres()
afterAll(S3Harness.stopAll, 30_000)
const pgSkip = skipReason()
const s3Candidate = S3Harness.available().find((c) => c.name === "env" || c.name === "moto")

const tusHeaders = { ...writer, "tus-resumable": "1.0.0" }
const keyOf = (bytes: Uint8Array) => `sha256:${createHash("sha256").update(bytes).digest("hex")}:${bytes.length}`

const children: Array<Child> = []
const databases: Array<string> = []
const homes: Array<string> = []

afterAll(async () => {
  for (const c of children) await kill(c)
  for (const name of databases) await dropDatabase(name).catch(() => undefined)
  for (const h of homes) fs.rmSync(h, { recursive: true, force: true })
})

/** A fresh, migrated database (and bucket for pg-s3); `serve` starts a gateway process over it. */
const prepareStore = async (store: "pg" | "pg-s3") => {
  const db = await createDatabase(`gateway_${store}`)
  databases.push(db.name)
  await Effect.runPromise(PgStore.migrate({ url: Redacted.make(db.url) }))
  const home = tempHome(store)
  homes.push(home)
  let env: Record<string, string> = { GRAVITON_STORE: store, GRAVITON_PG_URL: db.url, GRAVITON_GATEWAY_UPLOAD_LEASE: "5 seconds" }
  if (store === "pg-s3") {
    const running = await S3Harness.server(s3Candidate!)
    const place = await S3Harness.prepare(running, S3Harness.freshBucket("gateway-pg"))
    env = { ...S3Harness.cliEnv(running, place), ...env }
  }
  return {
    serve: async () => {
      const child = await startCli(home, "127.0.0.1:0", env)
      children.push(child)
      return child
    }
  }
}

const fetchBlob = async (base: string, key: string) => {
  const res = await fetch(`${base}/blobs/${key}`, { headers: reader })
  expect(res.status).toBe(200)
  return Buffer.from(await res.arrayBuffer())
}

/** A PATCH that sends `sent` bytes of `bytes` and waits; `finish` sends the rest, `drop` gives up. */
const held = (url: string, bytes: Buffer, sent: number, offset = 0) => {
  const request = http.request(url, {
    method: "PATCH",
    headers: {
      ...tusHeaders,
      "content-type": "application/offset+octet-stream",
      "upload-offset": String(offset),
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
  // A killed server or a dropped request: the caller looks at the statuses, not at the socket.
  response.catch(() => undefined)
  request.write(bytes.subarray(0, sent))
  return {
    response,
    finish: () => request.end(bytes.subarray(sent)),
    drop: () => request.destroy()
  }
}

const skipOf = (store: string) =>
  pgSkip ?? (store === "pg-s3" && s3Candidate === undefined ? "no S3 server that lists multipart parts (moto or GRAVITON_TEST_S3_ENDPOINT)" : undefined)

describe.each(["pg", "pg-s3"] as const)("two gateway processes over one %s store", (store) => {
  const skip = skipOf(store)
  const suffix = skip === undefined ? "" : ` (skipped: ${skip})`
  let serve: () => Promise<Child>
  beforeAll(async () => {
    if (skip === undefined) serve = (await prepareStore(store)).serve
  }, 60_000)

  it.skipIf(skip !== undefined)(`two PATCHes of one upload at once, one per process: one proceeds, the other gets 423${suffix}`, async () => {
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

  it.skipIf(skip !== undefined)(`a tus upload begun on one process, SIGKILLed mid-PATCH, resumed through the other${suffix}`, async () => {
    const [a, b] = [await serve(), await serve()]
    const size = 24 * 1024 * 1024
    const chunkSize = 8 * 1024 * 1024
    const content = randomBytes(size)
    // Begun on A: the first chunk lands, the second is held open mid-body when A is killed.
    const created = await fetch(`${a.url}/files/`, { method: "POST", headers: { ...tusHeaders, "upload-length": String(size) } })
    expect(created.status).toBe(201)
    const location = created.headers.get("location")!
    const first = await fetch(`${a.url}${location}`, {
      method: "PATCH",
      headers: { ...tusHeaders, "content-type": "application/offset+octet-stream", "upload-offset": "0" },
      body: bodyOf(content.subarray(0, chunkSize))
    })
    expect(first.status).toBe(204)
    held(`${a.url}${location}`, content.subarray(chunkSize, 2 * chunkSize), chunkSize / 2, chunkSize)
    // A probe through B (at another offset: 409 while nobody holds the upload) until A holds it.
    const probe = () =>
      fetch(`${b.url}${location}`, {
        method: "PATCH",
        headers: { ...tusHeaders, "content-type": "application/offset+octet-stream", "upload-offset": "1" },
        body: bodyOf(content.subarray(1, 11))
      }).then((r) => r.status)
    for (let i = 0; (await probe()) !== 423; i++) {
      if (i > 500) throw new Error("A never held the upload")
      await new Promise((r) => setTimeout(r, 20))
    }
    await kill(a)
    // The crashed holder's lease is still there (5 seconds here): B refuses until it runs out.
    expect(await probe()).toBe(423)
    // Through B, from where the store says: the client asks B (HEAD), then PATCHes, retrying while A's lease lasts.
    const statuses: Array<number> = []
    let resumedAt: number | undefined
    let key: string | null = null
    await new Promise<void>((resolve, reject) => {
      const u = new tus.Upload(content, {
        endpoint: `${b.url}/files/`,
        uploadUrl: `${b.url}${location}`,
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
    expect(resumedAt).toBeLessThan(size)
    expect(key).toBe(keyOf(content))
    expect((await fetchBlob(b.url, keyOf(content))).equals(content)).toBe(true)
    // 423s while A's lease lasted (how many depends on the timing), then the writes went through.
    expect(statuses.filter((s) => s !== 423 && s !== 204)).toEqual([])
    console.log(`resumed at ${resumedAt}; PATCH statuses through B: ${statuses.join(" ")}`)
  }, 180_000)
})
