/**
 * The chunked (block-dedup) layout against restic 0.17.3, its peer among
 * deduplicating backup tools (issue 18). Two parts:
 *
 *   dedup.put.chunked-vs-restic-off   `graviton put --layout chunked FILE` (a CLI process, fresh home)
 *   dedup.put.chunked-vs-restic-auto  vs `restic backup FILE` into a fresh local repository
 *                                     (--compression off, and auto), same random file (1 GiB,
 *                                     BENCH_QUICK=1: 64 MiB), runs alternating the three, `sync`
 *                                     before each, MB/s over the whole process. restic encrypts and
 *                                     we do not, so the bar is 1.5x restic with compression off.
 *
 *   dedup.stored.*                    stored bytes after two versions of a real tree: a tar of this
 *                                     repository's node_modules (BENCH_DEDUP_TREE names another tree),
 *                                     then the same tree after a deterministic change (every 50th
 *                                     .js file gets a line in its middle, one package removed, 3 MiB
 *                                     of new files added), both tarred the same way (sorted, times
 *                                     and owners fixed), each stored as the same path, one after
 *                                     the other, in one graviton home and one restic repository
 *                                     (compression off). restic draws its chunker's polynomial
 *                                     per repository, so its bytes vary: 3 fresh repositories
 *                                     (BENCH_DEDUP_RESTIC_REPOS), the median one compared.
 *
 * What "stored" counts (bytes are deterministic: this part runs at full size even under BENCH_QUICK):
 * - ours: the sum of the file sizes under `<home>/blobs/blocks/` (one object per distinct block,
 *   raw bytes, no framing); metadata separately: `<home>/meta` (LevelDB: blob records with their
 *   manifests, block records) and anything else in the home.
 * - restic: the sum of the file sizes under `<repo>/data/` (pack files: each blob encrypted, +32
 *   bytes, plus each pack's encrypted header); metadata separately: index/, snapshots/, keys/,
 *   config. `restic stats --mode raw-data` gives the blobs' plaintext bytes, so chunking is
 *   compared without restic's per-blob overhead too.
 * Both also as allocated bytes (st_blocks), where file-system rounding shows.
 *
 *   chunker alone (`why`)             the build's Chunker over both tars at its defaults and at other
 *                                     block sizes, distinct blocks counted by sha256 without a store:
 *                                     whether block size explains a difference from restic.
 *
 * restic comes from scripts/install-restic.sh (built once into ~/.cache/graviton/restic); when it
 * cannot be built the comparisons print "restic unavailable" and only our figures. RESTIC_BIN
 * names another binary. BENCH_DEDUP_PARTS=throughput, stored or why (comma-separated) runs those parts.
 *
 * The chunker is whatever the build uses: its parameters (and id, when it exports one) are
 * printed first, so a run after a chunker change reports the new one.
 */
import * as Either from "effect/Either"
import { spawn, spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as Chunker from "../src/blobs/Chunker.js"
import * as Bench from "./harness.js"

const MiB = 1024 * 1024
const root = path.join(path.dirname(fileURLToPath(import.meta.url)), "..")
const size = Bench.size(1024 * MiB, 64 * MiB)
const runs = Bench.size(5, 3)
const label = `${size / MiB}MiB`
/** Fresh restic repositories for the stored-bytes comparison (its chunker differs per repository). */
const resticRepos = Math.max(1, Number(process.env.BENCH_DEDUP_RESTIC_REPOS ?? 3))
const parts = (process.env.BENCH_DEDUP_PARTS ?? "throughput,stored,why").split(",")
const bin = Bench.cliBin()
const work = fs.mkdtempSync(path.join(os.tmpdir(), "graviton-bench-dedup-"))
const RESTIC_VERSION = "v0.17.3"

// ---------------------------------------------------------------- processes

interface Exit {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

const run = (command: string, args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = {}): Promise<Exit> =>
  new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (d) => (stdout += d))
    child.stderr.on("data", (d) => (stderr += d))
    child.on("error", reject)
    child.on("close", (code) => resolve({ code, stdout, stderr }))
  })

const ok = async (command: string, args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = {}): Promise<Exit> => {
  const exit = await run(command, args, env)
  if (exit.code !== 0) throw new Error(`${path.basename(command)} ${args.join(" ")} exited ${exit.code}: ${exit.stderr.slice(-2000)}`)
  return exit
}

