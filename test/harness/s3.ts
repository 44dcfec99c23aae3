/**
 * S3-compatible servers for the S3 tests, started by the tests themselves.
 *
 * Candidates, in order:
 * - `env`: GRAVITON_TEST_S3_ENDPOINT (real AWS S3, MinIO ...), with
 *   GRAVITON_TEST_S3_ACCESS_KEY_ID / _SECRET_ACCESS_KEY / _REGION, optionally
 *   GRAVITON_TEST_S3_BUCKET (an existing bucket; each suite then works under
 *   its own random prefix instead of creating a bucket) and
 *   GRAVITON_TEST_S3_UNSUPPORTED (comma-separated capability names the
 *   endpoint lacks, e.g. "sseC").
 * - `minio`: MinIO built by scripts/install-minio.sh, one server per test
 *   run started over TLS by minioGlobalSetup.ts (minio.ts), so that SSE-C is
 *   enforced; skipped with the reason where it is not installed.
 * - `minio-container`: a MinIO container started for the whole run by
 *   containersGlobalSetup.ts where a container runtime answers (see
 *   containers.ts); skipped with the probe's answer where none does.
 * - `moto`: moto_server from .venv-moto (scripts/install-moto.sh), on a
 *   random loopback port.
 * - `s3rver`: the npm package, in a child Node process run with
 *   --openssl-legacy-provider (its truncated ListObjectsV2 pages fail
 *   without it), on a random loopback port, data in a temp directory.
 *
 * A server is started once per process (one test file, or the benchmark), on
 * first use, and stopped by `stopAll()` (test files register it with
 * `afterAll` through test/backends/s3/fixtures.ts `useServers`) and, as a
 * safety net, when the process exits. Each suite gets a fresh bucket (or
 * prefix). This module does not import vitest, so benchmarks can use it.
 *
 * Every candidate carries a capability record: what the server really does,
 * as checked by test/backends/s3/S3Servers.test.ts. `matrix()` renders them.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as S3 from "@aws-sdk/client-s3"
import { type ChildProcess, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs"
import { createRequire } from "node:module"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import * as S3Client from "../../src/backends/s3/S3Client.js"
import type { Encryption, S3ClientOptions, S3Unsupported } from "../../src/backends/s3/S3Config.js"
import * as Retry from "../../src/kit/Retry.js"
import { type Capability, unsupported } from "../../src/testing/capabilities.js"
import { containerSkip, env as containerEnv } from "./containers.js"
import { env as minioEnv } from "./minio.js"

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..")

/** What a server lets the tests check. Absent or `true` = supported. */
export interface ServerCapabilities {
  /** AbortMultipartUpload and ListMultipartUploads work, so "no upload left behind" can be checked. */
  readonly multipartAbort: Capability
  /** SSE-S3 and SSE-KMS headers are stored and reported back by HEAD. */
  readonly sse: Capability
  /** SSE-C is enforced: an object written with a customer key cannot be read without it. */
  readonly sseC: Capability
  /** UploadPartCopy (multipart server-side copy). */
  readonly uploadPartCopy: Capability
  /** Copy sources with URL-encoded characters (spaces, non-ASCII) are decoded. */
  readonly encodedCopySource: Capability
  /** `If-None-Match: *` on PutObject and CompleteMultipartUpload refuses to replace an object. */
  readonly conditionalWrites: Capability
  /** Requests signed with unknown credentials are refused. */
  readonly authentication: Capability
  /** Parts below 5 MiB (but the last) are refused with EntityTooSmall, as on AWS. */
  readonly minPartSize: Capability
  /**
   * Plain S3 object semantics the port conformance suites assume: listings in
   * UTF-8 key order, `a` and `a/b` side by side, overwrites that replace an
   * object atomically, any valid key.
   */
  readonly keySemantics: Capability
}

/** Names of the capabilities, in matrix order. */
export const capabilityNames: ReadonlyArray<keyof ServerCapabilities> = [
  "multipartAbort",
  "sse",
  "sseC",
  "uploadPartCopy",
  "encodedCopySource",
  "conditionalWrites",
  "authentication",
  "minPartSize",
  "keySemantics"
]

/** A running server. */
export interface Running {
  readonly endpoint: string
  readonly region: string
  readonly accessKeyId: string
  readonly secretAccessKey: string
  /** An existing bucket to use with a per-suite prefix, instead of creating buckets. */
  readonly sharedBucket?: string | undefined
}

