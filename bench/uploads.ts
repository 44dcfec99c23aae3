/**
 * Resumable uploads (uploads/Uploads) against a single streamed put on the
 * same store, in one run:
 *
 *   uploads.<store>.<size>           Uploads with 4 spans in flight (begin, writes, complete)
 *                                    vs BlobStore.put of the same file, one stream
 *   uploads.<store>.<size>.resume    a `graviton upload` process (one span in flight)
 *                                    SIGKILLed at 50%, then resumed: bytes the resume
 *                                    sent vs the bound "bytes not yet sent at the kill
 *                                    + one part"; `.resume.parallel4` the same with 4
 *                                    spans in flight, bound "+ one part per span"
 *
 * Stores: embedded (fs + LevelDB, a fresh home per run so that nothing
 * deduplicates) and S3 (native multipart parts, on the harness's moto or
 * GRAVITON_TEST_S3_ENDPOINT, a fresh key prefix per run). Sizes: 1 GiB (BENCH_QUICK=1: 64 MiB).
 * BENCH_UPLOAD_STORES=embedded limits the stores; BENCH_UPLOAD_PARTS=resume
 * (or throughput) runs only one of the two measurements.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Stream from "effect/Stream"
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import * as EmbeddedStore from "../src/stores/EmbeddedStore.js"
import { readPool, readRange, spansToSend } from "../src/cli/commands/upload.js"
import * as Io from "../src/cli/io.js"
import * as RangeSet from "../src/core/RangeSet.js"
import { BlobStore } from "../src/ports/BlobStore.js"
import { Uploads } from "../src/uploads/Uploads.js"
import * as UploadsModule from "../src/uploads/Uploads.js"
import * as MemoryLayers from "../src/backends/memory/MemoryLayers.js"
import * as S3Layers from "../src/backends/s3/S3Layers.js"
import * as Events from "../src/kit/Events.js"
import * as Metrics from "../src/kit/Metrics.js"
import * as Harness from "../test/harness/s3.js"
import * as Bench from "./harness.js"

const MiB = 1024 * 1024
const size = Bench.size(1024 * MiB, 64 * MiB)
const label = `${size / MiB}MiB`
const PARALLEL = 4
const bin = Bench.cliBin()
const work = fs.mkdtempSync(path.join(os.tmpdir(), "graviton-bench-uploads-"))
const stores = (process.env.BENCH_UPLOAD_STORES ?? "embedded,s3").split(",")
/** BENCH_UPLOAD_PARTS=throughput or =resume runs only that half. */
const parts = (process.env.BENCH_UPLOAD_PARTS ?? "throughput,resume").split(",")

const input = path.join(work, "input.bin")
Bench.randomFile(input, size)

/** One upload through Uploads: spans cut at the staging's segments, PARALLEL at a time. */
const viaUploads = Effect.gen(function*() {
  const uploads = yield* Uploads
  const handle = yield* Effect.promise(() => fsp.open(input, "r"))
  try {
    const id = yield* uploads.begin({ size })
    const status = yield* uploads.status(id)
    const pool = readPool(PARALLEL, status.segmentSize)
    yield* Effect.forEach(
      spansToSend(RangeSet.missing(RangeSet.empty, size), status.segmentSize),
      (span) => uploads.write(id, span.start, readRange(handle, input, span.start, span.end, pool)),
      { concurrency: PARALLEL, discard: true }
    )
    return yield* uploads.complete(id)
  } finally {
    yield* Effect.promise(() => handle.close())
  }
})

/** One streamed put of the whole file. */
const viaPut = Effect.scoped(Effect.gen(function*() {
  const file = yield* Io.fileInput(input)
  return yield* Stream.run(file.stream, (yield* BlobStore).put())
}))

/**
 * Runs `effect` on a store built fresh for this run; returns MB/s of the work alone (the layer is
 * built first). Each run starts with no dirty pages (`sync`) and its home is removed afterwards:
 * otherwise the kernel's writeback of earlier runs' gigabytes lands on whichever side runs next.
 */