/** Times `work` after flushing dirty pages, so earlier runs' writeback does not land on it. */
const timed = (work: () => Promise<unknown>): Promise<number> => {
  spawnSync("sync")
  return Bench.time(work)
}

// ---------------------------------------------------------------- restic

/** The restic binary, built by scripts/install-restic.sh when missing; undefined when it cannot be had. */
const findRestic = (): string | undefined => {
  if (process.env.RESTIC_BIN !== undefined) return process.env.RESTIC_BIN
  const cache = process.env.GRAVITON_CACHE ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), ".cache"), "graviton")
  const binary = path.join(cache, "restic", RESTIC_VERSION, "restic")
  if (!fs.existsSync(binary)) spawnSync("bash", [path.join(root, "scripts", "install-restic.sh")], { stdio: "inherit" })
  return fs.existsSync(binary) ? binary : undefined
}

const restic = findRestic()
// restic wants a password (it always encrypts); its cache would only add writes elsewhere.
const resticEnv = { RESTIC_PASSWORD: "graviton-bench", RESTIC_CACHE_DIR: path.join(work, "restic-cache") }
let repos = 0

/** A fresh repository (format 2, which supports compression); not timed. */
const resticInit = async (): Promise<string> => {
  const repo = path.join(work, `repo-${repos++}`)
  await ok(restic!, ["init", "--repo", repo, "--repository-version", "2", "--quiet"], resticEnv)
  return repo
}

const resticBackup = (repo: string, file: string, compression: "off" | "auto") =>
  ok(restic!, ["backup", "--repo", repo, "--compression", compression, "--host", "bench", "--quiet", file], resticEnv)

// ---------------------------------------------------------------- sizes on disk

interface Usage {
  readonly files: number
  /** Sum of the files' sizes. */
  readonly bytes: number
  /** Sum of what the file system allocated (st_blocks x 512). */
  readonly allocated: number
}

const usage = (dir: string): Usage => {
  let files = 0
  let bytes = 0
  let allocated = 0
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name)
      if (e.isDirectory()) walk(p)
      else if (e.isFile()) {
        const st = fs.statSync(p)
        files++
        bytes += st.size
        allocated += st.blocks * 512
      }
    }
  }
  if (fs.existsSync(dir)) walk(dir)
  return { files, bytes, allocated }
}

const minus = (a: Usage, b: Usage): Usage => ({ files: a.files - b.files, bytes: a.bytes - b.bytes, allocated: a.allocated - b.allocated })
const mb = (n: number) => Math.round(n / 1e4) / 100

// ---------------------------------------------------------------- the chunker in the build

/** The build's default chunker: its bounds, and its id where the module names one (`CURRENT`, as once FastCDC 2020 lands). */
const describeChunker = (): string => {
  const exported = Chunker as unknown as Record<string, unknown>
  const name = ["CURRENT", "CHUNKER_ID", "ID"].find((k) => typeof exported[k] === "string")
  const d = Chunker.defaults
  return `chunker ${name === undefined ? "main's FastCDC-2016-like gear chunker (no id exported)" : String(exported[name])}, ` +
    `min ${d.min} / avg ${d.avg} / max ${d.max}`
}

// ---------------------------------------------------------------- part (a): throughput

const throughput = async () => {
  const input = path.join(work, "input.bin")
  Bench.randomFile(input, size)
  const ours = async () => {
    const home = path.join(work, `home-${repos++}`)
    const seconds = await timed(() => ok(process.execPath, [bin, "put", "--layout", "chunked", input], { GRAVITON_HOME: home, GRAVITON_NO_PROGRESS: "1" }))
    fs.rmSync(home, { recursive: true, force: true })
    return Bench.mbps(size, seconds)
  }
  const theirs = (compression: "off" | "auto") => async () => {
    const repo = await resticInit()
    const seconds = await timed(() => resticBackup(repo, input, compression))
    fs.rmSync(repo, { recursive: true, force: true })
    return Bench.mbps(size, seconds)
  }
  if (restic === undefined) {
    const figures: Array<number> = []
    for (let i = 0; i < runs; i++) figures.push(await ours())
    Bench.single(`dedup.put.chunked.cli.${label}`, "MB/s", Bench.median(figures), true)
    console.log(`  restic unavailable (scripts/install-restic.sh could not build it): no comparison; ours ${Bench.median(figures).toFixed(1)} MB/s`)
    return
  }
  // Warm-up, then the three alternated, each run's order rotated so drift hits all of them.
  await ours()
  await theirs("off")()
  const sides = [ours, theirs("off"), theirs("auto")]
  const figures: Array<Array<number>> = [[], [], []]
  for (let i = 0; i < runs; i++) {
    for (let j = 0; j < 3; j++) {
      const k = (i + j) % 3
      figures[k]!.push(await sides[k]!())
    }
  }
  const [o, off, auto] = figures as [Array<number>, Array<number>, Array<number>]
  const target = Bench.summarize({
    name: `dedup.put.chunked-vs-restic-off.${label}`,
    unit: "MB/s",
    baselineName: `restic ${RESTIC_VERSION} backup --compression off (fresh repository)`,
    higherIsBetter: true
  }, o, off)
  Bench.summarize({
    name: `dedup.put.chunked-vs-restic-auto.${label}`,
    unit: "MB/s",
    baselineName: `restic ${RESTIC_VERSION} backup --compression auto (fresh repository)`,
    higherIsBetter: true
  }, o, auto)
  console.log(`  target: >= 1.5x restic with compression off: ${target.ratio >= 1.5 ? "met" : "not met"} (${target.ratio.toFixed(2)}x)`)
}