/** A server the tests may run against. */
export interface Candidate {
  readonly name: string
  /** Why it cannot run here; undefined when it can. */
  readonly skip: string | undefined
  readonly capabilities: ServerCapabilities
  /** Client settings this server needs (beyond endpoint and credentials). */
  readonly clientOptions: Partial<S3ClientOptions>
  readonly start: () => Promise<Running>
}

const all: ServerCapabilities = {
  multipartAbort: true,
  sse: true,
  sseC: true,
  uploadPartCopy: true,
  encodedCopySource: true,
  conditionalWrites: true,
  authentication: true,
  minPartSize: true,
  keySemantics: true
}

const children = new Set<ChildProcess>()
const logDirs = new Set<string>()
process.once("exit", () => {
  for (const child of children) child.kill("SIGKILL")
  for (const dir of logDirs) rmSync(dir, { recursive: true, force: true })
})

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => (typeof address === "object" && address !== null ? resolve(address.port) : reject(new Error("no port"))))
    })
  })

/** Polls until the endpoint answers HTTP, the child dies, or `ms` pass. */
const waitForHttp = async (endpoint: string, child: ChildProcess, log: () => string, ms = 30_000): Promise<void> => {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`server exited (${child.exitCode ?? child.signalCode}) before answering: ${log().slice(-2000)}`)
    }
    try {
      await fetch(endpoint, { signal: AbortSignal.timeout(1000) })
      return
    } catch {
      await new Promise((r) => setTimeout(r, 50))
    }
  }
  child.kill("SIGKILL")
  throw new Error(`server did not answer at ${endpoint} within ${ms} ms: ${log().slice(-2000)}`)
}

/**
 * Tracks a child whose output comes through pipes: only for a server that
 * writes nothing once started (s3rver runs silent and prints only its port),
 * since nothing drains the pipes while a test blocks this process (see `logFile`).
 */
const track = (child: ChildProcess): (() => string) => {
  children.add(child)
  child.once("exit", () => children.delete(child))
  let output = ""
  const keep = (d: Buffer) => {
    output = (output + d.toString()).slice(-8000)
  }
  child.stdout?.on("data", keep)
  child.stderr?.on("data", keep)
  return () => output
}

/**
 * A log file for a server's output, in a directory of its own (removed by
 * `remove`, or when this process exits). Not a pipe: a pipe is drained
 * only by this process's event loop, and a test that blocks it (a
 * `spawnSync` of the CLI) would let the pipe fill, after which a server that
 * logs every request (moto) blocks writing its next line and answers no
 * more requests (test/backends/s3/serverOutput.test.ts).
 */
const logFile = (name: string) => {
  const dir = mkdtempSync(join(tmpdir(), `graviton-${name}-`))
  logDirs.add(dir)
  const path = join(dir, "server.log")
  const fd = openSync(path, "a")
  return {
    fd,
    /** The last 8,000 characters written, for error messages. */
    tail: () => {
      try {
        return readFileSync(path, "utf8").slice(-8000)
      } catch {
        return ""
      }
    },
    remove: () => {
      logDirs.delete(dir)
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

/** Tracks a child whose output goes to a file (see `logFile`): killed when this process exits. */
const trackQuiet = (child: ChildProcess): void => {
  children.add(child)
  child.once("exit", () => children.delete(child))
}

const stopChild = (child: ChildProcess): Promise<void> =>
  new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    const timer = setTimeout(() => child.kill("SIGKILL"), 5000)
    child.once("exit", () => {
      clearTimeout(timer)
      resolve()
    })
    child.kill("SIGTERM")
  })

const stops = new Map<Running, () => Promise<void>>()

/** Path of the moto server installed by scripts/install-moto.sh. */
export const motoServer = join(repoRoot, ".venv-moto", "bin", "moto_server")

const startMoto = async (): Promise<Running> => {
  let lastError: unknown
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort()
    // moto (werkzeug) logs a line per request: to a file, never to a pipe (see `logFile`).
    const log = logFile("moto")
    const child = spawn(motoServer, ["-H", "127.0.0.1", "-p", String(port)], {
      stdio: ["ignore", log.fd, log.fd],
      env: { ...process.env, PYTHONUNBUFFERED: "1" }
    })
    closeSync(log.fd)
    trackQuiet(child)
    const endpoint = `http://127.0.0.1:${port}`
    try {
      await waitForHttp(endpoint, child, log.tail)
      const running: Running = { endpoint, region: "us-east-1", accessKeyId: "test", secretAccessKey: "test" }
      stops.set(running, async () => {
        await stopChild(child)
        log.remove()
      })
      return running
    } catch (e) {
      // Another process may have taken the port between probing and binding: try another.
      lastError = e
      await stopChild(child)
      log.remove()
    }
  }
  throw lastError
}

