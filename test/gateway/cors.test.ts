/**
 * CORS: off by default (no CORS header, a preflight gets no permission);
 * with allowed origins, a preflight from one of them is answered with the
 * methods and headers tus clients send, its requests carry
 * Access-Control-Allow-Origin and expose Location, Upload-Offset,
 * Graviton-Key ...; another origin gets 403 on its preflight and no
 * permission. Then the real thing: tus-js-client's browser build, in a page
 * of one gateway (another origin) in headless Chromium, uploads to a
 * second gateway that allows that origin, and fails against one that does
 * not.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import * as Either from "effect/Either"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as http from "node:http"
import * as path from "node:path"
import * as GatewayConfig from "../../src/gateway/GatewayConfig.js"
import { bodyOf, type InProcess, reader, repo, startInProcess, tempHome, WRITER, writer } from "./servers.js"

const ORIGIN = "https://app.example"
const OTHER = "https://elsewhere.example"

const chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].find((p) => fs.existsSync(p))
const skipReason = chromium === undefined ? "no Chromium installed (apt-get install chromium; .ci/run does)" : undefined

/** A request with any headers (Node's fetch would refuse none, but http says exactly what is sent). */
const request = (
  url: string,
  method: string,
  headers: Record<string, string>,
  body?: Uint8Array
): Promise<{ status: number; headers: http.IncomingHttpHeaders }> =>
  new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers }, (res) => {
      res.resume()
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers }))
    })
    req.on("error", reject)
    req.end(body)
  })

const list = (value: string | undefined) => (value ?? "").split(",").map((s) => s.trim().toLowerCase()).filter((s) => s !== "")

const homes: Array<string> = []
const servers: Array<InProcess> = []
const start = async (options: GatewayConfig.Options = {}) => {
  const home = tempHome("cors")
  homes.push(home)
  const server = await startInProcess(home, options)
  servers.push(server)
  return server
}
afterAll(async () => {
  for (const s of servers) await s.close()
  for (const h of homes) fs.rmSync(h, { recursive: true, force: true })
})

describe("origins in the configuration", () => {
  it("takes exact origins and *, refuses a path, a trailing slash or another scheme", () => {
    expect(GatewayConfig.parseOrigins(`${ORIGIN}, http://127.0.0.1:8080 *`)).toEqual(
      Either.right([ORIGIN, "http://127.0.0.1:8080", "*"])
    )
    for (const bad of [`${ORIGIN}/`, `${ORIGIN}/app`, "ftp://app.example", "app.example", "null"]) {
      expect(Either.isLeft(GatewayConfig.parseOrigins(bad)), bad).toBe(true)
    }
  })
})

describe("CORS off (the default)", () => {
  let server: InProcess
  beforeAll(async () => {
    server = await start()
  })

  it("answers no CORS header, to a preflight or a request", async () => {
    const preflight = await request(`${server.url}/files/`, "OPTIONS", {
      origin: ORIGIN,
      "access-control-request-method": "POST"
    })
    expect(preflight.headers["access-control-allow-origin"]).toBeUndefined()
    expect(preflight.headers["access-control-allow-methods"]).toBeUndefined()
    const get = await request(`${server.url}/blobs?limit=1`, "GET", { ...reader, origin: ORIGIN })
    expect(get.status).toBe(200)
    expect(get.headers["access-control-allow-origin"]).toBeUndefined()
  })
})