const timed = async <E>(
  layer: Layer.Layer<Uploads | BlobStore, E>,
  effect: Effect.Effect<unknown, unknown, Uploads | BlobStore>,
  home?: string
) => {
  const runtime = ManagedRuntime.make(layer)
  try {
    await runtime.runPromise(Effect.void)
    spawnSync("sync")
    const seconds = await Bench.time(() => runtime.runPromise(effect))
    return Bench.mbps(size, seconds)
  } finally {
    await runtime.dispose()
    if (home !== undefined) await fsp.rm(home, { recursive: true, force: true })
  }
}

let homes = 0
const freshHome = () => {
  const home = path.join(work, `home-${homes++}`)
  return home
}
/** Uploads on a fresh embedded home, for one timed run. */
const onEmbedded = (effect: Effect.Effect<unknown, unknown, Uploads | BlobStore>) => {
  const home = freshHome()
  return timed(UploadsModule.layer().pipe(Layer.provideMerge(EmbeddedStore.layer({ home }))), effect, home)
}

/** Kills `graviton upload` once half the file has landed, resumes it, and reports the bytes sent by each. */
const killAndResume = (env: Record<string, string>, parallel: number) =>
  new Promise<{ sentBeforeKill: number; landedAtKill: number; resumeSent: number; resumed: number; segment: number }>((resolve, reject) => {
    const home = freshHome()
    const fullEnv = { ...process.env, GRAVITON_HOME: home, GRAVITON_NO_PROGRESS: "1", ...env }
    const child = spawn(process.execPath, [bin, "upload", input, "--verbose", "--parallel", String(parallel)], {
      env: fullEnv,
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stderr = ""
    let landed = 0
    let sent = 0
    let segment = 0
    let killed = false
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString()
      if (killed) return
      landed = 0
      for (const m of stderr.matchAll(/stored \[(\d+), (\d+)\) \(sent (\d+) bytes\)/g)) {
        landed += Number(m[2]) - Number(m[1])
        segment = Math.max(segment, Number(m[2]) - Number(m[1]))
        sent = Math.max(sent, Number(m[3]))
      }
      if (landed >= size / 2) {
        killed = true
        child.kill("SIGKILL")
      }
    })
    child.on("error", reject)
    child.on("close", () => {
      const id = /upload ([0-9a-f]{32})/.exec(stderr)?.[1]
      if (!killed || id === undefined) return reject(new Error(`upload not killed at 50%: ${stderr}`))
      const resumed = spawnSync(process.execPath, [bin, "upload", input, "--resume", id, "--json", "--parallel", String(parallel)], {
        env: fullEnv,
        encoding: "utf8"
      })
      if (resumed.status !== 0) return reject(new Error(`resume failed: ${resumed.stderr}`))
      const out = JSON.parse(resumed.stdout) as { sentBytes: number; resumedBytes: number }
      resolve({ sentBeforeKill: sent, landedAtKill: landed, resumeSent: out.sentBytes, resumed: out.resumedBytes, segment })
    })
  })

/**
 * The resume figures with `parallel` spans in flight. A killed writer loses the parts it had in
 * flight (read from the file, not yet stored), so the bound is the bytes not sent before the
 * kill plus one part per span in flight: with one span, exactly the issue's "missing half plus one part".
 */
