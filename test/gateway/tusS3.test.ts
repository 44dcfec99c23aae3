/**
 * tus on S3, on both stores that put bytes there: `level-s3` (upload
 * segments as S3 objects, metadata in LevelDB) and `s3` (native multipart
 * parts, records in its LevelDB sidecar): the cases that trouble S3-backed tus servers, chunks
 * below S3's 5 MiB minimum part size, a zero-byte upload, and a deferred
 * length with one short part, with tus-js-client and plain requests. Runs
 * on the harness's moto (or GRAVITON_TEST_S3_ENDPOINT); skipped with the
 * reason in the title otherwise.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as tus from "tus-js-client"
import * as Harness from "../harness/s3.js"
import { bodyOf, type Child, kill, startCli, tempHome, WRITER, writer } from "./servers.js"

afterAll(Harness.stopAll, 30_000)

const candidate = Harness.available().find((c) => c.name === "env" || c.name === "moto")
const skip = candidate === undefined ? "no S3 server that lists multipart parts (moto or GRAVITON_TEST_S3_ENDPOINT) is available" : undefined
const test = skip === undefined ? it : it.skip

const homes: Array<string> = []
const children: Array<Child> = []
afterAll(async () => {
  for (const child of children) await kill(child)
  for (const h of homes) fs.rmSync(h, { recursive: true, force: true })
})

const keyOf = (b: Uint8Array) => `sha256:${createHash("sha256").update(b).digest("hex")}:${b.length}`
const tusHeaders = { ...writer, "tus-resumable": "1.0.0" }

describe.each(["level-s3", "s3"])(`tus on the %s store${skip ? ` (skipped: ${skip})` : ""}`, (store) => {
  test("chunks under the minimum part size, a zero-byte upload, a deferred length with one short part", async () => {
    const running = await Harness.server(candidate!)
    const place = await Harness.prepare(running, Harness.freshBucket("gateway-tus"))
    const home = tempHome("tus-s3")
    homes.push(home)
    const child = await startCli(home, "127.0.0.1:0", { ...Harness.cliEnv(running, place), GRAVITON_STORE: store })
    children.push(child)
    const url = child.url

    const content = randomBytes(20 * 1024 * 1024 + 3)
    const key = await new Promise<string | null>((resolve, reject) => {
      let found: string | null = null
      new tus.Upload(content, {
        endpoint: `${url}/files/`,
        headers: { authorization: `Bearer ${WRITER}` },
        chunkSize: 3 * 1024 * 1024,
        onAfterResponse: (_req, res) => {
          found = res.getHeader("graviton-key") ?? found
        },
        onError: reject,
        onSuccess: () => resolve(found)
      }).start()
    })
    expect(key).toBe(keyOf(content))
    const got = await fetch(`${url}/blobs/${key}`, { headers: writer })
    expect(Buffer.from(await got.arrayBuffer()).equals(content)).toBe(true)

    const empty = await fetch(`${url}/files/`, { method: "POST", headers: { ...tusHeaders, "upload-length": "0" } })
    expect(empty.status).toBe(201)
    expect(empty.headers.get("graviton-key")).toBe(keyOf(new Uint8Array(0)))

    const short = randomBytes(777)
    const deferred = await fetch(`${url}/files/`, { method: "POST", headers: { ...tusHeaders, "upload-defer-length": "1" } })
    const location = deferred.headers.get("location")!
    expect((await fetch(`${url}${location}`, { method: "HEAD", headers: tusHeaders })).headers.get("upload-offset")).toBe("0")
    const done = await fetch(`${url}${location}`, {
      method: "PATCH",
      body: bodyOf(short),
      headers: { ...tusHeaders, "content-type": "application/offset+octet-stream", "upload-offset": "0", "upload-length": "777" }
    })
    expect(done.status).toBe(204)
    expect(done.headers.get("graviton-key")).toBe(keyOf(short))
  }, 180_000)
})
