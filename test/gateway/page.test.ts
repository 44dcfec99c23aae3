/**
 * The page at `/`. Served as HTML with its upload controls; in a real
 * headless Chromium (Debian's `chromium`, driven by puppeteer-core with its
 * executablePath) a generated file is uploaded through the page, the key it
 * shows is fetched and compared byte for byte, and a screenshot is kept as
 * an artifact. Skipped, with the reason in the title, where Chromium or
 * puppeteer-core is not installed.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { createRequire } from "node:module"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { type InProcess, reader, startInProcess, tempHome, WRITER } from "./servers.js"

const chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].find((p) => fs.existsSync(p))
const hasPuppeteer = (() => {
  try {
    createRequire(import.meta.url).resolve("puppeteer-core")
    return true
  } catch {
    return false
  }
})()
const skipReason = chromium === undefined
  ? "no Chromium installed (apt-get install chromium)"
  : !hasPuppeteer
  ? "puppeteer-core is not installed"
  : undefined

let server: InProcess
let home: string
beforeAll(async () => {
  home = tempHome("page")
  server = await startInProcess(home)
})
afterAll(async () => {
  await server?.close()
  fs.rmSync(home, { recursive: true, force: true })
})

describe("the page at /", () => {
  it("is HTML with the drop zone, the progress and the list, and talks tus to files/", async () => {
    const res = await fetch(`${server.url}/`)
    expect(res.status).toBe(200)
    expect(res.headers.get("content-type")).toContain("text/html")
    const text = await res.text()
    for (const id of ["drop", "progress", "pause", "resume", "key", "blobs", "token"]) expect(text).toContain(`id="${id}"`)
    expect(text).toContain(`fetch("files/"`)
    expect(text).toContain("Tus-Resumable")
  })

  const browserTest = skipReason === undefined ? it : it.skip
  browserTest(`uploads a file through the page in headless Chromium${skipReason ? ` (skipped: ${skipReason})` : ""}`, async () => {
    const puppeteer = (await import("puppeteer-core" as string)) as {
      launch: (o: object) => Promise<{
        newPage: () => Promise<any>
        close: () => Promise<void>
      }>
    }
    const bytes = randomBytes(3 * 1024 * 1024 + 17)
    const file = path.join(home, "upload.bin")
    fs.writeFileSync(file, bytes)
    const browser = await puppeteer.launch({ executablePath: chromium, headless: true, args: ["--no-sandbox"] })
    try {
      const page = await browser.newPage()
      await page.goto(`${server.url}/`)
      await page.type("#token", WRITER)
      await page.$eval("#token", (e: HTMLInputElement) => e.dispatchEvent(new Event("change")))
      const input = await page.$("#file")
      await input.uploadFile(file)
      await page.waitForSelector("#result:not([hidden])", { timeout: 60_000 })
      const key = await page.$eval("#key", (e: HTMLElement) => e.textContent)
      expect(key).toBe(`sha256:${createHash("sha256").update(bytes).digest("hex")}:${bytes.length}`)
      await page.screenshot({ path: path.join(os.tmpdir(), "graviton-gateway-page.png") })
      const res = await fetch(`${server.url}/blobs/${key}`, { headers: reader })
      expect(Buffer.from(await res.arrayBuffer()).equals(bytes)).toBe(true)
    } finally {
      await browser.close()
    }
  }, 120_000)
})