describe("CORS for one origin", () => {
  let server: InProcess
  beforeAll(async () => {
    server = await start({ corsOrigins: [ORIGIN] })
  })

  it("a preflight of a tus creation from it → 204 with the methods and every header tus-js-client sends", async () => {
    const asked = ["authorization", "tus-resumable", "upload-length", "upload-metadata", "upload-defer-length", "content-type"]
    const res = await request(`${server.url}/files/`, "OPTIONS", {
      origin: ORIGIN,
      "access-control-request-method": "POST",
      "access-control-request-headers": asked.join(",")
    })
    expect(res.status).toBe(204)
    expect(res.headers["access-control-allow-origin"]).toBe(ORIGIN)
    expect(list(res.headers["vary"])).toContain("origin")
    expect(res.headers["access-control-allow-credentials"]).toBeUndefined()
    const methods = list(res.headers["access-control-allow-methods"])
    for (const m of ["get", "head", "post", "put", "patch", "delete"]) expect(methods).toContain(m)
    const headers = list(res.headers["access-control-allow-headers"])
    for (const h of [...asked, "upload-offset", "upload-checksum", "range", "if-none-match", "repr-digest"]) {
      expect(headers).toContain(h)
    }
    expect(Number(res.headers["access-control-max-age"])).toBeGreaterThan(0)
  })

  it("a preflight of a PATCH or a DELETE needs no token (browsers send none) and gets the same answer", async () => {
    for (const [url, method] of [[`${server.url}/files/0123456789abcdef0123456789abcdef`, "PATCH"], [`${server.url}/blobs/x`, "DELETE"]]) {
      const res = await request(url!, "OPTIONS", { origin: ORIGIN, "access-control-request-method": method! })
      expect(res.status).toBe(204)
      expect(res.headers["access-control-allow-origin"]).toBe(ORIGIN)
    }
  })

  it("a preflight from another origin → 403 without permission", async () => {
    const res = await request(`${server.url}/files/`, "OPTIONS", { origin: OTHER, "access-control-request-method": "POST" })
    expect(res.status).toBe(403)
    expect(res.headers["access-control-allow-origin"]).toBeUndefined()
    expect(res.headers["access-control-allow-methods"]).toBeUndefined()
  })

  it("tus's own OPTIONS (no preflight) still advertises the protocol, with the permission", async () => {
    const res = await request(`${server.url}/files/`, "OPTIONS", { origin: ORIGIN })
    expect(res.status).toBe(204)
    expect(res.headers["tus-version"]).toBe("1.0.0")
    expect(res.headers["access-control-allow-origin"]).toBe(ORIGIN)
  })

  it("a tus upload from it: every response allows the origin and exposes what the client reads", async () => {
    const bytes = randomBytes(1000)
    const tus = { ...writer, "tus-resumable": "1.0.0", origin: ORIGIN }
    const created = await request(`${server.url}/files/`, "POST", { ...tus, "upload-length": String(bytes.length) })
    expect(created.status).toBe(201)
    expect(created.headers["access-control-allow-origin"]).toBe(ORIGIN)
    const exposed = list(created.headers["access-control-expose-headers"])
    for (const h of ["location", "upload-offset", "upload-length", "tus-resumable", "upload-expires", "graviton-key"]) {
      expect(exposed).toContain(h)
    }
    const done = await request(`${server.url}${created.headers["location"]}`, "PATCH", {
      ...tus,
      "content-type": "application/offset+octet-stream",
      "upload-offset": "0"
    }, bytes)
    expect(done.status).toBe(204)
    expect(done.headers["access-control-allow-origin"]).toBe(ORIGIN)
    const key = `sha256:${createHash("sha256").update(bytes).digest("hex")}:${bytes.length}`
    expect(done.headers["graviton-key"]).toBe(key)
    // Refusals carry the permission too, so that the page can read why.
    const refused = await request(`${server.url}/blobs/${key}`, "GET", { origin: ORIGIN })
    expect(refused.status).toBe(401)
    expect(refused.headers["access-control-allow-origin"]).toBe(ORIGIN)
  })

  it("a request from another origin is served (a token decides that) but without permission for its page", async () => {
    const res = await request(`${server.url}/blobs?limit=1`, "GET", { ...reader, origin: OTHER })
    expect(res.status).toBe(200)
    expect(res.headers["access-control-allow-origin"]).toBeUndefined()
    expect(list(res.headers["vary"])).toContain("origin")
  })
})