// ---------------------------------------------------------------- part (b): dedup on a real tree

/** Deterministic pseudo-random text (xorshift32): new source files that dedup against nothing. */
const pseudoText = (bytes: number, seed: number): Buffer => {
  let x = seed >>> 0 || 1
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789_ (){};=.,\n"
  const out = Buffer.allocUnsafe(bytes)
  for (let i = 0; i < bytes; i++) {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    out[i] = alphabet.charCodeAt(x % alphabet.length)
  }
  return out
}

/** Regular files under `dir`, sorted by path (byte order, as tar --sort=name), symbolic links not followed. */
const filesUnder = (dir: string): Array<string> => {
  const out: Array<string> = []
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name)
      if (e.isDirectory()) walk(p)
      else if (e.isFile()) out.push(p)
    }
  }
  walk(dir)
  return out.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
}

/**
 * The second version of the tree, in place: every 50th .js file gets a line in its middle (at a
 * line break), the top-level package whose size is nearest 2 MiB is removed, and 3 MiB of new
 * files are added as a new package. Returns what it did.
 */
const change = (tree: string): string => {
  const js = filesUnder(tree).filter((f) => f.endsWith(".js"))
  let edited = 0
  for (let i = 49; i < js.length; i += 50) {
    const text = fs.readFileSync(js[i]!)
    const middle = text.indexOf(10, text.length >> 1)
    const at = middle < 0 ? text.length : middle + 1
    fs.writeFileSync(js[i]!, Buffer.concat([text.subarray(0, at), Buffer.from(`/* graviton-bench edit ${i} */\n`), text.subarray(at)]))
    edited++
  }
  const packages = fs.readdirSync(tree, { withFileTypes: true })
    .filter((e) => e.isDirectory() && !e.name.startsWith(".") && !e.name.startsWith("@"))
    .map((e) => ({ name: e.name, bytes: usage(path.join(tree, e.name)).bytes }))
    .sort((a, b) => Math.abs(a.bytes - 2 * MiB) - Math.abs(b.bytes - 2 * MiB) || (a.name < b.name ? -1 : 1))
  const removed = packages[0]!
  fs.rmSync(path.join(tree, removed.name), { recursive: true })
  const added = path.join(tree, "graviton-bench-added")
  fs.mkdirSync(added)
  for (let i = 0; i < 3; i++) fs.writeFileSync(path.join(added, `part${i}.js`), pseudoText(MiB, 1000 + i))
  return `${edited} of ${js.length} .js files edited, package ${removed.name} (${(removed.bytes / MiB).toFixed(2)} MiB) removed, 3 MiB added`
}

/** A tar of `dir` (named `name` inside) that depends only on the files' contents, names and modes. */
const tar = (parent: string, name: string, out: string) =>
  ok("tar", [
    "--sort=name",
    "--mtime=@0",
    "--owner=0",
    "--group=0",
    "--numeric-owner",
    "--format=gnu",
    "-C",
    parent,
    "-cf",
    out,
    name
  ])

interface Stored {
  readonly data: Usage
  readonly metadata: Usage
}

const oursStored = (home: string): Stored => {
  const data = usage(path.join(home, "blobs", "blocks"))
  return { data, metadata: minus(usage(home), data) }
}

const resticStored = (repo: string): Stored => {
  const data = usage(path.join(repo, "data"))
  return { data, metadata: minus(usage(repo), data) }
}

