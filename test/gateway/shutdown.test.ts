/**
 * A clean shutdown of `graviton serve`: SIGTERM while a tus PATCH is stuck
 * midway. The server waits out its grace, cuts the transfer and exits; the
 * segments that landed stay, so a new process over the same home resumes
 * the upload from there and completes it byte-exact.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as http from "node:http"
import { bodyOf, type Child, kill, startCli, tempHome, writer } from "./servers.js"

const MiB = 1024 * 1024
const homes: Array<string> = []
const children: Array<Child> = []
afterAll(async () => {
  for (const c of children) await kill(c)
  for (const h of homes) fs.rmSync(h, { recursive: true, force: true })
})

const tus = { ...writer, "tus-resumable": "1.0.0" }

describe("graviton serve: SIGTERM during an upload", () => {
  it("cuts the stuck transfer after the grace, exits, and the upload resumes on a new process", async () => {
    const home = tempHome("shutdown")
    homes.push(home)
    const first = await startCli(home, "127.0.0.1:0", { GRAVITON_GATEWAY_SHUTDOWN_GRACE: "1 second" })
    children.push(first)
    const content = randomBytes(24 * MiB)
    const created = await fetch(`${first.url}/files/`, { method: "POST", headers: { ...tus, "upload-length": String(content.length) } })
    expect(created.status).toBe(201)
    const location = created.headers.get("location")!

    // A PATCH that sends 17 MiB (two 8 MiB segments land) and then stalls without ending.
    const url = new URL(location, first.url)
    const request = http.request(url, {
      method: "PATCH",
      headers: { ...tus, "content-type": "application/offset+octet-stream", "upload-offset": "0", "content-length": String(content.length) }
    })
    const outcome = new Promise<string>((resolve) => {
      request.on("response", (res) => resolve(`status ${res.statusCode}`))
      request.on("error", (e) => resolve(`error ${(e as NodeJS.ErrnoException).code ?? e.message}`))
    })
    request.write(content.subarray(0, 17 * MiB))
    const landed = async () => Number((await fetch(`${first.url}${location}`, { method: "HEAD", headers: tus })).headers.get("upload-offset"))
    while ((await landed()) < 16 * MiB) await new Promise((r) => setTimeout(r, 50))

    const exited = new Promise<number | null>((resolve) => first.process.once("exit", (code) => resolve(code)))
    first.process.kill("SIGTERM")
    // The stuck PATCH is cut (never answered as if complete), and the process ends by itself.
    expect(await outcome).toMatch(/^error /)
    expect(await exited).toBe(130)

    const second = await startCli(home)
    children.push(second)
    const state = await fetch(`${second.url}${location}`, { method: "HEAD", headers: tus })
    expect(state.status).toBe(200)
    const offset = Number(state.headers.get("upload-offset"))
    expect(offset).toBeGreaterThanOrEqual(16 * MiB)
    const rest = await fetch(`${second.url}${location}`, {
      method: "PATCH",
      body: bodyOf(content.subarray(offset)),
      headers: { ...tus, "content-type": "application/offset+octet-stream", "upload-offset": String(offset) }
    })
    expect(rest.status).toBe(204)
    const key = `sha256:${createHash("sha256").update(content).digest("hex")}:${content.length}`
    expect(rest.headers.get("graviton-key")).toBe(key)
    const got = await fetch(`${second.url}/blobs/${key}`, { headers: writer })
    expect(Buffer.from(await got.arrayBuffer()).equals(content)).toBe(true)
  }, 120_000)
})
