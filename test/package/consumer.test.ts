/**
 * The package as an app sees it: `npm pack`, the tarball and its peers
 * installed into a fresh project, the programs of fixtures/ compiled with
 * strict TypeScript under moduleResolution node16 and bundler and run (in
 * memory, embedded, PostgreSQL through `graviton/pg`), an @effect/vitest file
 * run by that project's own vitest, the installed CLI, and every ```ts block
 * of the docs type-checked there (scripts/check-doc-snippets.mjs).
 *
 * GRAVITON_PACKAGE_DIR packs another checkout instead of this one (to see the
 * test fail on a version without the package build).
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { createDatabase, dropDatabase, skipReason, usePostgres } from "../harness/postgres.js"

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..")
const fixtures = join(repo, "test", "package", "fixtures")
const packageDir = process.env.GRAVITON_PACKAGE_DIR ?? repo

// Installed next to the tarball at the versions this repository tests with (so the npm cache
// serves them): the peers, the peers' own peers, and the consumer's tools.
const INSTALL = [
  "effect",
  "@effect/platform",
  "@effect/platform-node",
  "@effect/experimental",
  "@effect/sql",
  "@effect/sql-pg",
  "@effect/cluster",
  "@effect/rpc",
  "@effect/workflow",
  "@effect/vitest",
  "vitest",
  "pg",
  "@aws-sdk/client-s3",
  // docs/observability.md wires @effect/opentelemetry with these.
  "@effect/opentelemetry",
  "@opentelemetry/sdk-trace-base",
  "@opentelemetry/sdk-metrics",
  "typescript",
  "@types/node"
]

const STRICT = {
  target: "ES2022",
  lib: ["ES2022"],
  types: ["node"],
  strict: true,
  exactOptionalPropertyTypes: true,
  noUncheckedIndexedAccess: true,
  noImplicitOverride: true,
  skipLibCheck: true
}

/** The environment without what the surrounding npm and vitest set for themselves. */
const cleanEnv = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(npm_|VITEST|NODE_OPTIONS$|NODE_ENV$|TEST$)/.test(k) && k !== "npm_config_cache") continue
    env[k] = v
  }
  return { ...env, ...extra }
}

interface Ran {
  readonly status: number | null
  readonly stdout: string
  /** stdout and stderr, for failure messages. */
  readonly output: string
}

const run = (command: string, args: ReadonlyArray<string>, cwd: string, env: Record<string, string> = {}): Ran => {
  const result = spawnSync(command, args, { cwd, env: cleanEnv(env), encoding: "utf8", maxBuffer: 64 * 1024 * 1024 })
  return { status: result.status, stdout: result.stdout ?? "", output: `${result.stdout ?? ""}${result.stderr ?? ""}${result.error ?? ""}` }
}

const expectOk = (result: Ran, what: string): string => {
  if (result.status !== 0) throw new Error(`${what} failed (exit ${result.status}):\n${result.output}`)
  return result.stdout
}

