/** docs/cli.md and the README say what the CLI does (issue #16, item 8). */
import { describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"
import { ExitCode } from "../../src/cli/exitCodes.js"
import { repo } from "./runCli.js"

const read = (file: string) => fs.readFileSync(path.join(repo, file), "utf8")

describe("docs", () => {
  it("docs/cli.md: verify's line for missing bytes is the one printed (CORRUPTED … missing, never NOTFOUND)", () => {
    const cli = read("docs/cli.md")
    expect(cli).not.toContain("NOTFOUND <key>")
    expect(cli).toContain("`CORRUPTED <key>: the stored bytes of <key> are missing: …`")
  })

  it("docs/cli.md: the exit code table has a row for every code the CLI uses", () => {
    const rows = read("docs/cli.md").split("\n").filter((l) => /^\| \d+ \|/.test(l)).map((l) => Number(l.split("|")[1]))
    expect(rows.sort((a, b) => a - b)).toEqual(Object.values(ExitCode).sort((a, b) => a - b))
  })

  it("docs/cli.md says what a kill leaves behind and when it is swept", () => {
    const cli = read("docs/cli.md")
    expect(cli).toContain("### What a kill leaves behind")
    expect(cli).toMatch(/put-<uuid>.*24 hours/)
    expect(cli).toContain(".<name>.graviton-<pid>-<random>.part")
  })

  it("the README's docs list links every page of docs/ (replication.md included)", () => {
    const readme = read("README.md")
    const line = readme.split("\n").find((l) => l.startsWith("| `docs` |"))
    expect(line).toBeDefined()
    for (const page of fs.readdirSync(path.join(repo, "docs")).filter((f) => f.endsWith(".md"))) {
      expect(line, page).toContain(`(docs/${page})`)
    }
  })
})
