/** Runs every benchmark through its `npm run bench:<area>` script, one after the other, each in its own process. */
import { spawnSync } from "node:child_process"
import { readFileSync, readdirSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const here = dirname(fileURLToPath(import.meta.url))
const scripts = (JSON.parse(readFileSync(join(here, "..", "package.json"), "utf8")) as { scripts: Record<string, string> })
  .scripts
const areas = readdirSync(here)
  .filter((f) => f.endsWith(".ts") && !["all.ts", "harness.ts"].includes(f))
  .map((f) => f.slice(0, -3))
  .sort()
let failed = 0
for (const area of areas) {
  console.log(`\n== ${area}`)
  // The npm script may prepare things first (bench:s3 installs its peer library).
  const r = scripts[`bench:${area}`] !== undefined
    ? spawnSync("npm", ["run", "--silent", `bench:${area}`], { stdio: "inherit" })
    : spawnSync(process.execPath, ["--import", "tsx", join(here, `${area}.ts`)], { stdio: "inherit" })
  if (r.status !== 0) failed++
}
process.exit(failed === 0 ? 0 : 1)
