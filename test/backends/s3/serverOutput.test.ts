/**
 * The test servers this process starts (moto, s3rver) must keep answering
 * while this process's event loop is blocked, as it is during a `spawnSync`
 * of the CLI (test/processes/pgS3.test.ts). moto logs one line per request;
 * when its output went to a pipe that only this event loop drained, a
 * blocked loop let the pipe fill after about a hundred requests with long
 * keys, moto's request thread blocked writing its log line, and the client
 * waited for an answer until its socket timeout.
 *
 * Here a child run with `spawnSync` sends 400 sequential HEADs with
 * 900-byte keys (about 400 KB of log lines) and reports how many were
 * answered (any status) before one got no answer within 10 s.
 */
import { describe, expect, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import * as Harness from "../../harness/s3.js"
import { useServers } from "./fixtures.js"

useServers()

const REQUESTS = 400

const client = `
const [endpoint, n] = process.argv.slice(1)
const long = "k".repeat(900)
let answered = 0
for (let i = 0; i < Number(n); i++) {
  try {
    await fetch(endpoint + "/graviton-absent-bucket/" + long + "-" + i, { method: "HEAD", signal: AbortSignal.timeout(10000) })
    answered++
  } catch (e) {
    console.log(JSON.stringify({ answered, error: String(e) }))
    process.exit(2)
  }
}
console.log(JSON.stringify({ answered }))
`

/** The servers the harness runs as children of the test process. */
const spawned = Harness.candidates.filter((c) => c.name === "moto" || c.name === "s3rver")

describe("test servers started by this process", () => {
  for (const c of spawned) {
    it.skipIf(c.skip !== undefined)(
      `${c.name} answers ${REQUESTS} requests while this process's event loop is blocked${c.skip ? ` (skipped: ${c.skip})` : ""}`,
      async () => {
        const server = await Harness.server(c)
        // Blocks this process until the child exits: nothing here reads the server's output meanwhile.
        const run = spawnSync(process.execPath, ["--input-type=module", "-e", client, server.endpoint, String(REQUESTS)], {
          encoding: "utf8",
          timeout: 600_000
        })
        expect(run.stderr).toBe("")
        expect(JSON.parse(run.stdout)).toEqual({ answered: REQUESTS })
        expect(run.status).toBe(0)
      },
      660_000
    )
  }
})
