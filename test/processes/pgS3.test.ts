/**
 * Many processes, one PostgreSQL + S3 store (PgS3Store): four writer
 * processes (pgS3Putter.ts, run with tsx) put 50 contents each at once, 25
 * of them the same in all four (racing on each) and 25 of their own, every
 * content sharing its first 96 KiB with all others (chunked layout, so those
 * blocks are referenced by every blob). The bytes go to an S3 test server
 * (each available candidate of test/harness/s3.ts, in a fresh bucket), the
 * records to one PostgreSQL database.
 *
 * Afterwards, each content is stored once (exactly one put of a shared
 * content is not deduplicated), block reference counts equal their uses in
 * the manifests, there is one S3 object per distinct block and nothing under
 * staging/, and `graviton verify --store pg-s3` (the built CLI) finds every
 * blob intact. The CLI runs under `spawnSync`, which blocks this process
 * for the whole verify: the S3 test server must not depend on it meanwhile
 * (moto's log goes to a file, see test/harness/s3.ts `logFile`).
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import * as Path from "node:path"
import * as CasBlobStore from "../../src/blobs/CasBlobStore.js"
import * as BlobLocator from "../../src/core/BlobLocator.js"
import { BlobStore } from "../../src/ports/BlobStore.js"
import { KeyValueStore } from "../../src/ports/KeyValueStore.js"
import { MutableObjectStore } from "../../src/ports/ObjectStore.js"
import * as PgS3Store from "../../src/stores/PgS3Store.js"
import * as PgStore from "../../src/stores/PgStore.js"
import { createDatabase, dropDatabase, skipReason, usePostgres } from "../harness/postgres.js"
import { recordFault } from "../harness/reliability.js"
import * as Harness from "../harness/s3.js"
import { DISTINCT, layout, numbersOf, PUTS, WORKERS } from "./contents.js"

usePostgres()
afterAll(Harness.stopAll, 30_000)

const root = Path.join(import.meta.dirname, "..", "..")
const tsx = Path.join(root, "node_modules", ".bin", "tsx")
const putter = Path.join(import.meta.dirname, "pgS3Putter.ts")
const cli = Path.join(root, "bin", "graviton.js")

interface Run {
  readonly code: number | null
  readonly lines: ReadonlyArray<string>
  readonly stderr: string
}

/** A writer process; resolves when it exits. */
const writer = (args: ReadonlyArray<string>, env: Record<string, string>): Promise<Run> =>
  new Promise((resolve) => {
    const child: ChildProcess = spawn(tsx, [putter, ...args], { cwd: root, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] })
    let out = ""
    let err = ""
    child.stdout!.on("data", (d) => void (out += String(d)))
    child.stderr!.on("data", (d) => void (err += String(d)))
    child.on("close", (code) => resolve({ code, lines: out.split("\n").filter((l) => l !== ""), stderr: err }))
  })

const results = (run: Run) =>
  run.lines.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as { key: string; deduplicated: boolean })

/** Each content got one key from every writer; of each content exactly one put stored it. */
const checkResults = (runs: ReadonlyArray<Run>) => {
  const keyOf = new Map<number, string>()
  const stored = new Map<number, number>()
  runs.forEach((run, w) => {
    const r = results(run)
    expect(r.length, run.lines.join("\n") + run.stderr).toBe(PUTS)
    numbersOf(w).forEach((c, i) => {
      const previous = keyOf.get(c)
      if (previous !== undefined) expect(r[i]!.key).toBe(previous)
      keyOf.set(c, r[i]!.key)
      if (!r[i]!.deduplicated) stored.set(c, (stored.get(c) ?? 0) + 1)
    })
  })
  expect(new Set(keyOf.values()).size).toBe(DISTINCT)
  for (let c = 0; c < DISTINCT; c++) expect(stored.get(c), `content ${c} stored by exactly one put`).toBe(1)
}

const listAll = <A, E, R>(s: Stream.Stream<A, E, R>) => Effect.map(Stream.runCollect(s), Chunk.toReadonlyArray)
const decode = (bytes: Uint8Array) => JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>

/** Over a fresh opening of the store: blob and block records, reference counts, S3 objects, staging. */
const inspect = (bucket: string) =>
  Effect.gen(function*() {
    const store = yield* BlobStore
    const kv = yield* KeyValueStore
    const objects = yield* MutableObjectStore
    const listed = (yield* listAll(store.list)).length
    const uses = new Map<string, number>()
    let notLive = 0
    for (const [, value] of yield* listAll(kv.list("blobs/"))) {
      const record = decode(value) as { state: string; algorithm: string; blocks?: ReadonlyArray<[number, string]> }
      if (record.state !== "live") notLive++
      for (const [size, digest] of record.blocks ?? []) {
        const id = `${record.algorithm}:${digest}:${size}`
        uses.set(id, (uses.get(id) ?? 0) + 1)
      }
    }
    let wrongRefs = 0
    let maxRefs = 0
    const blocks = yield* listAll(kv.list("blocks/"))
    for (const [key, value] of blocks) {
      const record = decode(value) as { state: string; refs: number }
      maxRefs = Math.max(maxRefs, record.refs)
      if (record.state !== "live" || record.refs !== uses.get(key.slice("blocks/".length))) wrongRefs++
    }
    const all = yield* listAll(objects.list(Either.getOrThrow(BlobLocator.makePrefix("s3", bucket, ""))))
    const staged = all.filter((o) => o.locator.path.startsWith(`${CasBlobStore.defaults.stagingPrefix}/`)).length
    return { listed, notLive, distinctBlocks: uses.size, blockRecords: blocks.length, wrongRefs, maxRefs, objects: all.length, staged }
  })

