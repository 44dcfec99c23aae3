/**
 * S3 backend throughput and memory, all against one server in one run:
 *
 * - upload of a 256 MiB object through S3ObjectStore.put vs
 *   `@aws-sdk/lib-storage` Upload (same part size and concurrency) and vs the
 *   `opendal` S3 operator's writer (which sends one part at a time: compared
 *   with ours at concurrency 4, and at 1);
 * - download of it through S3ObjectStore.get vs a raw GetObject read to the
 *   end, and vs the `opendal` reader;
 * - the most bytes each uploader holds (pulled from the input, not yet
 *   acknowledged by S3), against partSize × (concurrency + 1);
 * - peak RSS of a process doing only one upload (ours, and lib-storage's),
 *   at 256 MiB and 1 GiB, against two floors: the same input made without being streamed, and the
 *   same input drained through an Effect stream (what streaming costs before
 *   any upload); the adapter's extra memory should stay near
 *   partSize × (concurrency + 1).
 *
 * The input arrives in 1 MiB pieces for every contender. The server is
 * GRAVITON_TEST_S3_ENDPOINT when set, else BENCH_S3_SERVER (moto | s3rver,
 * default s3rver), run in its own process by test/harness/s3.ts.
 * BENCH_QUICK=1 shrinks the object to 32 MiB. BENCH_S3_ONLY=download (comma-separated
 * substrings of the names; "held" and "rss" for the memory figures) runs only the matching comparisons.
 */
