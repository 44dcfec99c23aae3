/**
 * The concurrency limits: with one upload allowed at once, a second one
 * gets 503 with Retry-After while the first is still streaming; a second
 * PATCH of an upload being patched gets 423. Both first requests are held
 * open by a client that sends part of its body and waits.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as http from "node:http"
import { bodyOf, type InProcess, startInProcess, tempHome, writer } from "./servers.js"

let server: InProcess
let home: string
beforeAll(async () => {
  home = tempHome("limits")
  server = await startInProcess(home, { maxConcurrentUploads: 1 })
})
afterAll(async () => {
  await server?.close()
  fs.rmSync(home, { recursive: true, force: true })
})

const tus = { ...writer, "tus-resumable": "1.0.0" }

/** Starts a request that sends `sent` of its `length` bytes and then waits; `finish` sends the rest. */
const held = (path: string, method: string, headers: Record<string, string>, bytes: Buffer, sent: number) => {
  const request = http.request(new URL(path, server.url), { method, headers: { ...headers, "content-length": String(bytes.length) } })
  const response = new Promise<number>((resolve, reject) => {
    request.on("response", (res) => {
      res.resume()
      resolve(res.statusCode!)
    })
    request.on("error", reject)
  })
  request.write(bytes.subarray(0, sent))
  return { response, finish: () => request.end(bytes.subarray(sent)) }
}

/** Waits until `check` holds (the server has started on the held request). */
const until = async (check: () => Promise<boolean>) => {
  while (!(await check())) await new Promise((r) => setTimeout(r, 20))
}

describe("limits", () => {
  it("a second upload while the only permit is taken → 503 with Retry-After; then it goes through", async () => {
    const first = randomBytes(2 * 1024 * 1024)
    const one = held("/blobs", "PUT", writer, first, 1024 * 1024)
    // The first holds the permit once the server reads its body: a probe meanwhile is refused.
    let refused: Response | undefined
    await until(async () => {
      const res = await fetch(`${server.url}/blobs`, { method: "PUT", headers: writer, body: bodyOf(randomBytes(10)) })
      if (res.status === 503) refused = res
      return res.status === 503
    })
    expect(refused!.headers.get("retry-after")).toBe("1")
    one.finish()
    expect(await one.response).toBe(201)
    const after = await fetch(`${server.url}/blobs`, { method: "PUT", headers: writer, body: bodyOf(randomBytes(10)) })
    expect(after.status).toBe(201)
  })

  it("a second PATCH of an upload being patched → 423", async () => {
    const content = randomBytes(3 * 1024 * 1024)
    const created = await fetch(`${server.url}/files/`, { method: "POST", headers: { ...tus, "upload-length": String(content.length) } })
    const location = created.headers.get("location")!
    const one = held(location, "PATCH", { ...tus, "content-type": "application/offset+octet-stream", "upload-offset": "0" }, content, 1024 * 1024)
    let second = 0
    // Probes at another offset: refused with 409 (nothing written) until the held PATCH has the upload.
    await until(async () => {
      const res = await fetch(`${server.url}${location}`, {
        method: "PATCH",
        body: bodyOf(content.subarray(1, 11)),
        headers: { ...tus, "content-type": "application/offset+octet-stream", "upload-offset": "1" }
      })
      second = res.status
      return res.status === 423
    })
    expect(second).toBe(423)
    one.finish()
    expect(await one.response).toBe(204)
  })
})
