/**
 * vitest globalSetup: under CI (CI=true) the servers the suites need must be
 * installed, so a broken install step fails the run instead of turning the
 * PostgreSQL and moto suites into skips. Locally a missing server only skips
 * those suites, with the reason in each test title.
 */
import { existsSync } from "node:fs"
import { findBinDir } from "./pgCluster.js"
import { motoServer } from "./s3.js"

export default function setup(): void {
  if (process.env.CI !== "true") return
  const missing: Array<string> = []
  if (!process.env.GRAVITON_TEST_PG_URL && findBinDir() === undefined) missing.push("PostgreSQL server binaries")
  if (!process.env.GRAVITON_TEST_S3_ENDPOINT && !existsSync(motoServer)) missing.push(`moto (${motoServer})`)
  if (missing.length > 0) {
    throw new Error(`CI=true but ${missing.join(" and ")} missing: run scripts/install-test-servers.sh`)
  }
}