const pgSkip = skipReason()

for (const c of Harness.candidates) {
  const skip = pgSkip ?? c.skip
  describe(`many processes, one PostgreSQL + S3 store (${c.name})`, () => {
    let db: { url: string; name: string } | undefined
    /** What the writers left, for the verify test. */
    let written: { readonly url: string; readonly env: Record<string, string> } | undefined
    afterAll(async () => {
      if (db) await dropDatabase(db.name).catch(() => undefined)
    })

    it.skipIf(skip !== undefined)(`4 processes x 50 overlapping puts at once${skip ? ` (skipped: ${skip})` : ""}`, async () => {
      db = await createDatabase(`pgs3_${c.name}`)
      const url = db.url
      const server = await Harness.server(c)
      const place = await Harness.prepare(server, Harness.freshBucket(`processes-${c.name}`))
      const s3 = Harness.clientOptions(c, server, place)
      // The S3 side of the writers and of the CLI, as a deployment sets it (the store is named by --store).
      const s3Env: Record<string, string> = {
        ...Harness.cliEnv(server, place),
        GRAVITON_S3_UNSUPPORTED: Harness.storeUnsupported(c, undefined).join(",")
      }
      delete s3Env.GRAVITON_STORE
      // Migrated once before the writers start (each also asks for it: a no-op then).
      await Effect.runPromise(PgStore.migrate({ url: Redacted.make(url) }))
      const runs = await Promise.all(Array.from({ length: WORKERS }, (_, w) => writer([String(w), url], s3Env)))
      for (const run of runs) expect(run.code, run.lines.join("\n") + run.stderr).toBe(0)
      checkResults(runs)
      const state = await Effect.runPromise(Effect.scoped(Effect.provide(
        inspect(place.bucket),
        PgS3Store.layer({ pg: { url: Redacted.make(url) }, s3, layout: CasBlobStore.chunked(layout) })
      )))
      expect(state.listed).toBe(DISTINCT)
      expect(state.notLive).toBe(0)
      expect(state.blockRecords).toBe(state.distinctBlocks)
      expect(state.wrongRefs).toBe(0)
      // The shared prefix's blocks are used by every blob.
      expect(state.maxRefs).toBeGreaterThanOrEqual(DISTINCT)
      expect(state.staged).toBe(0)
      expect(state.objects).toBe(state.distinctBlocks)
      written = { url, env: s3Env }
      recordFault({
        area: "processes",
        fault: `4 processes x 50 overlapping puts at once into one PostgreSQL + S3 store (chunked, S3 on ${c.name})`,
        expected: "each content stored once (exactly one put not deduplicated), block refs exact, one S3 object per block, nothing staged",
        observed: `${runs.filter((r) => r.code === 0).length} of ${WORKERS} processes exited 0, ${
          runs.reduce((n, r) => n + results(r).length, 0)
        } puts; ${state.listed} blobs listed, ${state.notLive} not live, ${state.objects} S3 objects for ${state.distinctBlocks} distinct blocks, ${state.wrongRefs} wrong reference counts (largest ${state.maxRefs}), ${state.staged} staged`
      })
    }, 300_000)

    it.skipIf(skip !== undefined)(`afterwards, graviton verify --store pg-s3 finds every blob intact${skip ? ` (skipped: ${skip})` : ""}`, () => {
      if (written === undefined) return expect.fail("the writers' test did not complete")
      const v = spawnSync(process.execPath, [cli, "verify", "--json", "--store", "pg-s3"], {
        cwd: root,
        env: { ...process.env, ...written.env, GRAVITON_PG_URL: written.url },
        encoding: "utf8"
      })
      const report = v.stdout.trim() === "" ? undefined : JSON.parse(v.stdout) as { checked: number; ok: number }
      expect(v.status, v.stderr).toBe(0)
      expect(report).toMatchObject({ checked: DISTINCT, ok: DISTINCT })
      recordFault({
        area: "processes",
        fault: `graviton verify after 4 concurrent writers, PostgreSQL + S3 store (S3 on ${c.name})`,
        expected: "every blob intact",
        observed: `${report?.ok} of ${report?.checked} intact (exit ${v.status})`
      })
    }, 300_000)
  })
}