describe("CORS for any origin", () => {
  it("answers * (and no Vary: the answer is the same for every origin)", async () => {
    const server = await start({ corsOrigins: ["*"] })
    const preflight = await request(`${server.url}/blobs`, "OPTIONS", { origin: OTHER, "access-control-request-method": "PUT" })
    expect(preflight.status).toBe(204)
    expect(preflight.headers["access-control-allow-origin"]).toBe("*")
    const put = await fetch(`${server.url}/blobs`, { method: "PUT", headers: { ...writer, origin: OTHER }, body: bodyOf(randomBytes(10)) })
    expect(put.status).toBe(201)
    expect(put.headers.get("access-control-allow-origin")).toBe("*")
  })
})

describe("tus-js-client in a browser on another origin", () => {
  it.skipIf(skipReason !== undefined)(
    `uploads to a gateway that allows the page's origin, and is refused by one that does not${skipReason ? ` (skipped: ${skipReason})` : ""}`,
    async () => {
      const { chromium: launcher } = await import("playwright-core")
      // The page's origin is one gateway; the uploads go to two others.
      const site = await start()
      const allowing = await start({ corsOrigins: [site.url] })
      const closed = await start()
      const bytes = randomBytes(2 * 1024 * 1024 + 333)
      const key = `sha256:${createHash("sha256").update(bytes).digest("hex")}:${bytes.length}`
      const browser = await launcher.launch({
        executablePath: chromium!,
        headless: true,
        args: ["--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
      })
      try {
        const page = await browser.newPage()
        await page.goto(`${site.url}/`)
        await page.addScriptTag({ path: path.join(repo, "node_modules", "tus-js-client", "dist", "tus.min.js") })
        const upload = (endpoint: string) =>
          page.evaluate(({ base64, endpoint, token }) =>
            new Promise<{ ok: boolean; key: string | null; offsets: Array<string | null>; error?: string }>((resolve) => {
              const raw = atob(base64)
              const data = new Uint8Array(raw.length)
              for (let i = 0; i < raw.length; i++) data[i] = raw.charCodeAt(i)
              let key: string | null = null
              const offsets: Array<string | null> = []
              const tus = (window as any).tus
              const u = new tus.Upload(new Blob([data]), {
                endpoint,
                headers: { Authorization: `Bearer ${token}` },
                chunkSize: 1024 * 1024,
                retryDelays: [],
                storeFingerprintForResuming: false,
                  onAfterResponse: (req: any, res: any) => {
                  // Only readable when the gateway exposes them.
                  if (req.getMethod() === "PATCH") offsets.push(res.getHeader("Upload-Offset") ?? null)
                  key = res.getHeader("Graviton-Key") ?? key
                },
                onError: (e: Error) => resolve({ ok: false, key, offsets, error: String(e) }),
                onSuccess: () => resolve({ ok: true, key, offsets })
              })
              u.start()
            }), { base64: bytes.toString("base64"), endpoint, token: WRITER })

        const good = await upload(`${allowing.url}/files/`)
        expect(good.error).toBeUndefined()
        expect(good.ok).toBe(true)
        expect(good.key).toBe(key)
        expect(good.offsets).toEqual([String(1024 * 1024), String(2 * 1024 * 1024), String(bytes.length)])
        const res = await fetch(`${allowing.url}/blobs/${key}`, { headers: reader })
        expect(Buffer.from(await res.arrayBuffer()).equals(bytes)).toBe(true)

        const refused = await upload(`${closed.url}/files/`)
        expect(refused.ok).toBe(false)
        expect(refused.error).toMatch(/failed to create upload/i)
        expect((await fetch(`${closed.url}/blobs/${key}`, { headers: reader })).status).toBe(404)
      } finally {
        await browser.close()
      }
    },
    180_000
  )
})