const s3rverScript = (modulePath: string, directory: string) => `
const S3rver = require(${JSON.stringify(modulePath)});
const server = new S3rver({ address: "127.0.0.1", port: 0, silent: true, directory: ${JSON.stringify(directory)} });
server.run().then((address) => process.stdout.write("PORT " + address.port + "\\n"));
const stop = () => server.close().then(() => process.exit(0), () => process.exit(1));
process.on("SIGTERM", stop);
// The parent's end of stdin closes when it dies: never outlive it.
process.stdin.on("end", stop).resume();
`

const startS3rver = async (): Promise<Running> => {
  const modulePath = createRequire(import.meta.url).resolve("s3rver")
  const directory = mkdtempSync(join(tmpdir(), "graviton-s3rver-"))
  const child = spawn(process.execPath, ["--openssl-legacy-provider", "-e", s3rverScript(modulePath, directory)], {
    stdio: ["pipe", "pipe", "pipe"],
    cwd: repoRoot
  })
  const log = track(child)
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`s3rver did not start: ${log()}`)), 30_000)
    child.stdout!.on("data", () => {
      const m = /PORT (\d+)/.exec(log())
      if (m !== null) {
        clearTimeout(timer)
        resolve(Number(m[1]))
      }
    })
    child.once("exit", (code) => {
      clearTimeout(timer)
      reject(new Error(`s3rver exited (${code}): ${log()}`))
    })
  })
  const running: Running = { endpoint: `http://127.0.0.1:${port}`, region: "us-east-1", accessKeyId: "S3RVER", secretAccessKey: "S3RVER" }
  stops.set(running, async () => {
    await stopChild(child)
    rmSync(directory, { recursive: true, force: true })
  })
  return running
}

const envCapabilities = (): ServerCapabilities => {
  const lacking = (process.env.GRAVITON_TEST_S3_UNSUPPORTED ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "")
  const caps: Record<string, Capability> = { ...all }
  for (const name of lacking) caps[name] = unsupported(`declared unsupported by GRAVITON_TEST_S3_UNSUPPORTED`)
  return caps as unknown as ServerCapabilities
}

/** What MinIO does, as S3Servers.test.ts checks it. */
const minioCapabilities: ServerCapabilities = {
  ...all,
  multipartAbort: unsupported("MinIO's ListMultipartUploads lists the uploads of one exact key, not those under a prefix"),
  keySemantics: unsupported("MinIO stores objects as files and folders: it cannot hold `a` next to `a/b`")
}

