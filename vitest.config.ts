import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // One PostgreSQL server for the whole run; under CI, missing servers fail the run.
    globalSetup: ["test/harness/requireServers.ts", "test/harness/pgGlobalSetup.ts"],
    // Backends share a 2-core machine with the servers they talk to.
    maxWorkers: 2,
    minWorkers: 1
  }
})