const resumeFigures = async (store: string, env: Record<string, string>, parallel: number) => {
  const r = await killAndResume(env, parallel)
  const bound = size - r.sentBeforeKill + parallel * r.segment
  const suffix = parallel === 1 ? "" : `.parallel${parallel}`
  console.log(
    `BENCH ${JSON.stringify({
      name: `uploads.${store}.${label}.resume${suffix}.sentMiB`,
      unit: "MiB",
      ours: Math.round((r.resumeSent / MiB) * 10) / 10,
      baseline: Math.round((bound / MiB) * 10) / 10,
      baselineName: parallel === 1
        ? "bytes not sent before the kill + one part"
        : `bytes not sent before the kill + ${parallel} parts (one per span in flight)`,
      ratio: Math.round((r.resumeSent / bound) * 1000) / 1000,
      higherIsBetter: false
    })}`
  )
  console.log(
    `  ${store}, ${parallel} in flight: killed after ${(r.sentBeforeKill / MiB).toFixed(1)} MiB sent (${(r.landedAtKill / MiB).toFixed(1)} MiB stored); ` +
      `resume found ${(r.resumed / MiB).toFixed(1)} MiB stored and sent ${(r.resumeSent / MiB).toFixed(1)} MiB; ` +
      `lost in flight ${((r.sentBeforeKill - r.resumed) / MiB).toFixed(1)} MiB (parts of ${(r.segment / MiB).toFixed(0)} MiB)`
  )
}

const main = async () => {
  console.log(`uploads benchmark: ${label}, ${PARALLEL} spans in flight, work dir ${work}`)
  if (stores.includes("embedded")) {
    if (parts.includes("throughput")) await Bench.compare({
      name: `uploads.embedded.${label}`,
      unit: "MB/s",
      baselineName: "BlobStore.put, one stream",
      higherIsBetter: true,
      // A run takes seconds but its time spreads widely here (writeback, page cache): more runs, a steadier median.
      runs: 5,
      ours: () => onEmbedded(viaUploads),
      baseline: () => onEmbedded(viaPut)
    })
    if (parts.includes("resume")) {
      for (const parallel of [1, PARALLEL]) await resumeFigures("embedded", { GRAVITON_STORE: "embedded" }, parallel)
    }
  }
  if (stores.includes("s3")) await s3Figures()
}

/** The same comparisons on an S3 server of the test harness (moto unless GRAVITON_TEST_S3_ENDPOINT is set). */
const s3Figures = async () => {
  const candidate = Harness.available().find((c) => c.name === "env" || c.name === "moto")
  if (candidate === undefined) {
    console.log("  s3: skipped (no S3 server that lists multipart parts: moto or GRAVITON_TEST_S3_ENDPOINT)")
    return
  }
  try {
    const running = await Harness.server(candidate)
    const place = await Harness.prepare(running, Harness.freshBucket("bench-uploads"))
    const PART = 8 * MiB
    let runs = 0
    // A fresh key prefix per run, so that nothing deduplicates; records and ranges in memory.
    const s3 = () =>
      UploadsModule.layer().pipe(
        Layer.provideMerge(S3Layers.live({
          ...Harness.clientOptions(candidate, running, { ...place, prefix: `${place.prefix}run-${runs++}/` }),
          partSize: PART,
          concurrency: PARALLEL
        })),
        Layer.provideMerge(Layer.mergeAll(MemoryLayers.metadata, Metrics.layer, Events.layer))
      )
    console.log(`  s3 on ${candidate.name} (${running.endpoint}), parts of ${PART / MiB} MiB`)
    if (parts.includes("throughput")) await Bench.compare({
      name: `uploads.s3.${label}`,
      unit: "MB/s",
      baselineName: "S3BlobStore.put, one stream",
      higherIsBetter: true,
      // Both end in the server assembling and copying the object (on moto 4-5.5 s of a 6-7 s
      // run at 512 MiB), whose time varies more than anything else: more runs, a steadier median.
      runs: 7,
      ours: () => timed(s3(), viaUploads),
      baseline: () => timed(s3(), viaPut)
    })
    if (parts.includes("resume")) {
      for (const parallel of [1, PARALLEL]) {
        await resumeFigures("s3", Harness.cliEnv(running, place, { prefix: `resume-${parallel}/`, partSize: PART }), parallel)
      }
    }
  } finally {
    await Harness.stopAll()
  }
}

main().finally(() => fs.rmSync(work, { recursive: true, force: true }))