const resticRaw = async (repo: string) => {
  const out = await ok(restic!, ["stats", "--repo", repo, "--mode", "raw-data", "--json", "--quiet"], resticEnv)
  return JSON.parse(out.stdout) as { total_size: number; total_uncompressed_size?: number; total_blob_count: number }
}

/** The two tars of the tree (built once, by `versions`). */
const versions = async (): Promise<readonly [string, string]> => {
  const source = process.env.BENCH_DEDUP_TREE ?? fs.realpathSync(path.join(root, "node_modules"))
  const parent = path.join(work, "tree")
  const name = path.basename(source)
  fs.mkdirSync(parent)
  const v1 = path.join(work, "v1.tar")
  const v2 = path.join(work, "v2.tar")
  await tar(path.dirname(source), name, v1)
  await ok("cp", ["-a", source, path.join(parent, name)])
  const what = change(path.join(parent, name))
  await tar(parent, name, v2)
  fs.rmSync(parent, { recursive: true, force: true })
  const sizes = [fs.statSync(v1).size, fs.statSync(v2).size]
  console.log(`  tree ${source}: v1 tar ${mb(sizes[0]!)} MB; v2: ${what}; v2 tar ${mb(sizes[1]!)} MB`)
  return [v1, v2]
}

const stored = async ([v1, v2]: readonly [string, string]) => {

  // Both stores see the same path twice, as a backup of a changing file would.
  const file = path.join(work, "tree.tar")
  const home = path.join(work, "home-stored")
  const env = { GRAVITON_HOME: home, GRAVITON_NO_PROGRESS: "1" }
  const ourVersions: Array<Stored> = []
  for (const version of [v1, v2]) {
    fs.copyFileSync(version, file)
    await ok(process.execPath, [bin, "put", "--layout", "chunked", file], env)
    ourVersions.push(oursStored(home))
  }
  const report = (who: string, s: ReadonlyArray<Stored>) =>
    console.log(
      `  ${who}: data ${mb(s[0]!.data.bytes)} MB after v1 (${s[0]!.data.files} files), ${mb(s[1]!.data.bytes)} MB after v2 ` +
        `(${s[1]!.data.files} files; v2 added ${mb(s[1]!.data.bytes - s[0]!.data.bytes)} MB); allocated ${mb(s[1]!.data.allocated)} MB; ` +
        `metadata ${mb(s[1]!.metadata.bytes)} MB in ${s[1]!.metadata.files} files`
    )
  report("ours (blocks under blobs/blocks/)", ourVersions)
  const ours = ourVersions[1]!
  Bench.single("dedup.stored.chunked.metadataMB", "MB", mb(ours.metadata.bytes))
  if (restic === undefined) {
    Bench.single("dedup.stored.chunked.dataMB", "MB", mb(ours.data.bytes))
    console.log("  restic unavailable (scripts/install-restic.sh could not build it): no comparison")
    return
  }
  // restic draws its chunker's polynomial at random for each repository, so its boundaries, and its
  // stored bytes, differ from one repository to the next: several fresh ones, the median compared.
  const repoRuns: Array<{ readonly versions: ReadonlyArray<Stored>; readonly raw: Awaited<ReturnType<typeof resticRaw>> }> = []
  for (let i = 0; i < resticRepos; i++) {
    const repo = await resticInit()
    const versions: Array<Stored> = []
    for (const version of [v1, v2]) {
      fs.copyFileSync(version, file)
      await resticBackup(repo, file, "off")
      versions.push(resticStored(repo))
    }
    repoRuns.push({ versions, raw: await resticRaw(repo) })
    fs.rmSync(repo, { recursive: true, force: true })
  }
  repoRuns.sort((a, b) => a.versions[1]!.data.bytes - b.versions[1]!.data.bytes)
  console.log(
    `  restic data/ after both, ${resticRepos} fresh repositories (each its own chunker polynomial): ` +
      repoRuns.map((r) => `${mb(r.versions[1]!.data.bytes)} MB (ours ${(ours.data.bytes / r.versions[1]!.data.bytes).toFixed(3)}x)`).join(", ")
  )
  const { raw, versions: theirVersions } = repoRuns[Math.floor(repoRuns.length / 2)]!
  report("restic, the median repository (packs under data/, compression off)", theirVersions)
  const plain = raw.total_uncompressed_size ?? raw.total_size
  const theirs = theirVersions[1]!
  const line = (name: string, unit: string, o: number, b: number, baselineName: string) =>
    console.log(`BENCH ${JSON.stringify({ name, unit, ours: o, baseline: b, baselineName, ratio: Math.round((o / b) * 1000) / 1000, higherIsBetter: false })}`)
  line("dedup.stored.chunked-vs-restic-off", "MB", mb(ours.data.bytes), mb(theirs.data.bytes), `restic ${RESTIC_VERSION} repository data/ (compression off)`)
  line("dedup.stored.chunked-vs-restic-off.v2-added", "MB", mb(ours.data.bytes - ourVersions[0]!.data.bytes), mb(theirs.data.bytes - theirVersions[0]!.data.bytes), "restic: data/ growth from v2")
  line("dedup.stored.chunked-vs-restic-plaintext", "MB", mb(ours.data.bytes), mb(plain), "restic blobs' plaintext bytes (stats --mode raw-data)")
  line("dedup.stored.chunked-vs-restic-off.allocated", "MB", mb(ours.data.allocated), mb(theirs.data.allocated), "restic data/ allocated")
  line("dedup.stored.chunked-vs-restic-off.with-metadata", "MB", mb(ours.data.bytes + ours.metadata.bytes), mb(theirs.data.bytes + theirs.metadata.bytes), "restic whole repository")
  console.log(
    `  blocks: ours ${ours.data.files} (mean ${mb(ours.data.bytes / ours.data.files)} MB); restic ${raw.total_blob_count} blobs ` +
      `(${mb(plain)} MB plaintext, mean ${mb(plain / raw.total_blob_count)} MB; per-blob and pack overhead ${mb(theirs.data.bytes - plain)} MB)`
  )
  console.log(`  target: ours <= 1.0x restic's data/: ${ours.data.bytes <= theirs.data.bytes ? "met" : "not met"} (${(ours.data.bytes / theirs.data.bytes).toFixed(3)}x)`)
}

