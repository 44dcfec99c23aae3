/**
 * The lifecycle (issue 17) on the embedded store (fs + LevelDB) and on
 * PostgreSQL, with small blocks (64 B / 256 B / 1 KiB, about 10 per blob):
 *
 * - time of `gc` with nothing to reclaim and of `check` without
 *   --read-data, in keys/s (every metadata key, replica entry and object),
 *   against a bare listing of the same keys through the raw driver in the
 *   same run (classic-level iterating the metadata plus a recursive readdir
 *   with an lstat per file; `pg` keyset pages over `kv`, `replicas` and
 *   `objects` joined to their sizes);
 * - time of `stats` (no baseline: the target is under 100 ms at any size);
 * - peak RSS of `graviton gc`, `graviton check` and `graviton stats`, each in
 *   its own process (the built CLI under GNU time), on a store of about 10k
 *   blocks and on the large one (targets: under 200 MiB at 1M blocks, and
 *   within 20% of the 10k-block figure).
 *
 * Sizes: 100k blobs (about 1M blocks) in a full run, 2k with BENCH_QUICK=1;
 * BENCH_GC_BLOBS=N sets the large store's size, BENCH_GC_STORES=embedded,pg
 * picks the stores. PostgreSQL: GRAVITON_TEST_PG_URL if set, else a
 * throwaway cluster (test/harness/pgCluster.ts).
 */
import { ClassicLevel } from "classic-level"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import { lstatSync, mkdtempSync, readdirSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Pg from "pg"
import * as CasBlobStore from "../src/blobs/CasBlobStore.js"
import * as Lifecycle from "../src/lifecycle/Lifecycle.js"
import { BlobStore } from "../src/ports/BlobStore.js"
import * as EmbeddedStore from "../src/stores/EmbeddedStore.js"
import * as PgStore from "../src/stores/PgStore.js"
import { startCluster } from "../test/harness/pgCluster.js"
import * as Bench from "./harness.js"

const LARGE = Number(process.env.BENCH_GC_BLOBS ?? Bench.size(100_000, 2_000))
/** About 10k blocks (the reference of the memory target). */
const SMALL = Bench.size(1_000, 300)
const STORES = (process.env.BENCH_GC_STORES ?? "embedded,pg").split(",").filter((s) => s.length > 0)
const BLOB_SIZE = 2_560
const layout = CasBlobStore.chunked({ min: 64, avg: 256, max: 1024 })

/** Distinct pseudo-random content per blob (a cheap xorshift), so that blocks rarely repeat. */
const content = (i: number): Uint8Array => {
  const out = new Uint8Array(BLOB_SIZE)
  let x = (i + 1) * 2654435761 >>> 0
  for (let j = 0; j < out.length; j++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    out[j] = x & 0xff
  }
  return out
}

/** One store under test: how to open it in-process, count its keys the raw way, and run the CLI on it. */
interface Subject {
  readonly name: string
  readonly layer: () => Layer.Layer<BlobStore | Lifecycle.Lifecycle, unknown>
  /** The bare listing: every key and object through the raw driver; resolves to how many. */
  readonly bare: () => Promise<number>
  readonly cliArgs: ReadonlyArray<string>
  readonly cliEnv: NodeJS.ProcessEnv
  readonly dispose: () => Promise<void>
}

const withLifecycle = <R>(store: Layer.Layer<R, unknown>) =>
  Layer.provideMerge(Lifecycle.layer() as Layer.Layer<Lifecycle.Lifecycle, unknown, R>, store) as Layer.Layer<BlobStore | Lifecycle.Lifecycle, unknown>

/** Counts every file under `dir`, recursively, with its size and time (lstat: what a listing with sizes costs). */
const countFiles = (dir: string): number => {
  let n = 0
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory()) {
      n += countFiles(join(dir, e.name))
    } else {
      lstatSync(join(dir, e.name))
      n++
    }
  }
  return n
}

const embedded = (blobs: number): Subject => {
  const home = mkdtempSync(join(tmpdir(), `graviton-bench-gc-${blobs}-`))
  return {
    name: "embedded",
    layer: () => withLifecycle(EmbeddedStore.layer({ home, layout })),
    bare: async () => {
      // Iterates every metadata key with classic-level (the store must be closed).
      const db = new ClassicLevel<string, Uint8Array>(join(home, "meta"), { keyEncoding: "utf8", valueEncoding: "view" })
      await db.open()
      let n = 0
      for await (const _ of db.iterator()) n++
      await db.close()
      return n + countFiles(join(home, "blobs"))
    },
    cliArgs: ["--store", "embedded", "--home", home],
    cliEnv: {},
    dispose: async () => rmSync(home, { recursive: true, force: true })
  }
}