const keyOf = (text: string): string => {
  const bytes = Buffer.from(text)
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}:${bytes.length}`
}

usePostgres()

describe("the npm package in a fresh project", () => {
  let project = ""
  let packed: { readonly filename: string; readonly size: number; readonly entryCount: number; readonly files: ReadonlyArray<{ readonly path: string }> }

  beforeAll(() => {
    project = mkdtempSync(join(tmpdir(), "graviton-consumer-"))
    const pack = run("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", project], packageDir)
    packed = JSON.parse(expectOk(pack, "npm pack"))[0]
    const lock = JSON.parse(readFileSync(join(repo, "package-lock.json"), "utf8"))
    const pinned = INSTALL.map((name) => `${name}@${lock.packages[`node_modules/${name}`].version}`)
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }))
    expectOk(
      run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", `./${packed.filename}`, ...pinned], project),
      "npm install"
    )
    mkdirSync(join(project, "src"))
    mkdirSync(join(project, "test"))
    for (const name of ["memory.ts", "embedded.ts", "pg.ts"]) copyFileSync(join(fixtures, name), join(project, "src", name))
    copyFileSync(join(fixtures, "conformance.vitest.ts"), join(project, "test", "conformance.test.ts"))
    const tsconfig = (options: object) => JSON.stringify({ compilerOptions: { ...STRICT, ...options }, include: ["src", "test"] })
    writeFileSync(join(project, "tsconfig.node16.json"), tsconfig({ module: "Node16", moduleResolution: "Node16", outDir: "out" }))
    writeFileSync(join(project, "tsconfig.bundler.json"), tsconfig({ module: "ESNext", moduleResolution: "Bundler", noEmit: true }))
  }, 600_000)

  afterAll(() => {
    if (project !== "") rmSync(project, { recursive: true, force: true })
  })

  const tsc = (config: string) =>
    expectOk(run(process.execPath, ["node_modules/typescript/bin/tsc", "-p", config, "--pretty", "false"], project), `tsc -p ${config}`)
  const node = (script: string, ...args: Array<string>) => (env: Record<string, string> = {}) =>
    JSON.parse(expectOk(run(process.execPath, [join("out", "src", script), ...args], project, env), script))

  it("ships the build, the CLI, the migrations and the docs, and no tests, benchmarks, scripts or sources", () => {
    const paths = packed.files.map((f) => f.path)
    expect(paths).toEqual(expect.arrayContaining([
      "dist/index.js",
      "dist/index.d.ts",
      "dist/backends/memory/index.js",
      "dist/testing/index.d.ts",
      "dist/cli/main.js",
      "bin/graviton.js",
      "migrations/V1__init.sql",
      "README.md"
    ]))
    expect(paths.filter((p) => /^(test|bench|scripts|src|examples)\//.test(p))).toEqual([])
  })

  it("compiles under moduleResolution bundler", () => {
    tsc("tsconfig.bundler.json")
  }, 120_000)

  describe("compiled under moduleResolution node16", () => {
    beforeAll(() => {
      tsc("tsconfig.node16.json")
    }, 120_000)

    it("runs a MemoryLayers program", () => {
      expect(node("memory.js", "hello from a consumer")()).toEqual({
        key: keyOf("hello from a consumer"),
        text: "hello from a consumer",
        deduplicated: true
      })
    })

    it("puts and gets through graviton/embedded", () => {
      const home = join(project, "embedded-home")
      expect(node("embedded.js", home, "embedded bytes")()).toEqual({ key: keyOf("embedded bytes"), text: "embedded bytes" })
    }, 60_000)

    const pgSkip = skipReason()
    it.skipIf(pgSkip !== undefined)(`runs a PostgreSQL program through graviton/pg's layerConfig${pgSkip === undefined ? "" : ` (skipped: ${pgSkip})`}`, async () => {
      const db = await createDatabase("consumer")
      try {
        expect(node("pg.js", "bytes in postgres")({ GRAVITON_PG_URL: db.url, GRAVITON_PG_MIGRATE: "true" })).toEqual({
          key: keyOf("bytes in postgres"),
          text: "bytes in postgres"
        })
      } finally {
        await dropDatabase(db.name)
      }
    }, 120_000)
  })

  it("runs an @effect/vitest file with a graviton/testing conformance suite under the project's vitest", () => {
    const report = join(project, "vitest-report.json")
    expectOk(
      run(process.execPath, ["node_modules/vitest/vitest.mjs", "run", "test/conformance.test.ts", "--reporter=json", `--outputFile=${report}`], project),
      "vitest"
    )
    const result = JSON.parse(readFileSync(report, "utf8"))
    expect(result.numFailedTests).toBe(0)
    // The blob test plus the KeyValueStore suite (which has many tests).
    expect(result.numPassedTests).toBeGreaterThan(5)
  }, 180_000)

  it("installs a working graviton command", () => {
    const env = { GRAVITON_HOME: join(project, "cli-home") }
    const version = expectOk(run(process.execPath, ["node_modules/.bin/graviton", "--version"], project, env), "graviton --version")
    expect(version.trim()).toBe(JSON.parse(readFileSync(join(packageDir, "package.json"), "utf8")).version)
    const put = expectOk(run(process.execPath, ["node_modules/.bin/graviton", "put", "package.json"], project, env), "graviton put")
    expect(put.trim()).toBe(keyOf(readFileSync(join(project, "package.json"), "utf8")))
  }, 60_000)

  it("type-checks every ts block of README.md and docs/ against the installed package", () => {
    expectOk(run(process.execPath, [join(repo, "scripts", "check-doc-snippets.mjs"), "--project", project], repo), "check-doc-snippets")
  }, 120_000)
})
