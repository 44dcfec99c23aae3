/**
 * The lifecycle on the embedded store (fs + LevelDB) with small blocks
 * (64 B / 256 B / 1 KiB, about 10 per blob): time of `gc` with nothing to
 * reclaim and of `check` without --read-data, in keys/s (blob and block
 * records plus their objects), against a bare listing of the same keys
 * through the raw drivers (classic-level iterating the metadata, a
 * recursive readdir with an lstat per file, since a listing gives sizes and
 * times) in the same run; and the time of
 * `stats` (no baseline). 100k blobs in a full run, 2k with BENCH_QUICK=1.
 *
 * Not measured here yet: PostgreSQL, and peak RSS per command (the issue's
 * targets); see docs/operations.md.
 */
import { ClassicLevel } from "classic-level"
import * as Effect from "effect/Effect"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Stream from "effect/Stream"
import { lstatSync, mkdtempSync, readdirSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as CasBlobStore from "../src/blobs/CasBlobStore.js"
import { BlobStore } from "../src/ports/BlobStore.js"
import * as Lifecycle from "../src/lifecycle/Lifecycle.js"
import * as EmbeddedStore from "../src/stores/EmbeddedStore.js"
import * as Bench from "./harness.js"

const BLOBS = Bench.size(100_000, 2_000)
const BLOB_SIZE = 2_560
const layout = CasBlobStore.chunked({ min: 64, avg: 256, max: 1024 })

const home = mkdtempSync(join(tmpdir(), "graviton-bench-gc-"))

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

const storeRuntime = () => ManagedRuntime.make(EmbeddedStore.layer({ home, layout }))

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

/** Iterates every metadata key with classic-level (the store must be closed). */
const countKeys = async (): Promise<number> => {
  const db = new ClassicLevel<string, Uint8Array>(join(home, "meta"), { keyEncoding: "utf8", valueEncoding: "view" })
  await db.open()
  let n = 0
  for await (const _ of db.keys()) n++
  await db.close()
  return n
}

const main = async () => {
  const fill = storeRuntime()
  await fill.runPromise(Effect.gen(function*() {
    const store = yield* BlobStore
    yield* Effect.forEach(
      Array.from({ length: BLOBS }, (_, i) => i),
      (i) => Stream.run(Stream.make(content(i)), store.put()),
      { concurrency: 8, discard: true }
    )
  }))
  await fill.dispose()
  const keys = await countKeys()
  const objects = countFiles(join(home, "blobs"))
  const total = keys + objects
  console.log(`  ${BLOBS} blobs: ${keys} metadata keys, ${objects} objects`)

  const bare = async () => total / await Bench.time(async () => {
    await countKeys()
    countFiles(join(home, "blobs"))
  })
  const withStore = async (run: (lc: Lifecycle.Lifecycle["Type"]) => Effect.Effect<unknown, unknown>) => {
    const rt = storeRuntime()
    try {
      // The store's opening is not timed: the bare listing opens LevelDB inside its time, which favours ours slightly less than it costs.
      const lc = await rt.runPromise(Lifecycle.make())
      return await Bench.time(() => rt.runPromise(run(lc)))
    } finally {
      await rt.dispose()
    }
  }
  const label = BLOBS >= 1000 ? `${BLOBS / 1000}k` : String(BLOBS)
  await Bench.compare({
    name: `gc.embedded.${label}blobs.nothingToReclaim`,
    unit: "keys/s",
    baselineName: "classic-level iterator + readdir/lstat",
    higherIsBetter: true,
    ours: async () => total / await withStore((lc) => lc.gc()),
    baseline: bare
  })
  await Bench.compare({
    name: `check.embedded.${label}blobs`,
    unit: "keys/s",
    baselineName: "classic-level iterator + readdir/lstat",
    higherIsBetter: true,
    ours: async () => total / await withStore((lc) => lc.check()),
    baseline: bare
  })
  const statsTimes: Array<number> = []
  for (let i = 0; i < 3; i++) statsTimes.push(await withStore((lc) => lc.stats))
  Bench.single(`stats.embedded.${label}blobs`, "ms", Bench.median(statsTimes) * 1000)
}

main().finally(() => rmSync(home, { recursive: true, force: true }))
