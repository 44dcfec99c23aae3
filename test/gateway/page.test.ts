/**
 * The page at `/`. Served as HTML with its upload controls; in a real
 * headless Chromium (Debian's `chromium`, driven by playwright-core with its
 * executablePath) a generated file is uploaded through the page, paused
 * after its first chunk and resumed, the key it shows is fetched and
 * compared byte for byte, and a screenshot is kept in .tmp/ as an artifact.
 * Skipped, with the reason in the title, where Chromium is not installed
 * (`.ci/run` installs it with apt-get when it can).
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { type InProcess, reader, repo, startInProcess, tempHome, WRITER } from "./servers.js"

const chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].find((p) => fs.existsSync(p))
const skipReason = chromium === undefined ? "no Chromium installed (apt-get install chromium; .ci/run does)" : undefined

/** Where the screenshot is kept. */
const SCREENSHOT = path.join(repo, ".tmp", "gateway-page.png")
/** The page's chunk size (page.ts). */
const CHUNK = 8 * 1024 * 1024

/**
 * Flags for Chromium on a machine with a closed network: without the
 * background-networking ones it keeps trying Google's hosts at every start.
 */
const CHROMIUM_ARGS = [
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync"
]

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

  it.skipIf(skipReason !== undefined)(
    `uploads a file through the page in headless Chromium, paused and resumed${skipReason ? ` (skipped: ${skipReason})` : ""}`,
    async () => {
      const { chromium: launcher } = await import("playwright-core")
      // Three chunks and a bit: the pause lands after the first.
      const bytes = randomBytes(3 * CHUNK + 17)
      const key = `sha256:${createHash("sha256").update(bytes).digest("hex")}:${bytes.length}`
      const file = path.join(home, "upload.bin")
      fs.writeFileSync(file, bytes)
      const browser = await launcher.launch({ executablePath: chromium!, headless: true, args: CHROMIUM_ARGS })
      try {
        const page = await browser.newPage()
        // The offsets of the PATCHes the page sends, and the first one held until Pause is pressed.
        const offsets: Array<number> = []
        let releaseFirst: () => void = () => undefined
        const firstHeld = new Promise<void>((resolve) => {
          let held = false
          void page.route("**/files/*", async (route) => {
            const request = route.request()
            if (request.method() === "PATCH") {
              offsets.push(Number(await request.headerValue("upload-offset")))
              if (!held) {
                held = true
                const gate = new Promise<void>((r) => (releaseFirst = r))
                resolve()
                await gate
              }
            }
            await route.continue()
          })
        })
        await page.goto(`${server.url}/`)
        await page.fill("#token", WRITER)
        await page.dispatchEvent("#token", "change")
        await page.setInputFiles("#file", file)
        await firstHeld
        await page.click("#pause")
        releaseFirst()
        // The chunk under way lands, then the page stops and offers Resume.
        await page.waitForFunction(() => document.getElementById("status")!.textContent!.startsWith("Paused at"), undefined, {
          timeout: 60_000
        })
        expect(await page.isEnabled("#resume")).toBe(true)
        expect(await page.isHidden("#result")).toBe(true)
        expect(offsets).toEqual([0])
        // The server agrees: one chunk landed, the upload is not complete.
        const location = await page.evaluate(() => {
          for (let i = 0; i < localStorage.length; i++) {
            const name = localStorage.key(i)!
            if (name.startsWith("graviton-upload:")) return localStorage.getItem(name)
          }
          return null
        })
        expect(location).toMatch(/^\/files\/[0-9a-f]{32}$/)
        const head = await fetch(`${server.url}${location}`, {
          method: "HEAD",
          headers: { authorization: `Bearer ${WRITER}`, "tus-resumable": "1.0.0" }
        })
        expect(head.status).toBe(200)
        expect(head.headers.get("upload-offset")).toBe(String(CHUNK))
        expect(head.headers.get("graviton-key")).toBeNull()

        await page.click("#resume")
        await page.waitForSelector("#result:not([hidden])", { timeout: 60_000 })
        expect(await page.textContent("#key")).toBe(key)
        // Resumed where it stopped: each chunk sent once.
        expect(offsets).toEqual([0, CHUNK, 2 * CHUNK, 3 * CHUNK])
        expect(await page.getAttribute("#download", "href")).toBe(`blobs/${key}`)
        // The list of stored blobs shows it with its size.
        await page.waitForSelector(`#blobs a[href="blobs/${key}"]`, { timeout: 30_000 })
        fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true })
        await page.screenshot({ path: SCREENSHOT, fullPage: true })
        expect(fs.statSync(SCREENSHOT).size).toBeGreaterThan(0)

        const res = await fetch(`${server.url}/blobs/${key}`, { headers: reader })
        expect(res.status).toBe(200)
        expect(Buffer.from(await res.arrayBuffer()).equals(bytes)).toBe(true)
      } finally {
        await browser.close()
      }
    },
    180_000
  )
})
