/**
 * What each entry of the built package loads: the module graph of dist/,
 * walked from an entry through every relative import (static, re-exports and
 * `import()` with a literal), collecting the packages it reaches. Importing
 * `graviton` or `graviton/memory` must reach no driver: neither the AWS SDK,
 * nor pg, nor LevelDB. (dist/ is built by the test setup.)
 */
import { describe, expect, it } from "@effect/vitest"
import { readFileSync } from "node:fs"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..")
const exportsMap: Record<string, { readonly default: string } | string> = JSON.parse(
  readFileSync(join(repo, "package.json"), "utf8")
).exports

const SPECIFIER = /(?:^|[\s;])(?:import|export)\s*(?:[^"';]*?\sfrom\s*)?["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g

/** The packages (bare specifiers, as written) that the module graph from `entry` imports. */
const packagesReached = (entry: string): ReadonlySet<string> => {
  const seen = new Set<string>()
  const packages = new Set<string>()
  const visit = (file: string): void => {
    if (seen.has(file)) return
    seen.add(file)
    const text = readFileSync(file, "utf8").replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "")
    for (const match of text.matchAll(SPECIFIER)) {
      const specifier = (match[1] ?? match[2])!
      if (specifier.startsWith(".")) visit(resolve(dirname(file), specifier))
      else packages.add(specifier)
    }
  }
  visit(entry)
  return packages
}

const entryFile = (subpath: string): string => {
  const target = exportsMap[subpath]!
  return join(repo, typeof target === "string" ? target : target.default)
}

const DRIVERS = /^(@aws-sdk\/|@smithy\/|pg$|pg\/|pg-|@effect\/sql-pg|classic-level|abstract-level)/

describe("the module graph of the built package", () => {
  for (const subpath of [".", "./memory"]) {
    it(`graviton${subpath.slice(1)} loads no driver (AWS SDK, pg, LevelDB)`, () => {
      const reached = [...packagesReached(entryFile(subpath))]
      expect(reached.filter((p) => DRIVERS.test(p))).toEqual([])
      // The walk itself works: it reached effect through the graph.
      expect(reached).toContain("effect/Effect")
    })
  }

  it("sees the drivers where they are: graviton/pg, graviton/s3 and graviton/level reach them", () => {
    expect(packagesReached(entryFile("./pg"))).toContain("pg")
    expect([...packagesReached(entryFile("./s3"))].some((p) => p.startsWith("@aws-sdk/"))).toBe(true)
    expect(packagesReached(entryFile("./level"))).toContain("classic-level")
  })
})
