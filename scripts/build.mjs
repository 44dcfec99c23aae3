#!/usr/bin/env node
// `npm run build`: the library with tsc (src/ minus the CLI into dist/: JS, .d.ts, source
// and declaration maps), then the CLI bundled by esbuild into dist/cli/.
//
// Why bundle the CLI: loading effect's hundreds of ESM files one by one tripled start-up
// (`graviton stat` 0.9 s unbundled against 0.3 s bundled on the same machine). Drivers stay
// ordinary imports (native, or large and loaded only by the store that needs them), and the
// dynamic imports of the --store backends become chunks loaded only when chosen.
//
// `--if-stale`: build only when a source is newer than the last build (the test setup).
import { spawnSync } from "node:child_process"
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname, join, relative, sep } from "node:path"
import { fileURLToPath } from "node:url"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const dist = join(root, "dist")
const cliOut = join(dist, "cli")
const stamp = join(dist, ".build-stamp")
// Drivers the CLI loads from node_modules: native (classic-level), or optional peers that
// only their store needs (pg, the AWS SDK).
const EXTERNAL = ["classic-level", "pg", "pg-native", "@aws-sdk/*", "@smithy/*"]
const INPUTS = ["src", "package.json", "tsconfig.json", "tsconfig.build.json", "scripts/build.mjs"]

const newestMtime = (path) => {
  const s = statSync(path)
  if (!s.isDirectory()) return s.mtimeMs
  let newest = s.mtimeMs
  for (const entry of readdirSync(path)) newest = Math.max(newest, newestMtime(join(path, entry)))
  return newest
}

const isStale = () => {
  if (!existsSync(stamp)) return true
  const built = statSync(stamp).mtimeMs
  return INPUTS.some((input) => newestMtime(join(root, input)) > built)
}

const library = () => {
  const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc")
  const result = spawnSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json")], { stdio: "inherit" })
  if (result.status !== 0) throw new Error(`tsc failed (exit ${result.status})`)
}

// Bundled code would see the bundle's URL as import.meta.url. Each source file gets the URL
// its tsc output has instead (dist/<same path>.js, expressed relative to the bundle, so the
// package can live anywhere): package.json and migrations/ then resolve from both builds.
const keepImportMetaUrl = {
  name: "keep-import-meta-url",
  setup(build) {
    build.onLoad({ filter: /\.ts$/ }, (args) => {
      const source = readFileSync(args.path, "utf8")
      if (!source.includes("import.meta.url")) return undefined
      const emitted = relative(join(root, "src"), args.path).replace(/\.ts$/, ".js")
      const fromBundle = relative(cliOut, join(dist, emitted)).split(sep).join("/")
      const url = `new URL(${JSON.stringify(fromBundle.startsWith(".") ? fromBundle : `./${fromBundle}`)}, import.meta.url).href`
      return { contents: source.replace(/\bimport\.meta\.url\b/g, url), loader: "ts" }
    })
  }
}

const cli = async () => {
  const esbuild = await import("esbuild")
  await esbuild.build({
    absWorkingDir: root,
    entryPoints: [join(root, "src", "cli", "main.ts")],
    bundle: true,
    splitting: true,
    outdir: cliOut,
    chunkNames: "[name]-[hash]",
    platform: "node",
    format: "esm",
    target: "node20",
    // No source maps: they would be five times the bundle's size in the tarball.
    external: EXTERNAL,
    // Bundled CommonJS code calls require(); ESM output has none of its own.
    banner: { js: "import { createRequire as __gravitonRequire } from 'node:module'; const require = __gravitonRequire(import.meta.url);" },
    logLevel: "warning",
    plugins: [keepImportMetaUrl]
  })
}

if (process.argv.includes("--if-stale") && !isStale()) process.exit(0)
rmSync(dist, { recursive: true, force: true })
library()
await cli()
writeFileSync(stamp, `${new Date().toISOString()}\n`)
