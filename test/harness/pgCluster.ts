/**
 * A throwaway PostgreSQL cluster from the machine's binaries (no vitest
 * imports, so that vitest's globalSetup and the benchmarks can use it).
 *
 * The binaries: GRAVITON_PG_BINDIR, else the newest
 * /usr/lib/postgresql/<n>/bin, else initdb on the PATH. initdb and postgres
 * refuse to run as root, so as root they run as the `postgres` user, in a
 * temporary directory chowned to it, on a free port, with password
 * authentication over TCP and fsync off. `stop` shuts it down and deletes it.
 */
import { spawn, spawnSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Pg from "pg"

/** A running server and how to stop it. */
export interface PgServer {
  /** Superuser URL of the `postgres` database. */
  readonly url: string
  readonly stop: () => Promise<void>
}

/** A cluster of one's own, which fault tests may kill and start again. */
export interface PgCluster extends PgServer {
  /** Sends `signal` to the postmaster and waits until it has exited. */
  readonly kill: (signal: NodeJS.Signals) => Promise<void>
  /** Starts the postmaster again on the same data directory and port, once the old one's processes are gone. */
  readonly restart: () => Promise<void>
}

/** The directory of initdb/postgres, or undefined when this machine has none. */
export const findBinDir = (): string | undefined => {
  const fromEnv = process.env.GRAVITON_PG_BINDIR
  if (fromEnv && existsSync(join(fromEnv, "initdb"))) return fromEnv
  const root = "/usr/lib/postgresql"
  if (existsSync(root)) {
    const versions = readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a))
    for (const v of versions) {
      const dir = join(root, v, "bin")
      if (existsSync(join(dir, "initdb")) && existsSync(join(dir, "postgres"))) return dir
    }
  }
  const which = spawnSync("sh", ["-c", "command -v initdb"], { encoding: "utf8" })
  const initdb = which.status === 0 ? which.stdout.trim() : ""
  return initdb && existsSync(join(initdb, "..", "postgres")) ? join(initdb, "..") : undefined
}

/** uid/gid of the `postgres` user, when we are root and must switch to it. */
const postgresUser = (): { readonly uid: number; readonly gid: number } | undefined => {
  if (process.getuid?.() !== 0) return undefined
  const line = readFileSync("/etc/passwd", "utf8").split("\n").find((l) => l.startsWith("postgres:"))
  if (line === undefined) throw new Error("running as root, but there is no 'postgres' user to run PostgreSQL as")
  const [, , uid, gid] = line.split(":")
  return { uid: Number(uid), gid: Number(gid) }
}

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

const run = (command: string, args: ReadonlyArray<string>, user: ReturnType<typeof postgresUser>): Promise<void> =>
  new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], ...user })
    let output = ""
    child.stdout.on("data", (d) => (output += d))
    child.stderr.on("data", (d) => (output += d))
    child.on("error", reject)
    child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`${command} exited ${code}: ${output}`))))
  })

const canConnect = async (url: string): Promise<boolean> => {
  const client = new Pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 })
  client.on("error", () => {})
  try {
    await client.connect()
    await client.query("SELECT 1")
    return true
  } catch {
    return false
  } finally {
    await client.end().catch(() => {})
  }
}

/** One postmaster process on `data`, `port`. */
const launch = (bin: string, dir: string, data: string, port: number, user: ReturnType<typeof postgresUser>) => {
  const child = spawn(join(bin, "postgres"), [
    "-D",
    data,
    "-p",
    String(port),
    "-k",
    dir,
    "-c",
    "listen_addresses=127.0.0.1",
    "-c",
    "fsync=off",
    "-c",
    "synchronous_commit=off",
    "-c",
    "full_page_writes=off",
    "-c",
    "max_connections=300",
    "-c",
    "max_wal_size=2GB"
  ], { stdio: ["ignore", "ignore", "pipe"], ...user })
  const state = { child, log: "", exited: false, exit: Promise.resolve() }
  child.stderr.on("data", (d) => (state.log = (state.log + d).slice(-4000)))
  state.exit = new Promise<void>((resolve) =>
    child.on("exit", () => {
      state.exited = true
      resolve()
    })
  )
  return state
}

