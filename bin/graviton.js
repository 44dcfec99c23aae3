#!/usr/bin/env node
// Runs the built CLI: dist/cli/main.js, bundled at build time by scripts/build.mjs
// (`npm run build`; `npm ci` and `npm install` run it through `prepare`).
import { existsSync } from "node:fs"

const main = new URL("../dist/cli/main.js", import.meta.url)
if (!existsSync(main)) {
  process.stderr.write("graviton: the CLI is not built (dist/cli/main.js is missing); run `npm run build`\n")
  process.exit(1)
}
await import(main.href)
