import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Backends share a 2-core machine with the servers they talk to.
    maxWorkers: 2,
    minWorkers: 1
  }
})
