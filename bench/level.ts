/**
 * The LevelDB KeyValueStore against raw classic-level, same run, same data
 * shape (100-byte values under `bench/<8 digits>`), each side on its own
 * fresh database with the same LevelDB options:
 *
 *   - 100k puts, batched (1000 per `commit` / `db.batch`) and single (awaited one by one)
 *   - 100k gets, sequential and from 64 concurrent workers
 *   - a full prefix scan of the 100k keys
 *
 * Figures are ops/s (entries/s for the scan). BENCH_QUICK=1 uses 10k keys.
 * The raw scan uses the adapter's iterator page size (64 KiB), so the scan
 * ratio measures the adapter rather than a setting; the raw gets are plain
 * `db.get` calls, while the adapter coalesces concurrent gets into
 * `getMany` (that is its own doing, and why it beats raw there).
 *
 * A second set of lines (`*.metrics`; skip with BENCH_LEVEL_METRICS=0)
 * measures the adapter with a MetricsRegistry present, as in the embedded
 * store, against the same raw baseline: the gap there is the cost of
 * recording a latency and a count per call (done synchronously, in the
 * fiber steps the call takes anyway: see LevelMetrics.observe).
 */
import { ClassicLevel } from "classic-level"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Stream from "effect/Stream"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as LevelConfig from "../src/backends/level/LevelConfig.js"
import * as LevelKeyValueStore from "../src/backends/level/LevelKeyValueStore.js"
import * as LevelLayers from "../src/backends/level/LevelLayers.js"
import { KeyValueStore, put } from "../src/ports/KeyValueStore.js"
import * as Metrics from "../src/kit/Metrics.js"
import * as Bench from "./harness.js"

const N = Bench.size(100_000, 10_000)
const BATCH = 1000
const CONCURRENCY = 64
const label = N >= 1000 ? `${N / 1000}k` : String(N)
const PREFIX = "bench/"

const keys = Array.from({ length: N }, (_, i) => `${PREFIX}${String(i).padStart(8, "0")}`)
const value = new Uint8Array(100).map((_, i) => (i * 31) & 0xff)

const root = mkdtempSync(join(tmpdir(), "graviton-bench-level-"))
const options = { cacheSize: LevelConfig.defaults.cacheSize, writeBufferSize: LevelConfig.defaults.writeBufferSize }

const raw = new ClassicLevel<string, Uint8Array>(join(root, "raw"), {
  keyEncoding: "utf8",
  valueEncoding: "view",
  ...options
})
await raw.open()

const adapter = (path: string, withMetrics: boolean) => {
  const live = LevelLayers.live({ path, namespaces: ["bench"], ...options })
  return ManagedRuntime.make(withMetrics ? live.pipe(Layer.provide(Metrics.layer)) : live)
}

const opsPerSecond = (count: number, seconds: number) => count / seconds

/** One run of `f` over the whole key set, as ops/s. */
const timed = (count: number, f: () => Promise<unknown>) => async () => opsPerSecond(count, await Bench.time(f))

// ---- raw classic-level

const rawBatched = timed(N, async () => {
  for (let i = 0; i < N; i += BATCH) {
    await raw.batch(keys.slice(i, i + BATCH).map((key) => ({ type: "put" as const, key, value })))
  }
})
const rawSingle = timed(N, async () => {
  for (const key of keys) await raw.put(key, value)
})
const rawGets = timed(N, async () => {
  for (const key of keys) if ((await raw.get(key)) === undefined) throw new Error(`missing ${key}`)
})
const rawConcurrentGets = timed(N, async () => {
  let next = 0
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < N) {
      const key = keys[next++]!
      if ((await raw.get(key)) === undefined) throw new Error(`missing ${key}`)
    }
  }))
})
const rawScan = timed(N, async () => {
  // The adapter's page size, so that the ratio measures the adapter and not a setting.
  const iterator = raw.iterator({ gte: PREFIX, lt: "bench0", highWaterMarkBytes: LevelKeyValueStore.PAGE_BYTES })
  let count = 0
  for (;;) {
    const page = await iterator.nextv(1000)
    if (page.length === 0) break
    count += page.length
  }
  await iterator.close()
  if (count !== N) throw new Error(`scanned ${count} of ${N}`)
})

