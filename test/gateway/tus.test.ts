/**
 * The tus 1.0.0 protocol at /files/, request by request with Node's fetch:
 * first the cases @tus/server's users keep hitting (zero-byte uploads,
 * deferred length with one short part, the offset before any byte
 * landed), then checksum, termination, expiration and the protocol's
 * refusals.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import { bodyOf, type InProcess, reader, startInProcess, tempHome, writer } from "./servers.js"

let server: InProcess
let shortLived: InProcess
const homes: Array<string> = []

beforeAll(async () => {
  const home = tempHome("tus")
  const home2 = tempHome("tus-ttl")
  homes.push(home, home2)
  server = await startInProcess(home)
  shortLived = await startInProcess(home2, { uploadTtl: "1 second" })
})

afterAll(async () => {
  await server?.close()
  await shortLived?.close()
  for (const h of homes) fs.rmSync(h, { recursive: true, force: true })
})

const tus = { ...writer, "tus-resumable": "1.0.0" }
const keyOf = (bytes: Uint8Array) => `sha256:${createHash("sha256").update(bytes).digest("hex")}:${bytes.length}`

const create = async (headers: Record<string, string>, base = server.url) => {
  const res = await fetch(`${base}/files/`, { method: "POST", headers: { ...tus, ...headers } })
  return res
}

const patch = (location: string, offset: number, body: Uint8Array, headers: Record<string, string> = {}, base = server.url) =>
  fetch(`${base}${location}`, {
    method: "PATCH",
    body: bodyOf(body),
    headers: { ...tus, "content-type": "application/offset+octet-stream", "upload-offset": String(offset), ...headers }
  })

const head = (location: string, base = server.url) => fetch(`${base}${location}`, { method: "HEAD", headers: tus })

const blob = async (key: string) => {
  const res = await fetch(`${server.url}/blobs/${key}`, { headers: reader })
  return res.status === 200 ? Buffer.from(await res.arrayBuffer()) : undefined
}

describe("tus: the known trouble spots first", () => {
  it("a zero-byte upload completes at creation and names the empty blob", async () => {
    const res = await create({ "upload-length": "0" })
    expect(res.status).toBe(201)
    const key = keyOf(new Uint8Array(0))
    expect(res.headers.get("graviton-key")).toBe(key)
    expect(res.headers.get("upload-offset")).toBe("0")
    const state = await head(res.headers.get("location")!)
    expect(state.status).toBe(200)
    expect(state.headers.get("upload-offset")).toBe("0")
    expect(state.headers.get("upload-length")).toBe("0")
    expect(state.headers.get("graviton-key")).toBe(key)
    expect((await blob(key))?.length).toBe(0)
  })

  it("a zero-byte upload with a deferred length", async () => {
    const res = await create({ "upload-defer-length": "1" })
    expect(res.status).toBe(201)
    const location = res.headers.get("location")!
    const done = await patch(location, 0, new Uint8Array(0), { "upload-length": "0" })
    expect(done.status).toBe(204)
    expect(done.headers.get("upload-offset")).toBe("0")
    expect(done.headers.get("graviton-key")).toBe(keyOf(new Uint8Array(0)))
  })

  it("a deferred length given with a single short part", async () => {
    const bytes = randomBytes(1234)
    const res = await create({ "upload-defer-length": "1" })
    const location = res.headers.get("location")!
    const before = await head(location)
    expect(before.headers.get("upload-defer-length")).toBe("1")
    expect(before.headers.get("upload-length")).toBeNull()
    const done = await patch(location, 0, bytes, { "upload-length": String(bytes.length) })
    expect(done.status).toBe(204)
    expect(done.headers.get("upload-offset")).toBe(String(bytes.length))
    expect(done.headers.get("graviton-key")).toBe(keyOf(bytes))
    expect((await blob(keyOf(bytes)))?.equals(bytes)).toBe(true)
  })

  it("the offset is 0 before any byte landed, and follows the parts", async () => {
    const bytes = randomBytes(3 * 1024 * 1024)
    const res = await create({ "upload-length": String(bytes.length), "upload-metadata": "filename ZmlsZS5iaW4=,empty" })
    const location = res.headers.get("location")!
    const first = await head(location)
    expect(first.status).toBe(200)
    expect(first.headers.get("upload-offset")).toBe("0")
    expect(first.headers.get("upload-length")).toBe(String(bytes.length))
    expect(first.headers.get("upload-metadata")).toBe("filename ZmlsZS5iaW4=,empty")
    expect(first.headers.get("cache-control")).toBe("no-store")
    expect(first.headers.get("upload-expires")).not.toBeNull()
    const cut = 1024 * 1024 + 7
    const one = await patch(location, 0, bytes.subarray(0, cut))
    expect(one.status).toBe(204)
    expect(one.headers.get("upload-offset")).toBe(String(cut))
    expect(one.headers.get("graviton-key")).toBeNull()
    expect((await head(location)).headers.get("upload-offset")).toBe(String(cut))
    const two = await patch(location, cut, bytes.subarray(cut))
    expect(two.status).toBe(204)
    expect(two.headers.get("graviton-key")).toBe(keyOf(bytes))
    expect((await blob(keyOf(bytes)))?.equals(bytes)).toBe(true)
  })

  it("creation-with-upload: the body of the POST is the first part", async () => {
    const bytes = randomBytes(50_000)
    const res = await fetch(`${server.url}/files/`, {
      method: "POST",
      body: bytes.subarray(0, 20_000),
      headers: { ...tus, "upload-length": String(bytes.length), "content-type": "application/offset+octet-stream" }
    })
    expect(res.status).toBe(201)
    expect(res.headers.get("upload-offset")).toBe("20000")
    const done = await patch(res.headers.get("location")!, 20_000, bytes.subarray(20_000))
    expect(done.headers.get("graviton-key")).toBe(keyOf(bytes))
  })
})

describe("tus: checksum, termination, expiration", () => {
  const sha = (b: Uint8Array) => `sha256 ${createHash("sha256").update(b).digest("base64")}`

  it("a chunk that does not match its checksum → 460 and it is not kept", async () => {
    const bytes = randomBytes(100_000)
    const location = (await create({ "upload-length": String(bytes.length) })).headers.get("location")!
    const bad = await patch(location, 0, bytes.subarray(0, 60_000), { "upload-checksum": sha(randomBytes(10)) })
    expect(bad.status).toBe(460)
    expect((await head(location)).headers.get("upload-offset")).toBe("0")
    const good = await patch(location, 0, bytes.subarray(0, 60_000), { "upload-checksum": sha(bytes.subarray(0, 60_000)) })
    expect(good.status).toBe(204)
    expect(good.headers.get("upload-offset")).toBe("60000")
    const unsupported = await patch(location, 60_000, bytes.subarray(60_000), { "upload-checksum": "md5 AAAA" })
    expect(unsupported.status).toBe(400)
    const rest = await patch(location, 60_000, bytes.subarray(60_000), { "upload-checksum": sha(bytes.subarray(60_000)) })
    expect(rest.headers.get("graviton-key")).toBe(keyOf(bytes))
  })

  it("termination removes the upload", async () => {
    const bytes = randomBytes(10_000)
    const location = (await create({ "upload-length": String(bytes.length) })).headers.get("location")!
    expect((await patch(location, 0, bytes.subarray(0, 5000))).status).toBe(204)
    const del = await fetch(`${server.url}${location}`, { method: "DELETE", headers: tus })
    expect(del.status).toBe(204)
    expect((await head(location)).status).toBe(404)
    expect((await patch(location, 5000, bytes.subarray(5000))).status).toBe(404)
  })

  it("an expired upload is refused", async () => {
    const res = await create({ "upload-length": "100" }, shortLived.url)
    expect(res.status).toBe(201)
    const expires = Date.parse(res.headers.get("upload-expires")!)
    expect(Number.isNaN(expires)).toBe(false)
    const location = res.headers.get("location")!
    await new Promise((r) => setTimeout(r, 1500))
    expect((await patch(location, 0, randomBytes(100), {}, shortLived.url)).status).toBe(410)
    expect((await head(location, shortLived.url)).status).toBe(410)
  })
})

describe("tus: protocol refusals", () => {
  it("OPTIONS advertises version, extensions, checksum algorithm and largest size", async () => {
    const res = await fetch(`${server.url}/files/`, { method: "OPTIONS" })
    expect(res.status).toBe(204)
    expect(res.headers.get("tus-version")).toBe("1.0.0")
    expect(res.headers.get("tus-extension")!.split(",").sort()).toEqual(
      ["checksum", "creation", "creation-defer-length", "creation-with-upload", "expiration", "termination"]
    )
    expect(res.headers.get("tus-checksum-algorithm")).toBe("sha256")
    expect(Number(res.headers.get("tus-max-size"))).toBeGreaterThan(0)
  })

  it("no Tus-Resumable → 412; no token → 401; a reader's token → 403", async () => {
    const res = await fetch(`${server.url}/files/`, { method: "POST", headers: { ...writer, "upload-length": "1" } })
    expect(res.status).toBe(412)
    expect(res.headers.get("tus-version")).toBe("1.0.0")
    expect((await fetch(`${server.url}/files/`, { method: "POST", headers: { "tus-resumable": "1.0.0", "upload-length": "1" } })).status).toBe(401)
    expect((await fetch(`${server.url}/files/`, { method: "POST", headers: { ...reader, "tus-resumable": "1.0.0", "upload-length": "1" } })).status).toBe(403)
  })

  it("a PATCH at the wrong offset → 409; a wrong content type → 415; a body past the length → 413", async () => {
    const location = (await create({ "upload-length": "10" })).headers.get("location")!
    expect((await patch(location, 5, randomBytes(5))).status).toBe(409)
    expect((await patch(location, 0, randomBytes(5), { "content-type": "application/octet-stream" })).status).toBe(415)
    expect((await patch(location, 0, randomBytes(11))).status).toBe(413)
    expect((await head(location)).headers.get("upload-offset")).toBe("0")
  })

  it("an unknown upload → 404", async () => {
    expect((await head("/files/0123456789abcdef0123456789abcdef")).status).toBe(404)
    expect((await head("/files/not-an-id")).status).toBe(404)
  })
})