/** A fresh database per store size on the server at `url`. */
const postgres = async (url: string, blobs: number): Promise<Subject> => {
  const database = `bench_gc_${blobs}_${process.pid}`
  const admin = new Pg.Client({ connectionString: url })
  await admin.connect()
  await admin.query(`CREATE DATABASE ${database}`)
  await admin.end()
  const u = new URL(url)
  u.pathname = `/${database}`
  const dbUrl = u.toString()
  const pool = new Pg.Pool({ connectionString: dbUrl, max: 1 })
  const PAGE = 5000
  /** Keyset pages of one ordered listing, counted. */
  const pages = async (query: string, after: (row: Record<string, unknown>) => ReadonlyArray<unknown>, start: ReadonlyArray<unknown>) => {
    let n = 0
    let from = start
    for (;;) {
      const { rows } = await pool.query(query, [...from, PAGE])
      n += rows.length
      if (rows.length < PAGE) return n
      from = after(rows[rows.length - 1]!)
    }
  }
  return {
    name: "pg",
    layer: () => withLifecycle(PgStore.layer({ url: Redacted.make(dbUrl), migrate: true, poolSize: 4, layout })),
    bare: async () =>
      (await pages("SELECT key, value FROM kv WHERE key > $1 ORDER BY key LIMIT $2", (r) => [r.key], [""])) +
      (await pages(
        "SELECT blob_key, locator FROM replicas WHERE (blob_key, locator) > ($1, $2) ORDER BY blob_key, locator LIMIT $3",
        (r) => [r.blob_key, r.locator],
        ["", ""]
      )) +
      (await pages(
        `SELECT o.path, c.size, o.last_modified FROM objects o JOIN object_contents c ON c.id = o.content_id
         WHERE o.scheme = 'pg' AND o.bucket = 'blobs' AND o.path > $1 ORDER BY o.path LIMIT $2`,
        (r) => [r.path],
        [""]
      )),
    cliArgs: ["--store", "pg"],
    cliEnv: { GRAVITON_PG_URL: dbUrl },
    dispose: async () => {
      await pool.end()
      const again = new Pg.Client({ connectionString: url })
      await again.connect()
      await again.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`)
      await again.end()
    }
  }
}

const fill = async (s: Subject, blobs: number) => {
  const rt = ManagedRuntime.make(s.layer())
  try {
    await rt.runPromise(Effect.gen(function*() {
      const store = yield* BlobStore
      yield* Effect.forEach(
        Array.from({ length: blobs }, (_, i) => i),
        (i) => Stream.run(Stream.make(content(i)), store.put()),
        { concurrency: 8, discard: true }
      )
    }))
  } finally {
    await rt.dispose()
  }
}

/** Seconds of one lifecycle call in a freshly opened store (the opening is not timed). */
const timed = async (s: Subject, run: (lc: Lifecycle.Lifecycle["Type"]) => Effect.Effect<unknown, unknown>) => {
  const rt = ManagedRuntime.make(s.layer())
  try {
    const lc = await rt.runPromise(Lifecycle.Lifecycle)
    return await Bench.time(() => rt.runPromise(run(lc)))
  } finally {
    await rt.dispose()
  }
}

const cli = Bench.cliBin()
const rss = (s: Subject, command: string) => Bench.peakRssMiB(process.execPath, [cli, ...s.cliArgs, command, "--json"], s.cliEnv)

const label = (n: number) => (n >= 1000 ? `${n / 1000}k` : String(n))

const main = async () => {
  const given = process.env.GRAVITON_TEST_PG_URL
  const server = STORES.includes("pg") && given === undefined ? await startCluster() : undefined
  const url = given ?? server?.url
  const open = (name: string, blobs: number) => (name === "pg" ? postgres(url!, blobs) : Promise.resolve(embedded(blobs)))
  try {
    for (const name of STORES) {
      // The 10k-block reference of the memory target.
      const small = await open(name, SMALL)
      const smallRss: Record<string, number> = {}
      try {
        await fill(small, SMALL)
        for (const c of ["gc", "check", "stats"]) smallRss[c] = await rss(small, c)
      } finally {
        await small.dispose()
      }
      const s = await open(name, LARGE)
      try {
        const filling = await Bench.time(() => fill(s, LARGE))
        const total = await s.bare()
        console.log(`  ${name}, ${LARGE} blobs: ${total} keys and objects (filled in ${filling.toFixed(0)} s)`)
        const bare = async () => total / await Bench.time(s.bare)
        for (const [command, run] of [["gc", (lc: Lifecycle.Lifecycle["Type"]) => lc.gc()], ["check", (lc: Lifecycle.Lifecycle["Type"]) => lc.check()]] as const) {
          await Bench.compare({
            name: `${command}.${name}.${label(LARGE)}blobs${command === "gc" ? ".nothingToReclaim" : ""}`,
            unit: "keys/s",
            baselineName: name === "pg" ? "pg keyset pages over kv, replicas, objects" : "classic-level iterator + readdir/lstat",
            higherIsBetter: true,
            runs: 3,
            noWarmup: !Bench.quick,
            ours: async () => total / await timed(s, run),
            baseline: bare
          })
        }
        const statsTimes: Array<number> = []
        for (let i = 0; i < 3; i++) statsTimes.push(await timed(s, (lc) => lc.stats))
        Bench.single(`stats.${name}.${label(LARGE)}blobs`, "ms", Bench.median(statsTimes) * 1000)
        for (const c of ["gc", "check", "stats"]) {
          const peak = await rss(s, c)
          Bench.single(`${c}.${name}.${label(LARGE)}blobs.peakRss`, "MiB", peak)
          Bench.single(`${c}.${name}.${label(SMALL)}blobs.peakRss`, "MiB", smallRss[c]!)
          console.log(`  ${c} peak RSS: ${peak.toFixed(0)} MiB at ${label(LARGE)} blobs, ${smallRss[c]!.toFixed(0)} MiB at ${label(SMALL)} (x${(peak / smallRss[c]!).toFixed(2)})`)
        }
      } finally {
        await s.dispose()
      }
    }
  } finally {
    await server?.stop()
  }
}

main().catch((e) => {
  console.error(e)
  process.exitCode = 1
})
