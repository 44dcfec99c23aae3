#!/usr/bin/env node
// Keeps the floor plan of src/ true (run by `npm run typecheck`): no import cycles, and no
// import from a floor to a higher one. Floors, lowest first:
//   core < ports < kit < backends < {blobs, uploads, replication, lifecycle} < {stores, gateway} < cli
// Floors beside each other may import each other (cycles are still caught). testing may import
// anything below stores, and nothing imports testing; a backend folder imports no other
// backend; the package entry (src/index.ts) imports no backend, so it loads no driver.
// Only relative imports are followed (static, `export ... from`, `import type`, and `import()`
// with a literal), which is all src/ uses between its own files.
import { readdirSync, readFileSync, statSync } from "node:fs"
import { dirname, join, relative, resolve, sep } from "node:path"
import { fileURLToPath } from "node:url"

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..")
const src = join(root, "src")

const FLOORS = { core: 0, ports: 1, kit: 2, backends: 3, blobs: 4, uploads: 4, replication: 4, lifecycle: 4, testing: 5, stores: 5, gateway: 5, cli: 6 }

const files = (dir) =>
  readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    return statSync(path).isDirectory() ? files(path) : path.endsWith(".ts") ? [path] : []
  })

const IMPORT = /(?:^|[\s;])(?:import|export)\s+(?:type\s+)?(?:[^"';]*?\sfrom\s+)?["'](\.{1,2}\/[^"']+)["']|import\(\s*["'](\.{1,2}\/[^"']+)["']\s*\)/g

/** Relative imports of `file`, as absolute .ts paths. */
const importsOf = (file) => {
  const text = readFileSync(file, "utf8").replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "")
  return [...text.matchAll(IMPORT)].map((m) => resolve(dirname(file), (m[1] ?? m[2]).replace(/\.js$/, ".ts")))
}

/** Where a file sits: its floor name (`index.ts` at the top is the package entry) and, in backends, its folder. */
const place = (file) => {
  const parts = relative(src, file).split(sep)
  if (parts.length === 1) return { floor: "entry", level: FLOORS.backends + 1, backend: undefined }
  const floor = parts[0]
  return { floor, level: FLOORS[floor], backend: floor === "backends" ? parts[1] : undefined }
}

const name = (file) => relative(root, file)
const problems = []
const graph = new Map()
for (const file of files(src)) {
  const targets = importsOf(file)
  graph.set(file, targets)
  const from = place(file)
  if (from.level === undefined) problems.push(`${name(file)}: src/${from.floor} is not a known floor`)
  for (const target of targets) {
    const to = place(target)
    if (from.level === undefined || to.level === undefined) continue
    if (from.floor === "testing" && to.level >= FLOORS.stores && to.floor !== "testing") {
      problems.push(`${name(file)} imports ${name(target)}: testing may import only floors below stores`)
    } else if (to.floor === "testing" && from.floor !== "testing") {
      problems.push(`${name(file)} imports ${name(target)}: only the conformance suites import testing`)
    } else if (from.floor === "entry" && to.floor === "backends") {
      problems.push(`${name(file)} imports ${name(target)}: the package entry must load no backend`)
    } else if (to.level > from.level) {
      problems.push(`${name(file)} (${from.floor}) imports ${name(target)} (${to.floor}), a higher floor`)
    } else if (from.backend !== undefined && to.backend !== undefined && from.backend !== to.backend) {
      problems.push(`${name(file)} imports ${name(target)}: one backend imports another`)
    }
  }
}

// Cycles: depth-first search, reporting each cycle once by its path.
const state = new Map()
const stack = []
const visit = (file) => {
  state.set(file, "open")
  stack.push(file)
  for (const target of graph.get(file) ?? []) {
    if (!graph.has(target)) {
      problems.push(`${name(file)} imports ${name(target)}, which does not exist`)
    } else if (state.get(target) === "open") {
      problems.push(`import cycle: ${[...stack.slice(stack.indexOf(target)), target].map(name).join(" -> ")}`)
    } else if (!state.has(target)) {
      visit(target)
    }
  }
  stack.pop()
  state.set(file, "done")
}
for (const file of graph.keys()) if (!state.has(file)) visit(file)

if (problems.length > 0) {
  console.error(`check-layers: ${problems.length} problem(s) in src/:\n  ${problems.join("\n  ")}`)
  process.exit(1)
}
console.log(`check-layers: ${graph.size} files, no cycles, every import goes down the floors`)
