/**
 * vitest configuration of `npm run test:pg`: the repository's configuration,
 * restricted to the PostgreSQL tests, with one server for the whole run
 * (pgGlobalSetup.ts) instead of one per test file.
 */
import { defineConfig } from "vitest/config"
import base from "../../vitest.config.js"

export default defineConfig({
  ...base,
  test: {
    ...base.test,
    // Replaces (mergeConfig would append to) the base list.
    include: ["test/backends/pg/**/*.test.ts"],
    // MigrateCli.test.ts runs the built CLI.
    globalSetup: ["test/harness/buildGlobalSetup.ts", "test/harness/containersGlobalSetup.ts", "test/harness/pgGlobalSetup.ts"]
  }
})
