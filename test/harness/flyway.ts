/**
 * Real Flyway for the interoperability tests: Flyway's Java API driven by
 * FlywayRunner.java (compiled once per test file into a temp folder) with the
 * jars scripts/install-flyway.sh puts in the cache
 * (`$GRAVITON_CACHE` or `~/.cache/graviton`, `flyway/<version>/lib`).
 * `skipReason()` says why Flyway cannot run here (no java, no jars).
 */
import { execFile, spawnSync } from "node:child_process"
import { existsSync, mkdtempSync } from "node:fs"
import { homedir, tmpdir } from "node:os"
import { delimiter, dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

/** The version scripts/install-flyway.sh installs (keep the two in step). */
export const VERSION = "13.12.2"

const cacheRoot = process.env.GRAVITON_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "graviton")

/** Folder of Flyway's jars, the JDBC driver's and their dependencies. */
export const libDirectory = join(cacheRoot, "flyway", VERSION, "lib")

const hasJava = (): boolean => spawnSync("java", ["-version"], { stdio: "ignore" }).status === 0

/** Why Flyway cannot run here, or undefined when it can. */
export const skipReason = (): string | undefined =>
  !hasJava()
    ? "no java on the PATH (Flyway needs Java 17+)"
    : !existsSync(join(libDirectory, ".complete"))
    ? `Flyway ${VERSION} is not installed in ${libDirectory} (run scripts/install-flyway.sh)`
    : undefined

const run = (command: string, args: ReadonlyArray<string>): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((resolve) => {
    execFile(command, args, { maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) =>
      resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, stdout, stderr }))
  })

let compiled: Promise<string> | undefined

/** Compiles FlywayRunner.java once; yields the folder of its class. */
const classes = (): Promise<string> =>
  (compiled ??= (async () => {
    const out = mkdtempSync(join(tmpdir(), "graviton-flyway-"))
    const source = join(dirname(fileURLToPath(import.meta.url)), "FlywayRunner.java")
    const r = await run("javac", ["-cp", join(libDirectory, "*"), "-d", out, source])
    if (r.code !== 0) throw new Error(`javac FlywayRunner.java failed: ${r.stderr}`)
    return out
  })())

/** A Flyway command FlywayRunner.java knows. */
export type Command = "migrate" | "validate" | "info" | "baseline"

/** What a Flyway run answered. */
export interface Result {
  readonly ok: boolean
  /** Each command's result (see FlywayRunner.java); empty when not ok. */
  readonly results: Partial<Record<Command, Record<string, unknown>>>
  /** Flyway's error message when not ok. */
  readonly error: string
  /** Flyway's whole output, for failure messages. */
  readonly log: string
}

/** A migration as `flyway info` lists it. */
export interface Info {
  readonly version: string | null
  readonly description: string
  readonly type: string
  readonly script: string
  readonly checksum: number | null
  readonly state: string
}

/** Where Flyway works: a database (a postgres:// URL, as the PostgreSQL harness gives) and its settings. */
export interface Target {
  readonly url: string
  /** Flyway's `schemas` (the first holds the history); default: the connection's. */
  readonly schema?: string | undefined
  /** The migrations folder; default: the repository's migrations/. */
  readonly directory?: string | undefined
  /** More Flyway settings, without the `flyway.` prefix. */
  readonly settings?: Readonly<Record<string, string>> | undefined
}

const repoMigrations = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "migrations")

/** Runs Flyway's commands, in order, against the target through Flyway's Java API, in one JVM. */
export const flyway = async (commands: ReadonlyArray<Command>, target: Target): Promise<Result> => {
  const u = new URL(target.url)
  const jdbc = `jdbc:postgresql://${u.host}${u.pathname}`
  const settings = Object.entries(target.settings ?? {}).map(([k, v]) => `${k}=${v}`)
  const r = await run("java", [
    "-cp",
    [join(libDirectory, "*"), await classes()].join(delimiter),
    "FlywayRunner",
    commands.join(","),
    jdbc,
    decodeURIComponent(u.username),
    decodeURIComponent(u.password),
    target.schema ?? "",
    target.directory ?? repoMigrations,
    ...settings
  ])
  const log = r.stdout + r.stderr
  const result = /^FLYWAY-RESULT (.*)$/m.exec(r.stdout)
  const error = /^FLYWAY-ERROR (.*)$/m.exec(r.stdout)
  return {
    ok: r.code === 0 && result !== null,
    results: result === null ? {} : JSON.parse(result[1]!) as Result["results"],
    error: error?.[1] ?? (result === null ? log.slice(-2000) : ""),
    log
  }
}

/** `flyway info`'s migrations. */
export const info = async (target: Target): Promise<ReadonlyArray<Info>> => {
  const r = await flyway(["info"], target)
  if (!r.ok) throw new Error(`flyway info failed: ${r.error}`)
  return r.results.info!.migrations as ReadonlyArray<Info>
}