/** Every server the harness knows, with why it is skipped here when it is; `environment` carries the global setups' servers. */
export const makeCandidates = (environment: NodeJS.ProcessEnv = process.env): ReadonlyArray<Candidate> => [
  {
    name: "env",
    skip: process.env.GRAVITON_TEST_S3_ENDPOINT ? undefined : "GRAVITON_TEST_S3_ENDPOINT is not set",
    capabilities: envCapabilities(),
    clientOptions: {},
    start: async () => ({
      endpoint: process.env.GRAVITON_TEST_S3_ENDPOINT!,
      region: process.env.GRAVITON_TEST_S3_REGION ?? "us-east-1",
      accessKeyId: process.env.GRAVITON_TEST_S3_ACCESS_KEY_ID ?? "",
      secretAccessKey: process.env.GRAVITON_TEST_S3_SECRET_ACCESS_KEY ?? "",
      sharedBucket: process.env.GRAVITON_TEST_S3_BUCKET
    })
  },
  {
    name: "minio",
    skip: environment[minioEnv.skip] ||
      (environment[minioEnv.endpoint] ? undefined : "MinIO was not started for this run (test/harness/minioGlobalSetup.ts)"),
    capabilities: minioCapabilities,
    clientOptions: {},
    start: async () => ({
      endpoint: environment[minioEnv.endpoint]!,
      region: "us-east-1",
      accessKeyId: environment[minioEnv.accessKey] ?? "",
      secretAccessKey: environment[minioEnv.secretKey] ?? ""
    })
  },
  {
    name: "minio-container",
    skip: containerSkip(environment) ??
      (environment[containerEnv.minioEndpoint] ? undefined : "no MinIO container was started for this run"),
    capabilities: {
      ...minioCapabilities,
      sseC: unsupported("the MinIO container serves plain HTTP, over which MinIO refuses SSE-C")
    },
    clientOptions: {},
    start: async () => ({
      endpoint: environment[containerEnv.minioEndpoint]!,
      region: "us-east-1",
      accessKeyId: environment[containerEnv.minioAccessKey] ?? "",
      secretAccessKey: environment[containerEnv.minioSecretKey] ?? ""
    })
  },
  {
    name: "moto",
    skip: existsSync(motoServer) ? undefined : "moto is not installed (run scripts/install-moto.sh)",
    capabilities: {
      ...all,
      sseC: unsupported("moto accepts SSE-C headers but serves the object without the key"),
      authentication: unsupported("moto accepts any credentials")
    },
    clientOptions: {},
    start: startMoto
  },
  {
    name: "s3rver",
    skip: undefined,
    capabilities: {
      multipartAbort: unsupported("s3rver has no AbortMultipartUpload (405) nor ListMultipartUploads (501)"),
      sse: unsupported("s3rver ignores SSE headers"),
      sseC: unsupported("s3rver ignores SSE-C headers"),
      uploadPartCopy: unsupported("s3rver has no UploadPartCopy (501)"),
      encodedCopySource: unsupported("s3rver does not decode every URL-encoded character of a copy source ('+' as %2B, '%' as %25)"),
      conditionalWrites: unsupported("s3rver ignores If-None-Match"),
      authentication: true,
      minPartSize: unsupported("s3rver accepts parts of any size"),
      keySemantics: unsupported(
        "s3rver stores objects as files: it lists in directory order, cannot hold `a` next to `a/b`, " +
          "interleaves concurrent overwrites and loses some non-ASCII keys"
      )
    },
    clientOptions: {},
    start: startS3rver
  }
]

/** Every server the harness knows in this process. */
export const candidates: ReadonlyArray<Candidate> = makeCandidates()

/** The candidate named `name`. */
export const candidate = (name: string): Candidate => {
  const found = candidates.find((c) => c.name === name)
  if (found === undefined) throw new Error(`unknown S3 test server ${name}`)
  return found
}

/** Candidates that can run here. */
export const available = (): ReadonlyArray<Candidate> => candidates.filter((c) => c.skip === undefined)

const started = new Map<string, Promise<Running>>()

/** The running server of a candidate, started on first use in this test file. */
export const server = (c: Candidate): Promise<Running> => {
  let running = started.get(c.name)
  if (running === undefined) {
    running = c.start()
    started.set(c.name, running)
  }
  return running
}

/** Stops every server this test file started. */
export const stopAll = async (): Promise<void> => {
  const runs = Array.from(started.values())
  started.clear()
  for (const run of runs) {
    const r = await run.catch(() => undefined)
    const stop = r === undefined ? undefined : stops.get(r)
    if (stop !== undefined) await stop()
  }
}

/** A bucket name nobody else uses (S3 rules: lower case, digits, hyphens, 3..63 characters). */
export const freshBucket = (label: string): string =>
  `gt-${label.toLowerCase().replace(/[^a-z0-9-]/g, "-").slice(0, 30)}-${randomBytes(6).toString("hex")}`

/** Retries for tests: the real policy, with short delays. */
export const testRetrySchedule = Retry.policy({ base: "5 millis", maxRetries: 3, maxElapsed: "5 seconds" })

/** An SDK client on the server, for setup and for checks behind the adapter's back. */
export const rawClient = (r: Running): S3.S3Client =>
  new S3.S3Client({
    endpoint: r.endpoint,
    region: r.region,
    forcePathStyle: true,
    credentials: { accessKeyId: r.accessKeyId, secretAccessKey: r.secretAccessKey },
    maxAttempts: 3,
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED"
  })

/** Where one suite keeps its objects. */
export interface Place {
  readonly bucket: string
  /** Key prefix of the suite ("" or ending in "/"). */
  readonly prefix: string
}

/** Creates the suite's bucket (or picks a prefix in the shared bucket). */
export const prepare = async (r: Running, bucket: string): Promise<Place> => {
  if (r.sharedBucket !== undefined) {
    return { bucket: r.sharedBucket, prefix: `graviton-test/${bucket}/` }
  }
  const client = rawClient(r)
  try {
    await client.send(new S3.CreateBucketCommand({ Bucket: bucket }))
  } finally {
    client.destroy()
  }
  return { bucket, prefix: "" }
}

