#!/usr/bin/env node
// Type-checks every ```ts block of README.md and docs/**/*.md against the built package, so
// the docs cannot drift from the API. Each block is one module importing what it uses the way
// an app does (`graviton`, `graviton/memory`, `effect/Layer`, ...). A block that is on purpose
// not a whole program is fenced ```ts fragment and skipped (keep those rare).
//
//   node scripts/check-doc-snippets.mjs [--project <dir>]
//
// --project: a project where `graviton` and its peers are installed (the package test's
// consumer project); by default this repository, where `graviton` resolves to its own dist/
// by self-reference (run `npm run build` first). Errors point at the Markdown line.
import { spawnSync } from "node:child_process"
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname, join, relative, resolve } from "node:path"
import { fileURLToPath } from "node:url"

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..")
const at = process.argv.indexOf("--project")
const project = at < 0 ? root : resolve(process.argv[at + 1])
const outDir = join(project, ".doc-snippets")

const markdown = (dir) =>
  readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    return statSync(path).isDirectory() ? markdown(path) : name.endsWith(".md") ? [path] : []
  })

/** The ```ts blocks of a Markdown file, with the line of their opening fence. */
const blocks = (file) => {
  const found = []
  let open
  readFileSync(file, "utf8").split("\n").forEach((line, index) => {
    const fence = /^\s*```(.*)$/.exec(line)
    if (open === undefined && fence) {
      open = { info: fence[1].trim().split(/\s+/), line: index + 1, body: [] }
    } else if (open !== undefined && fence && fence[1].trim() === "") {
      if (["ts", "typescript"].includes(open.info[0]) && !open.info.includes("fragment")) found.push(open)
      open = undefined
    } else if (open !== undefined) {
      open.body.push(line)
    }
  })
  return found
}

rmSync(outDir, { recursive: true, force: true })
mkdirSync(outDir, { recursive: true })
const sources = new Map()
for (const file of [join(root, "README.md"), ...markdown(join(root, "docs"))]) {
  blocks(file).forEach((block, n) => {
    const name = `${relative(root, file).replace(/[^A-Za-z0-9]+/g, "_")}_${n + 1}.ts`
    // `export {}` keeps a block without imports a module of its own.
    writeFileSync(join(outDir, name), `${block.body.join("\n")}\nexport {}\n`)
    sources.set(name, { file: relative(root, file), line: block.line })
  })
}
writeFileSync(
  join(outDir, "tsconfig.json"),
  JSON.stringify({
    compilerOptions: {
      target: "ES2022",
      module: "Node16",
      moduleResolution: "Node16",
      lib: ["ES2022"],
      types: ["node"],
      strict: true,
      noEmit: true,
      skipLibCheck: true
    },
    include: ["*.ts"]
  })
)

const tsc = createRequire(join(project, "package.json")).resolve("typescript/bin/tsc")
const result = spawnSync(process.execPath, [tsc, "-p", join(outDir, "tsconfig.json"), "--pretty", "false"], { encoding: "utf8" })
// Points each error at the Markdown file and line the snippet came from.
const report = `${result.stdout}${result.stderr}`.replace(/^(?:.*[\\/])?([^\\/\s(]+\.ts)\((\d+),(\d+)\)/gm, (whole, name, line, column) => {
  const source = sources.get(name)
  return source === undefined ? whole : `${source.file}:${source.line + Number(line)}:${column}`
})
if (result.status !== 0) {
  console.error(`check-doc-snippets: ${sources.size} snippet(s), errors:\n${report}`)
  process.exit(1)
}
rmSync(outDir, { recursive: true, force: true })
console.log(`check-doc-snippets: ${sources.size} snippet(s) type-check against the package`)
