import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // dist/ rebuilt when stale (the CLI and package tests use it); one PostgreSQL server and one
    // MinIO for the whole run, plus containers where a runtime answers; under CI, missing
    // servers fail the run.
    globalSetup: [
      "test/harness/buildGlobalSetup.ts",
      "test/harness/requireServers.ts",
      "test/harness/containersGlobalSetup.ts",
      "test/harness/pgGlobalSetup.ts",
      "test/harness/minioGlobalSetup.ts"
    ],
    // Backends share a 2-core machine with the servers they talk to.
    maxWorkers: 2,
    minWorkers: 1
  }
})