/** Waits until `url` answers or the postmaster exits; "exited" or "timeout" when it does not answer. */
const waitReady = async (url: string, state: ReturnType<typeof launch>): Promise<"ready" | "exited" | "timeout"> => {
  const deadline = Date.now() + 30_000
  while (!state.exited && Date.now() < deadline) {
    if (await canConnect(url)) return "ready"
    await new Promise((r) => setTimeout(r, 100))
  }
  return state.exited ? "exited" : "timeout"
}

/** Starts a throwaway cluster (initdb + postgres) and waits until it accepts connections. */
export const startCluster = async (): Promise<PgCluster> => {
  const bin = findBinDir()
  if (bin === undefined) throw new Error("no PostgreSQL server binaries (initdb, postgres) on this machine")
  const user = postgresUser()
  const dir = mkdtempSync(join(tmpdir(), "graviton-pg-"))
  if (user) chownSync(dir, user.uid, user.gid)
  const password = randomBytes(12).toString("hex")
  const pwfile = join(dir, "pwfile")
  writeFileSync(pwfile, `${password}\n`, { mode: 0o600 })
  if (user) chownSync(pwfile, user.uid, user.gid)
  const data = join(dir, "data")
  try {
    await run(join(bin, "initdb"), [
      "-D",
      data,
      "-U",
      "postgres",
      `--pwfile=${pwfile}`,
      "--auth-host=scram-sha-256",
      "--auth-local=trust",
      "-E",
      "UTF8",
      "--locale=C.UTF-8",
      "--no-sync"
    ], user)
    rmSync(pwfile)
    for (let attempt = 0; attempt < 5; attempt++) {
      const port = await freePort()
      let state = launch(bin, dir, data, port, user)
      const url = `postgres://postgres:${password}@127.0.0.1:${port}/postgres`
      const ready = await waitReady(url, state)
      if (ready === "exited") {
        // Most likely someone took the port between freePort() and the bind: try another.
        if (/could not bind|Address already in use/i.test(state.log)) continue
        throw new Error(`postgres exited during startup: ${state.log}`)
      }
      if (ready === "timeout") {
        state.child.kill("SIGKILL")
        throw new Error(`postgres did not accept connections within 30 s: ${state.log}`)
      }
      let stopped: Promise<void> | undefined
      const kill = async (signal: NodeJS.Signals) => {
        if (!state.exited) state.child.kill(signal)
        await state.exit
      }
      const restart = async () => {
        await state.exit
        // After a SIGKILL the old backends notice their postmaster's death and exit on their own;
        // until they have, the new postmaster refuses the data directory (shared memory in use).
        const deadline = Date.now() + 30_000
        for (;;) {
          state = launch(bin, dir, data, port, user)
          const again = await waitReady(url, state)
          if (again === "ready") return
          if (again === "timeout" || Date.now() > deadline) {
            state.child.kill("SIGKILL")
            throw new Error(`postgres did not start again: ${state.log}`)
          }
          await new Promise((r) => setTimeout(r, 200))
        }
      }
      return {
        url,
        kill,
        restart,
        stop: () =>
          (stopped ??= (async () => {
            if (!state.exited) {
              state.child.kill("SIGINT") // fast shutdown: disconnect clients, roll back, exit
              const timer = setTimeout(() => state.child.kill("SIGKILL"), 10_000)
              await state.exit
              clearTimeout(timer)
            }
            rmSync(dir, { recursive: true, force: true })
          })())
      }
    }
    throw new Error("postgres could not bind a free port after 5 attempts")
  } catch (e) {
    rmSync(dir, { recursive: true, force: true })
    throw e
  }
}
