/** `graviton serve`'s refusals: a bad --listen, a bad token list and a bad CORS origin exit 2, and the message never quotes a token. */
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import { run } from "../cli/runCli.js"
import { tempHome } from "./servers.js"

const home = tempHome("serve-cli")
afterAll(() => fs.rmSync(home, { recursive: true, force: true }))

describe("graviton serve refuses bad settings", () => {
  it("--listen without a port exits 2", async () => {
    const r = await run(["serve", "--listen", "localhost"], { home })
    expect(r.code).toBe(2)
    expect(r.stderr).toContain("--listen wants HOST:PORT")
  })

  it("a token with an unknown scope exits 2 without printing the token", async () => {
    const r = await run(["serve", "--listen", "127.0.0.1:0"], { home, env: { GRAVITON_GATEWAY_TOKENS: "admin:supersecret-value" } })
    expect(r.code).toBe(2)
    expect(r.stderr).toContain("GRAVITON_GATEWAY_TOKENS")
    expect(r.stderr).not.toContain("supersecret-value")
  })

  it("a CORS origin with a path exits 2 naming it", async () => {
    const r = await run(["serve", "--listen", "127.0.0.1:0"], {
      home,
      env: { GRAVITON_GATEWAY_CORS_ORIGINS: "https://app.example, https://app.example/upload" }
    })
    expect(r.code).toBe(2)
    expect(r.stderr).toContain("GRAVITON_GATEWAY_CORS_ORIGINS")
    expect(r.stderr).toContain("https://app.example/upload")
  })
})