/** Options of `clientLayer`. */
export interface ClientLayerOptions {
  /** Bucket name (see `freshBucket`); it is created when the layer is built. */
  readonly bucket: string
  /** Client settings to change, e.g. partSize or encryption. */
  readonly overrides?: Partial<S3ClientOptions> | undefined
}

/**
 * What the object store must leave out of its declared capabilities on this
 * server (S3ClientOptions.unsupported), from the server's record: the
 * declaration then stays true there. Encryption counts only when asked for.
 */
export const storeUnsupported = (c: Candidate, encryption: Encryption | undefined): ReadonlyArray<S3Unsupported> => {
  const lacking: Array<S3Unsupported> = []
  if (c.capabilities.conditionalWrites !== true) lacking.push("conditionalWrite")
  if (c.capabilities.keySemantics !== true) lacking.push("fileAndPrefix")
  const sse = encryption === undefined || encryption._tag === "None"
    ? true
    : encryption._tag === "Customer"
    ? c.capabilities.sseC
    : c.capabilities.sse
  if (sse !== true) lacking.push("encryption")
  return lacking
}

/** Client options for a running server and place, with the test defaults (5 MiB parts, fast retries). */
export const clientOptions = (c: Candidate, r: Running, place: Place, overrides?: Partial<S3ClientOptions>): S3ClientOptions => {
  const options: S3ClientOptions = {
    bucket: place.bucket,
    prefix: place.prefix,
    region: r.region,
    endpoint: r.endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: Redacted.make(r.accessKeyId), secretAccessKey: Redacted.make(r.secretAccessKey) },
    partSize: 5 * 1024 * 1024,
    concurrency: 3,
    retrySchedule: testRetrySchedule,
    ...c.clientOptions,
    ...overrides
  }
  return { ...options, unsupported: [...storeUnsupported(c, options.encryption), ...(options.unsupported ?? [])] }
}

/** S3ClientInstance on the candidate's server (started on first use) with a fresh bucket. */
export const clientLayer = (c: Candidate, options: ClientLayerOptions): Layer.Layer<S3Client.S3ClientInstance, unknown> =>
  Layer.unwrapEffect(Effect.promise(async () => {
    const r = await server(c)
    const place = await prepare(r, options.bucket)
    return S3Client.layer(clientOptions(c, r, place, options.overrides))
  }))

/** The capability matrix as a text table (servers as columns), skipped candidates with their reasons. */
export const matrix = (): string => {
  const header = ["capability", ...candidates.map((c) => c.name)]
  const rows = capabilityNames.map((name) => [
    name,
    ...candidates.map((c) => (c.skip !== undefined ? "-" : c.capabilities[name] === true ? "yes" : "no"))
  ])
  const widths = header.map((_, i) => Math.max(...[header, ...rows].map((r) => r[i]!.length)))
  const line = (cells: ReadonlyArray<string>) => cells.map((cell, i) => cell.padEnd(widths[i]!)).join(" | ")
  const notes = candidates.flatMap((c) =>
    c.skip !== undefined
      ? [`${c.name}: skipped (${c.skip})`]
      : capabilityNames.flatMap((name) => {
        const cap = c.capabilities[name]
        return cap === true ? [] : [`${c.name} lacks ${name}: ${cap.reason}`]
      })
  )
  return [line(header), widths.map((w) => "-".repeat(w)).join("-|-"), ...rows.map(line), "", ...notes].join("\n")
}


/** The GRAVITON_S3_* environment that points a `graviton --store s3` process at a running server and place. */
export const cliEnv = (r: Running, place: Place, options: { readonly prefix?: string; readonly partSize?: number } = {}): Record<string, string> => ({
  GRAVITON_STORE: "s3",
  GRAVITON_S3_BUCKET: place.bucket,
  GRAVITON_S3_PREFIX: place.prefix + (options.prefix ?? ""),
  GRAVITON_S3_REGION: r.region,
  GRAVITON_S3_ENDPOINT: r.endpoint,
  GRAVITON_S3_FORCE_PATH_STYLE: "true",
  GRAVITON_S3_ACCESS_KEY_ID: r.accessKeyId,
  GRAVITON_S3_SECRET_ACCESS_KEY: r.secretAccessKey,
  GRAVITON_S3_CHECKSUM: "WHEN_REQUIRED",
  ...(options.partSize === undefined ? {} : { GRAVITON_S3_PART_SIZE: String(options.partSize) })
})