// ---------------------------------------------------------------- why: block sizes

/**
 * What the chunker alone would store for the two versions (distinct blocks by sha256, no store),
 * at the build's defaults and at other block sizes: where stored bytes differ from restic's, this
 * says whether the block size explains it (a whole block is stored again for any edit in it).
 */
const why = async ([v1, v2]: readonly [string, string]) => {
  const sets: ReadonlyArray<readonly [string, Chunker.ChunkerOptions]> = [
    ["the build's defaults", Chunker.defaults],
    ["restic's bounds (512 KiB / 1 MiB / 8 MiB)", { min: 512 * 1024, avg: MiB, max: 8 * MiB }],
    ["half size (128 KiB / 512 KiB / 2 MiB)", { min: 128 * 1024, avg: 512 * 1024, max: 2 * MiB }],
    ["quarter size (64 KiB / 256 KiB / 1 MiB)", { min: 64 * 1024, avg: 256 * 1024, max: MiB }]
  ]
  for (const [name, options] of sets) {
    const seen = new Set<string>()
    let bytes = 0
    let blocks = 0
    const after: Array<number> = []
    for (const file of [v1, v2]) {
      const chunker = Either.getOrThrow(Chunker.make(options))
      const take = (block: Uint8Array) => {
        blocks++
        const digest = createHash("sha256").update(block).digest("hex")
        if (!seen.has(digest)) {
          seen.add(digest)
          bytes += block.length
        }
      }
      for await (const piece of fs.createReadStream(file, { highWaterMark: MiB })) {
        for (const block of chunker.push(piece as Buffer)) take(block)
      }
      const last = chunker.flush()
      if (last !== undefined) take(last)
      after.push(bytes)
    }
    console.log(
      `  chunker alone, ${name}: ${mb(after[1]!)} MB distinct after both (v1 ${mb(after[0]!)} MB, v2 added ${mb(after[1]! - after[0]!)} MB); ` +
        `${seen.size} distinct of ${blocks} blocks, mean ${mb(after[1]! / seen.size)} MB`
    )
  }
}

// ---------------------------------------------------------------- run

console.log(`dedup: ${describeChunker()}; restic ${restic ?? "unavailable"}; work dir ${work}`)
try {
  if (parts.includes("throughput")) await throughput()
  if (parts.includes("stored") || parts.includes("why")) {
    const tars = await versions()
    if (parts.includes("stored")) await stored(tars)
    if (parts.includes("why")) await why(tars)
  }
} finally {
  fs.rmSync(work, { recursive: true, force: true })
}