import * as S3 from "@aws-sdk/client-s3"
import { Upload } from "@aws-sdk/lib-storage"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import { spawnSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import { Readable } from "node:stream"
import * as S3Client from "../src/backends/s3/S3Client.js"
import * as S3ObjectStore from "../src/backends/s3/S3ObjectStore.js"
import * as BlobLocator from "../src/core/BlobLocator.js"
import { ImmutableObjectStore, MutableObjectStore } from "../src/ports/ObjectStore.js"
import * as Harness from "../test/harness/s3.js"
import * as Bench from "./harness.js"

/**
 * The OpenDAL peer is installed on demand (`npm run bench:s3` does it with
 * --no-save): its published optional dependencies name platform packages
 * that do not exist, which makes `npm ci` reject any lockfile listing it.
 */
interface OpendalOperator {
  // The 0.49.2 binding's WriteOptions has no concurrency field: its writer sends one part at a time.
  writer(path: string, options: { chunk: bigint }): Promise<{
    write(bytes: Uint8Array): Promise<unknown>
    close(): Promise<unknown>
  }>
  reader(path: string): Promise<{ createReadStream(): AsyncIterable<unknown> }>
}
const only = (process.env.BENCH_S3_ONLY ?? "").split(",").filter((x) => x.length > 0)
const wanted = (name: string): boolean => only.length === 0 || only.some((x) => name.includes(x))
const compare = async (c: Bench.Comparison): Promise<void> => {
  if (wanted(c.name)) await Bench.compare(c)
}

const opendalModule: string = "opendal"
const { Operator } = (await import(opendalModule).catch(() => {
  throw new Error("bench/s3.ts needs the opendal package: run `npm run bench:s3` (it installs opendal@0.49.2 without saving)")
})) as { Operator: new(scheme: string, options: Record<string, string>) => OpendalOperator }

const MiB = 1024 * 1024
const PART = 8 * MiB
const CONCURRENCY = 4
const PIECE = MiB

/** Deterministic content: a random 1 MiB block, each piece stamped with its index. */
const block = Buffer.from(Array.from({ length: PIECE }, (_, i) => (i * 2654435761) >>> 24))
const piece = (index: number): Buffer => {
  const b = Buffer.allocUnsafe(PIECE)
  block.copy(b)
  b.writeUInt32BE(index, 0)
  return b
}

interface Target {
  readonly endpoint: string
  readonly region: string
  readonly accessKeyId: string
  readonly secretAccessKey: string
  readonly bucket: string
  readonly prefix: string
}

const sdkClient = (t: Target) =>
  new S3.S3Client({
    endpoint: t.endpoint,
    region: t.region,
    forcePathStyle: true,
    credentials: { accessKeyId: t.accessKeyId, secretAccessKey: t.secretAccessKey },
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED"
  })

const storeLayer = (t: Target, payloadSigning: "auto" | "unsigned" = "auto", concurrency = CONCURRENCY) =>
  S3ObjectStore.layer.pipe(Layer.provideMerge(S3Client.layer({
    bucket: t.bucket,
    prefix: t.prefix,
    endpoint: t.endpoint,
    region: t.region,
    forcePathStyle: true,
    credentials: { accessKeyId: Redacted.make(t.accessKeyId), secretAccessKey: Redacted.make(t.secretAccessKey) },
    partSize: PART,
    concurrency,
    payloadSigning
  })))

type Runtime = ManagedRuntime.ManagedRuntime<MutableObjectStore | ImmutableObjectStore, unknown>

/** The pieces of an object of `size` bytes, made one at a time as they are pulled. */
function* generate(size: number): Generator<Buffer> {
  for (let i = 0; i * PIECE < size; i++) yield piece(i)
}

/** The three contenders' upload and download, each a function of (key, size). */
const contenders = (t: Target, runtime: Runtime) => {
  const client = sdkClient(t)
  const op = new Operator("s3", {
    bucket: t.bucket,
    root: `/${t.prefix}`,
    endpoint: t.endpoint,
    region: t.region,
    access_key_id: t.accessKeyId,
    secret_access_key: t.secretAccessKey,
    disable_config_load: "true",
    disable_ec2_metadata: "true",
    enable_virtual_host_style: "false"
  })
  return {
    client,
    oursUpload: (path: string, size: number, on: Runtime = runtime, input: IterableIterator<Buffer> = generate(size)) =>
      on.runPromise(Effect.flatMap(MutableObjectStore, (s) =>
        Stream.run(
          // One piece per pull, like a file or socket read.
          Stream.fromIteratorSucceed(input, 1),
          s.put(new BlobLocator.BlobLocator({ scheme: "s3", bucket: t.bucket, path }))
        ))),
    sdkUpload: (path: string, size: number, input: Iterable<Buffer> = generate(size)) =>
      new Upload({
        client,
        params: { Bucket: t.bucket, Key: t.prefix + path, Body: Readable.from(input) },
        partSize: PART,
        queueSize: CONCURRENCY
      }).done(),
    opendalUpload: async (path: string, size: number) => {
      const writer = await op.writer(path, { chunk: BigInt(PART) })
      for (const p of generate(size)) await writer.write(p)
      await writer.close()
    },
    oursDownload: (path: string, on: Runtime = runtime) =>
      on.runPromise(Effect.flatMap(ImmutableObjectStore, (s) =>
        Stream.runFold(s.get(new BlobLocator.BlobLocator({ scheme: "s3", bucket: t.bucket, path })), 0, (n, c) => n + c.length))),
    sdkDownload: async (path: string) => {
      const out = await client.send(new S3.GetObjectCommand({ Bucket: t.bucket, Key: t.prefix + path }))
      let n = 0
      for await (const c of out.Body as Readable) n += (c as Buffer).length
      return n
    },
    opendalDownload: async (path: string) => {
      const reader = await op.reader(path)
      let n = 0
      for await (const c of reader.createReadStream()) n += (c as Buffer).length
      return n
    }
  }
}

/** Child mode: one upload (or none) in a fresh process, for its peak RSS. */
const child = async (mode: string, target: Target, size: number) => {
  const runtime = ManagedRuntime.make(storeLayer(target))
  const c = contenders(target, runtime)
  if (mode === "ours") await c.oursUpload(`rss/ours`, size)
  if (mode === "sdk") await c.sdkUpload(`rss/sdk`, size)
  if (mode === "idle") {
    // The floor: load everything the others load, touch the network once, and make
    // (then drop) the same input pieces, without uploading them.
    await runtime.runPromise(Effect.flatMap(ImmutableObjectStore, (s) => s.head(new BlobLocator.BlobLocator({ scheme: "s3", bucket: target.bucket, path: "rss/none" }))))
    let sum = 0
    for (const p of generate(size)) {
      sum += p[0]!
      await new Promise((r) => setImmediate(r))
    }
    if (sum < 0) console.log(sum)
  }
  if (mode === "drain") {
    // The floor of a streamed put: the same input run as an Effect stream into a sink that
    // only counts. Chunks handed through an Effect stream are freed only by full GCs (see
    // docs/performance.md), which costs memory whoever consumes them.
    await runtime.runPromise(Effect.flatMap(ImmutableObjectStore, (s) => s.head(new BlobLocator.BlobLocator({ scheme: "s3", bucket: target.bucket, path: "rss/none" }))))
    const n = await runtime.runPromise(Stream.runFold(Stream.fromIteratorSucceed(generate(size), 1), 0, (a, p) => a + p.length))
    if (n !== size) throw new Error(`drained ${n} bytes, expected ${size}`)
  }
  await runtime.dispose()
  c.client.destroy()
}

/**
 * Most input bytes an upload had pulled but S3 had not yet acknowledged:
 * what the uploader itself holds (part buffers, pieces gathered, read-ahead),
 * free of the GC's timing, which decides when garbage leaves the RSS.
 */
const heldPeakMiB = async (client: S3.S3Client, size: number, upload: (input: Generator<Buffer>) => Promise<unknown>) => {
  let pulled = 0
  let acked = 0
  let peak = 0
  const name = "bench-acknowledged-bytes"
  client.middlewareStack.add((next, context) => async (args) => {
    const out = await next(args)
    const body = (args.input as { Body?: { byteLength?: number } }).Body
    if (context.commandName === "UploadPartCommand" || context.commandName === "PutObjectCommand") acked += body?.byteLength ?? 0
    return out
  }, { step: "initialize", name })
  function* counted(): Generator<Buffer> {
    for (const p of generate(size)) {
      pulled += p.length
      peak = Math.max(peak, pulled - acked)
      yield p
    }
  }
  try {
    await upload(counted())
  } finally {
    client.middlewareStack.remove(name)
  }
  if (acked !== size) throw new Error(`acknowledged ${acked} bytes, expected ${size}`)
  return peak / MiB
}

/** Peak RSS of one upload of `size` bytes (ours, lib-storage's) and of the two floors, each in a fresh process. */
const rssFigures = async (target: Target, size: number) => {
  const label = `${size / MiB}MiB`
  const self = fileURLToPath(import.meta.url)
  const rss = (mode: string) =>
    Bench.peakRssMiB(process.execPath, ["--import", "tsx", self, "--child", mode, JSON.stringify(target), String(size)])
  const idle = await rss("idle")
  const drained = await rss("drain")
  const ours = await rss("ours")
  const sdk = await rss("sdk")
  const bound = (PART * (CONCURRENCY + 1)) / MiB
  const line = (name: string, value: number, baseline: number, baselineName: string) =>
    console.log(`BENCH ${JSON.stringify({ name: `s3.upload.${label}.${name}`, unit: "MiB", ours: Math.round(value), baseline: Math.round(baseline), baselineName, ratio: Math.round((value / baseline) * 1000) / 1000, higherIsBetter: false })}`)
  line("peakRssMiB", ours, sdk, "lib-storage Upload")
  line("rssAboveFloorMiB", ours - idle, bound, "partSize × (concurrency + 1)")
  line("rssAboveStreamFloorMiB", ours - drained, bound, "partSize × (concurrency + 1), above the same input drained through an Effect stream")
  console.log(`  ${label} peak RSS: the same input drained through an Effect stream ${drained.toFixed(0)} MiB`)
  console.log(`  ${label} peak RSS: floor (same input, no upload) ${idle.toFixed(0)} MiB, ours ${ours.toFixed(0)} MiB, lib-storage ${sdk.toFixed(0)} MiB; bound above the floor ${bound} MiB`)
}

const main = async () => {
  const size = Bench.size(256 * MiB, 32 * MiB)
  const label = `${size / MiB}MiB`
  const chosen = process.env.GRAVITON_TEST_S3_ENDPOINT ? "env" : (process.env.BENCH_S3_SERVER ?? "s3rver")
  const server = Harness.candidate(chosen)
  if (server.skip !== undefined) throw new Error(`cannot use ${chosen}: ${server.skip}`)
  const running = await Harness.server(server)
  try {
    const place = await Harness.prepare(running, Harness.freshBucket("bench"))
    const target: Target = { ...running, bucket: place.bucket, prefix: place.prefix }
    console.log(`S3 benchmark on ${chosen} (${running.endpoint}), ${label}, parts of ${PART / MiB} MiB, concurrency ${CONCURRENCY}`)
    const runtime = ManagedRuntime.make(storeLayer(target))
    // OpenDAL never hashes payloads into signatures (UNSIGNED-PAYLOAD): compare it with ours doing the same.
    const unsigned = ManagedRuntime.make(storeLayer(target, "unsigned"))
    // OpenDAL's node writer uploads one part at a time: the like-for-like comparison runs ours so too.
    const unsignedSerial = ManagedRuntime.make(storeLayer(target, "unsigned", 1))
    const c = contenders(target, runtime)
    const mbps = async (run: () => Promise<unknown>) => Bench.mbps(size, await Bench.time(run))

    await compare({
      name: `s3.upload.${label}`,
      unit: "MB/s",
      baselineName: "lib-storage Upload",
      higherIsBetter: true,
      ours: () => mbps(() => c.oursUpload("up/ours", size)),
      baseline: () => mbps(() => c.sdkUpload("up/sdk", size))
    })
    await compare({
      name: `s3.upload.${label}.vsOpendal`,
      unit: "MB/s",
      baselineName: "opendal s3 writer (both UNSIGNED-PAYLOAD)",
      higherIsBetter: true,
      ours: () => mbps(() => c.oursUpload("up/ours", size, unsigned)),
      baseline: () => mbps(() => c.opendalUpload("up/opendal", size))
    })
    await compare({
      name: `s3.upload.${label}.vsOpendal.oneAtATime`,
      unit: "MB/s",
      baselineName: "opendal s3 writer (both UNSIGNED-PAYLOAD, one part in flight)",
      higherIsBetter: true,
      ours: () => mbps(() => c.oursUpload("up/ours", size, unsignedSerial)),
      baseline: () => mbps(() => c.opendalUpload("up/opendal", size))
    })
    // One object read by everyone, once the uploads' gigabytes are on disk (their writeback would land on the reads).
    await c.oursUpload("down/object", size)
    spawnSync("sync")
    const checked = (n: number) => {
      if (n !== size) throw new Error(`read ${n} bytes, expected ${size}`)
    }
    await compare({
      name: `s3.download.${label}`,
      unit: "MB/s",
      baselineName: "raw GetObject",
      higherIsBetter: true,
      // Reads are short and their times spread widely on a shared machine: more runs for a stable median.
      runs: Bench.quick ? 3 : 9,
      ours: () => mbps(async () => checked(await c.oursDownload("down/object"))),
      baseline: () => mbps(async () => checked(await c.sdkDownload("down/object")))
    })
    await compare({
      name: `s3.download.${label}.vsOpendal`,
      unit: "MB/s",
      baselineName: "opendal s3 reader",
      higherIsBetter: true,
      runs: Bench.quick ? 3 : 9,
      ours: () => mbps(async () => checked(await c.oursDownload("down/object"))),
      baseline: () => mbps(async () => checked(await c.opendalDownload("down/object")))
    })
    if (wanted("held")) {
      const ours = await heldPeakMiB(
        (await runtime.runPromise(S3Client.S3ClientInstance)).client,
        size,
        (input) => c.oursUpload("held/ours", size, runtime, input)
      )
      const sdk = await heldPeakMiB(c.client, size, (input) => c.sdkUpload("held/sdk", size, input))
      const bound = (PART * (CONCURRENCY + 1)) / MiB
      console.log(`BENCH ${JSON.stringify({ name: `s3.upload.${label}.heldMiB`, unit: "MiB", ours: Math.round(ours), baseline: bound, baselineName: "partSize × (concurrency + 1)", ratio: Math.round((ours / bound) * 1000) / 1000, higherIsBetter: false })}`)
      console.log(`  held during the upload (pulled, not yet acknowledged by S3): ours ${ours.toFixed(0)} MiB, lib-storage ${sdk.toFixed(0)} MiB; bound ${bound} MiB`)
    }
    await runtime.dispose()
    await unsigned.dispose()
    await unsignedSerial.dispose()
    c.client.destroy()

    // Peak RSS, each in a process of its own; at a second, 4x larger size too, to show it does not grow with the object.
    if (!wanted("rss")) return
    for (const bytes of Bench.quick ? [size] : [size, 4 * size]) await rssFigures(target, bytes)
  } finally {
    await Harness.stopAll()
  }
}

if (process.argv[2] === "--child") {
  await child(process.argv[3]!, JSON.parse(process.argv[4]!) as Target, Number(process.argv[5]))
} else {
  await main()
}
