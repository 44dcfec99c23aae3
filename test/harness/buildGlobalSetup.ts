/**
 * vitest globalSetup: builds dist/ when a source is newer than the last build
 * (`npm run build --if-stale`). The CLI tests run bin/graviton.js, which runs
 * the built CLI, and the package tests pack dist/: both must see the sources
 * under test, not a stale build.
 */
import { spawnSync } from "node:child_process"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..")

export default function setup(): void {
  const result = spawnSync(process.execPath, [join(repoRoot, "scripts", "build.mjs"), "--if-stale"], {
    cwd: repoRoot,
    stdio: "inherit"
  })
  if (result.status !== 0) throw new Error(`the build failed (exit ${result.status}): run npm run build`)
}
