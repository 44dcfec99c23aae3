/**
 * Crash and resume (see resume.ts) with `--store s3`: the parts are native
 * multipart parts on the S3 server, found again by ListParts after the kill;
 * upload records live in the LevelDB sidecar under GRAVITON_HOME. Runs on the
 * first S3 server of the harness that can list multipart parts (moto, or an
 * endpoint given by GRAVITON_TEST_S3_ENDPOINT); skipped with the reason in the
 * title otherwise.
 */
import { afterAll, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { gate } from "../../src/testing/capabilities.js"
import * as Harness from "../harness/s3.js"
import { crashAndResume } from "./resume.js"

afterAll(Harness.stopAll, 30_000)

const server = Harness.available().find((c) => c.name === "env" || c.name === "moto")
const skip = server === undefined ? "no S3 server that lists multipart parts (moto or GRAVITON_TEST_S3_ENDPOINT) is available" : undefined

const dirs: Array<string> = []
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true })
})

const content = randomBytes(64 * 1024 * 1024)
const key = `sha256:${createHash("sha256").update(content).digest("hex")}:${content.length}`

describe("graviton upload: SIGKILL midway, resume in a new process", () => {
  gate(it.live, skip)(`S3 store (${server?.name ?? "none"})`, () =>
    Effect.promise(async () => {
      const running = await Harness.server(server!)
      const place = await Harness.prepare(running, Harness.freshBucket("cli-resume"))
      const home = fs.mkdtempSync(path.join(os.tmpdir(), "graviton-resume-s3-"))
      dirs.push(home)
      await crashAndResume({
        home,
        content,
        key,
        env: Harness.cliEnv(running, place, { partSize: 8 * 1024 * 1024 })
      })
    }), 240_000)
})
