#!/usr/bin/env node
// Runs the TypeScript CLI with no build step. Fast path: src/cli/main.ts
// bundled once by esbuild (tsx's own compiler) into node_modules/.cache, and
// rebuilt whenever one of its source files changes; starting from that plain
// JS takes about half the time and ~60 MiB less memory than
// compiling through tsx's loader hooks on every run. Pure-JS dependencies
// (effect, @effect/*) are bundled in too: loading effect's hundreds of ESM
// files one by one was itself 0.3 s and ~35 MiB of the start-up. Dynamic imports (the
// backends of --store) become separate chunks, loaded only when used.
// Fallback (cache not writable, esbuild missing, or GRAVITON_NO_BUNDLE=1):
// tsx's loader, as before.
import { createRequire } from "node:module"
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..")
const main = join(root, "src", "cli", "main.ts")
const cacheDir = join(root, "node_modules", ".cache", "graviton")
const manifest = join(cacheDir, "cli.json")
// Bump when the bundling recipe below changes, so old bundles are rebuilt.
const RECIPE = 3
// Superseded builds are removed once this old (a running command may still load their chunks).
const STALE_MS = 60 * 60 * 1000
const EXTERNAL = ["classic-level", "pg", "pg-native", "pg-cursor", "@aws-sdk/*", "@smithy/*", "tsx", "esbuild"]
// Bundled dependencies are not tracked file by file (thousands of stats per start): the
// lockfile and package.json stand for them.
const DEPENDENCY_STAMPS = ["package.json", "package-lock.json"]

const signature = (file) => {
  const s = statSync(file)
  return `${s.size}:${s.mtimeMs}`
}

/** The entry file of the cached build, when it was built from exactly the current sources. */
const cached = () => {
  try {
    const m = JSON.parse(readFileSync(manifest, "utf8"))
    if (m.recipe !== RECIPE) return undefined
    for (const [file, sig] of Object.entries(m.inputs)) if (signature(join(root, file)) !== sig) return undefined
    const entry = join(cacheDir, m.dir, "main.js")
    statSync(entry)
    return entry
  } catch {
    return undefined
  }
}

const build = async () => {
  // esbuild comes with tsx; resolve it from there so a nested install still finds it.
  const require = createRequire(createRequire(import.meta.url).resolve("tsx"))
  const esbuild = require("esbuild")
  // Bundled code would otherwise see the bundle's URL: give each module its own source URL,
  // so paths computed relative to a source file (package.json, SQL migrations) stay right.
  const keepImportMetaUrl = {
    name: "keep-import-meta-url",
    setup(b) {
      b.onLoad({ filter: /\.ts$/ }, (args) => ({
        contents: readFileSync(args.path, "utf8").replace(
          /\bimport\.meta\.url\b/g,
          JSON.stringify(pathToFileURL(args.path).href)
        ),
        loader: "ts"
      }))
    }
  }
  // Each build gets its own directory; the manifest names the current one. Writing the
  // manifest last (by rename) means concurrent runs never import a half-written build.
  const dir = `build-${Date.now()}-${process.pid}`
  const result = await esbuild.build({
    absWorkingDir: root,
    entryPoints: [main],
    bundle: true,
    splitting: true,
    outdir: join(cacheDir, dir),
    outExtension: { ".js": ".js" },
    platform: "node",
    format: "esm",
    target: "node20",
    // Native or large, lazily loaded dependencies stay ordinary imports from node_modules.
    external: EXTERNAL,
    // Bundled CommonJS code calls require(); ESM output has none of its own.
    banner: { js: "import { createRequire as __gravitonRequire } from 'node:module'; const require = __gravitonRequire(import.meta.url);" },
    metafile: true,
    logLevel: "silent",
    plugins: [keepImportMetaUrl]
  })
  const inputs = {}
  for (const file of Object.keys(result.metafile.inputs)) {
    if (!file.startsWith("node_modules/")) inputs[file] = signature(join(root, file))
  }
  for (const file of DEPENDENCY_STAMPS) {
    try {
      inputs[file] = signature(join(root, file))
    } catch {
      // no lockfile: nothing to track
    }
  }
  // The package is "type": "module", and node_modules/.cache is outside it: say so for the chunks.
  writeFileSync(join(cacheDir, dir, "package.json"), "{\"type\":\"module\"}\n")
  writeFileSync(`${manifest}.${process.pid}.tmp`, JSON.stringify({ recipe: RECIPE, dir, inputs }))
  renameSync(`${manifest}.${process.pid}.tmp`, manifest)
  for (const old of readdirSync(cacheDir)) {
    const path = join(cacheDir, old)
    if (old.startsWith("build-") && old !== dir && Date.now() - statSync(path).mtimeMs > STALE_MS) {
      rmSync(path, { recursive: true, force: true })
    }
  }
  return join(cacheDir, dir, "main.js")
}

let entry
if (process.env.GRAVITON_NO_BUNDLE === undefined) {
  try {
    entry = cached() ?? (await build())
  } catch {
    entry = undefined
  }
}
if (entry === undefined) {
  const { register } = await import("tsx/esm/api")
  register()
  entry = main
}
await import(pathToFileURL(entry).href)