// ---- the adapter

const suite = (runtime: ManagedRuntime.ManagedRuntime<KeyValueStore, unknown>) => {
  const run = <A, E>(effect: Effect.Effect<A, E, KeyValueStore>) => () => runtime.runPromise(effect)
  const batched = timed(
    N,
    run(Effect.flatMap(KeyValueStore, (kv) =>
      Effect.forEach(
        Array.from({ length: N / BATCH }, (_, b) => keys.slice(b * BATCH, (b + 1) * BATCH).map((k) => put(k, value))),
        (writes) => kv.commit([], writes),
        { discard: true }
      )))
  )
  const single = timed(N, run(Effect.flatMap(KeyValueStore, (kv) => Effect.forEach(keys, (k) => kv.put(k, value), { discard: true }))))
  const gets = timed(
    N,
    run(Effect.flatMap(KeyValueStore, (kv) =>
      Effect.forEach(keys, (k) =>
        Effect.flatMap(kv.get(k), (v) => (v._tag === "None" ? Effect.die(`missing ${k}`) : Effect.void)), { discard: true })))
  )
  // The same shape as the raw side: 64 workers pulling the next key from a shared index.
  const concurrentGets = timed(
    N,
    run(Effect.flatMap(KeyValueStore, (kv) =>
      Effect.suspend(() => {
        let next = 0
        const worker: Effect.Effect<void, unknown> = Effect.suspend(() => {
          if (next >= N) return Effect.void
          const key = keys[next++]!
          return Effect.flatMap(kv.get(key), (v) => (v._tag === "None" ? Effect.die(`missing ${key}`) : worker))
        })
        return Effect.all(Array.from({ length: CONCURRENCY }, () => worker), { concurrency: "unbounded", discard: true })
      })))
  )
  const scan = timed(
    N,
    run(Effect.flatMap(KeyValueStore, (kv) =>
      Effect.flatMap(Stream.runCount(kv.list(PREFIX)), (count) =>
        count === N ? Effect.void : Effect.die(`scanned ${count} of ${N}`))))
  )
  return { batched, single, gets, concurrentGets, scan }
}

const compareAll = async (ours: ReturnType<typeof suite>, suffix: string) => {
  // Eleven runs a side in a full run: the machines are shared and single runs swing by 2x.
  const base = { unit: "ops/s", baselineName: "raw classic-level", higherIsBetter: true, runs: Bench.quick ? 3 : 11 }
  await Bench.compare({ ...base, name: `level.put.batched.${label}${suffix}`, ours: ours.batched, baseline: rawBatched })
  await Bench.compare({ ...base, name: `level.put.single.${label}${suffix}`, ours: ours.single, baseline: rawSingle })
  await Bench.compare({ ...base, name: `level.get.sequential.${label}${suffix}`, ours: ours.gets, baseline: rawGets })
  await Bench.compare({
    ...base,
    name: `level.get.concurrent${CONCURRENCY}.${label}${suffix}`,
    ours: ours.concurrentGets,
    baseline: rawConcurrentGets
  })
  await Bench.compare({ ...base, name: `level.scan.${label}${suffix}`, ours: ours.scan, baseline: rawScan })
}

const plain = adapter(join(root, "adapter"), false)
const metered = adapter(join(root, "adapter-metrics"), true)
try {
  console.log(`LevelDB adapter vs raw classic-level, ${N} keys, 100-byte values`)
  await compareAll(suite(plain), "")
  if (process.env.BENCH_LEVEL_METRICS !== "0") {
    console.log("with a MetricsRegistry:")
    await compareAll(suite(metered), ".metrics")
  }
} finally {
  await plain.dispose()
  await metered.dispose()
  await raw.close()
  rmSync(root, { recursive: true, force: true })
}
