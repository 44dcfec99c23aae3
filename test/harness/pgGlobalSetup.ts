/**
 * vitest globalSetup: one PostgreSQL server for the whole test run (unless
 * GRAVITON_TEST_PG_URL names one), handed to test files through `provide`.
 * When no server can be started, the reason is provided instead and the
 * PostgreSQL suites register their tests as skipped with it.
 */
import type { TestProject } from "vitest/node"
import { findBinDir, type PgServer, startCluster } from "./pgCluster.js"

let server: PgServer | undefined

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  if (process.env.GRAVITON_TEST_PG_URL) {
    project.provide("gravitonPgUrl", process.env.GRAVITON_TEST_PG_URL)
    project.provide("gravitonPgSkip", "")
    return async () => {}
  }
  if (findBinDir() === undefined) {
    project.provide("gravitonPgUrl", "")
    project.provide(
      "gravitonPgSkip",
      "no PostgreSQL: set GRAVITON_TEST_PG_URL or install the server (scripts/install-postgres.sh)"
    )
    return async () => {}
  }
  server = await startCluster()
  project.provide("gravitonPgUrl", server.url)
  project.provide("gravitonPgSkip", "")
  return async () => {
    await server?.stop()
    server = undefined
  }
}
