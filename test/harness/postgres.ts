/**
 * The PostgreSQL test harness: where the server comes from, and a fresh
 * database per test file.
 *
 * Where the server comes from, first match wins:
 * 1. GRAVITON_TEST_PG_URL: an existing server (a superuser URL, since each
 *    test file creates and drops its own database);
 * 2. the server started once per test run by `pgGlobalSetup.ts` (vitest
 *    `globalSetup`), handed over with `provide`/`inject`;
 * 3. a throwaway cluster started by the test file itself (`usePostgres()`
 *    registers the hooks), when no global setup ran.
 * A throwaway cluster comes from the machine's PostgreSQL binaries
 * (GRAVITON_PG_BINDIR, else the newest /usr/lib/postgresql/<n>/bin, else
 * PATH): initdb + postgres as the `postgres` user when we are root (both
 * refuse to run as root), in a temporary directory, on a free port, with
 * password authentication over TCP (so that tests of password handling mean
 * something) and fsync off. It is stopped and deleted at the end.
 *
 * Where a container runtime answers, containersGlobalSetup.ts also starts a
 * `postgres:15` container, and `describePg` suites run once per server, the
 * server named in their titles (`... on local postgres`,
 * `... on postgres:15 container`); see containers.ts.
 *
 * When neither a URL nor the binaries are available, `skipReason` says why
 * and the suites register their tests as skipped.
 */
import { afterAll, beforeAll, beforeEach, describe, inject, it as baseIt, layer as sharedLayer, type Vitest } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { randomBytes } from "node:crypto"
import * as Pg from "pg"
import * as PgLayers from "../../src/backends/pg/PgLayers.js"
import { gate } from "../../src/testing/capabilities.js"
import { type PgTarget, pgTargets } from "./containers.js"
import { findBinDir, type PgServer, startCluster } from "./pgCluster.js"

export { findBinDir, type PgServer, startCluster } from "./pgCluster.js"

declare module "vitest" {
  export interface ProvidedContext {
    /** URL of the server started by pgGlobalSetup.ts ("" when none could be started). */
    gravitonPgUrl: string
    /** Why no server could be started by pgGlobalSetup.ts ("" when one was). */
    gravitonPgSkip: string
  }
}

const provided = (key: "gravitonPgUrl" | "gravitonPgSkip"): string => {
  try {
    return inject(key) ?? ""
  } catch {
    return ""
  }
}

/** Why PostgreSQL tests cannot run here, or undefined when they can. */
export const skipReason = (): string | undefined => {
  if (process.env.GRAVITON_TEST_PG_URL) return undefined
  if (provided("gravitonPgUrl") !== "") return undefined
  const globalSkip = provided("gravitonPgSkip")
  if (globalSkip !== "") return globalSkip
  return findBinDir() === undefined
    ? "no PostgreSQL: set GRAVITON_TEST_PG_URL or install the server (scripts/install-postgres.sh)"
    : undefined
}

let local: Promise<PgServer> | undefined

/**
 * Makes the server available to this test file: a no-op when a URL is
 * given or the global setup started one, else starts a cluster before the
 * file's tests and stops it after them. Call once at the top of each file.
 */
export const usePostgres = (): void => {
  if (process.env.GRAVITON_TEST_PG_URL || provided("gravitonPgUrl") !== "" || skipReason() !== undefined) return
  beforeAll(async () => {
    local ??= startCluster()
    await local
  }, 60_000)
  afterAll(async () => {
    const server = local
    local = undefined
    if (server) await (await server).stop()
  }, 30_000)
}

/** The server the running `describePg` block works on (undefined: the local one). */
let current: PgTarget | undefined

/** The superuser URL of the server of this test run (or of the running `describePg` block's server). */
export const serverUrl = async (): Promise<string> => {
  if (current?.url !== undefined) return current.url
  const fromEnv = process.env.GRAVITON_TEST_PG_URL
  if (fromEnv) return fromEnv
  const fromGlobal = provided("gravitonPgUrl")
  if (fromGlobal !== "") return fromGlobal
  local ??= startCluster()
  return (await local).url
}

/** `url` pointing at another database of the same server. */
export const withDatabase = (url: string, database: string): string => {
  const u = new URL(url)
  u.pathname = `/${database}`
  return u.toString()
}

const admin = async <A>(f: (client: Pg.Client) => Promise<A>): Promise<A> => {
  const client = new Pg.Client({ connectionString: await serverUrl() })
  client.on("error", () => {})
  await client.connect()
  try {
    return await f(client)
  } finally {
    await client.end().catch(() => {})
  }
}

/** Creates an empty database named after `label` (plus a random suffix) and returns its URL. */
export const createDatabase = async (label: string): Promise<{ readonly url: string; readonly name: string }> => {
  const name = `g_${label.toLowerCase().replace(/[^a-z0-9]+/g, "_").slice(0, 30)}_${randomBytes(4).toString("hex")}`
  await admin((c) => c.query(`CREATE DATABASE ${name}`))
  return { url: withDatabase(await serverUrl(), name), name }
}

/** Drops a database made by `createDatabase`, disconnecting whoever is still in it. */
export const dropDatabase = (name: string): Promise<void> =>
  admin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => undefined)

/** A scoped fresh database: created now, dropped when the scope closes. Yields its URL. */
export const freshDatabase = (label: string) =>
  Effect.acquireRelease(
    Effect.promise(() => createDatabase(label)),
    (db) => Effect.promise(() => dropDatabase(db.name).catch(() => undefined))
  )

/**
 * Every PostgreSQL port (plus PgClient, SqlClient, PgPool) over a fresh,
 * migrated database of its own, dropped when the layer is released.
 */
export const pgLayer = (label: string, options: Omit<PgLayers.Options, "url"> = {}) =>
  Layer.unwrapScoped(
    Effect.map(freshDatabase(label), (db) => PgLayers.live({ migrate: true, ...options, url: Redacted.make(db.url) }))
  )

/**
 * A describe block over a shared layer, once per server of this run (the
 * local one, and a container where a runtime answers), titled
 * `<name> on <server>`. Its tests are skipped, with the reason in their
 * titles, when no local PostgreSQL is available (the layer is then never
 * built). `test` is `it.effect` gated on that reason.
 */
export const describePg = <R, E>(
  name: string,
  layer: Layer.Layer<R, E>,
  body: (test: Vitest.Test<R>, it: Vitest.MethodsNonLive<R, true>) => void
): void => {
  const reason = skipReason()
  for (const target of pgTargets()) {
    const title = `${name} on ${target.label}`
    if (reason !== undefined && target.url === undefined) {
      const it = baseIt as unknown as Vitest.MethodsNonLive<R, true>
      describe(title, () => body(gate(it.effect, reason), it))
      continue
    }
    describe(title, () => {
      // Registered before the layer's own beforeAll, so the layer's database is made on this server.
      beforeAll(() => {
        current = target
      })
      beforeEach(() => {
        current = target
      })
      afterAll(() => {
        current = undefined
      })
      sharedLayer(layer, { excludeTestServices: true, timeout: "120 seconds" })((it) => body(it.effect, it))
    })
  }
}
