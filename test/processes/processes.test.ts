/**
 * Many processes, one store: four writer processes (putter.ts, run with tsx)
 * each put 50 contents, 25 of them the same in all four (racing on each) and
 * 25 of their own, every content sharing its first 96 KiB with all others
 * (chunked layout, so those blocks are referenced by every blob).
 *
 * - PostgreSQL: the four write at once into one database.
 * - Embedded: LevelDB allows one process per home. While the first writer
 *   holds it, a second writer and the CLI get MetadataError Unavailable
 *   "database at <home>/meta is already open in another process" (the CLI:
 *   exit code 5, storage); we chose to fail rather than wait, so the others
 *   run one after another once the first is done.
 *
 * Afterwards, each content is stored once, block reference counts equal
 * their uses in the manifests, nothing is left in staging, and `graviton
 * verify` (the built CLI) finds every blob intact.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import * as NFS from "node:fs"
import * as OS from "node:os"
import * as Path from "node:path"
import * as CasBlobStore from "../../src/blobs/CasBlobStore.js"
import * as BlobLocator from "../../src/core/BlobLocator.js"
import { BlobStore } from "../../src/ports/BlobStore.js"
import { KeyValueStore } from "../../src/ports/KeyValueStore.js"
import { MutableObjectStore } from "../../src/ports/ObjectStore.js"
import * as EmbeddedStore from "../../src/stores/EmbeddedStore.js"
import * as PgStore from "../../src/stores/PgStore.js"
import { createDatabase, dropDatabase, skipReason, usePostgres } from "../harness/postgres.js"
import { recordFault } from "../harness/reliability.js"
import { DISTINCT, layout, numbersOf, PUTS, WORKERS } from "./contents.js"

usePostgres()

const root = Path.join(import.meta.dirname, "..", "..")
const tsx = Path.join(root, "node_modules", ".bin", "tsx")
const putter = Path.join(import.meta.dirname, "putter.ts")
const cli = Path.join(root, "bin", "graviton.js")

interface Run {
  readonly code: number | null
  readonly lines: ReadonlyArray<string>
  readonly stderr: string
}

/** A writer process; `opened` resolves on its `open` line, `done` when it exits. */
const writer = (args: ReadonlyArray<string>) => {
  const child: ChildProcess = spawn(tsx, [putter, ...args], { cwd: root, stdio: ["pipe", "pipe", "pipe"] })
  let out = ""
  let err = ""
  let opened: () => void = () => {}
  const open = new Promise<void>((resolve) => (opened = resolve))
  child.stdout!.on("data", (d) => {
    out += String(d)
    if (out.split("\n").includes("open")) opened()
  })
  child.stderr!.on("data", (d) => void (err += String(d)))
  const done = new Promise<Run>((resolve) =>
    child.on("close", (code) => {
      opened()
      resolve({ code, lines: out.split("\n").filter((l) => l !== ""), stderr: err })
    }))
  return { open, done, go: () => child.stdin!.end("go\n") }
}

/** The put results of a finished writer, in order. */
const results = (run: Run) =>
  run.lines.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as { key: string; deduplicated: boolean })

/** Each content got one key from every writer; of the shared ones exactly one put stored it (the others deduplicated). */
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
  return keyOf
}

const listAll = <A, E, R>(s: Stream.Stream<A, E, R>) => Effect.map(Stream.runCollect(s), Chunk.toReadonlyArray)
const decode = (bytes: Uint8Array) => JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>

/** Over a fresh (single) opening of the store: counts, references, staging. */
const inspect = (scheme: string) =>
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
    const all = yield* listAll(objects.list(Either.getOrThrow(BlobLocator.makePrefix(scheme, CasBlobStore.defaults.bucket, ""))))
    const staged = all.filter((o) => o.locator.path.startsWith(`${CasBlobStore.defaults.stagingPrefix}/`)).length
    return { listed, notLive, distinctBlocks: uses.size, blockRecords: blocks.length, wrongRefs, maxRefs, objects: all.length, staged }
  })

const expectClean = (s: Effect.Effect.Success<ReturnType<typeof inspect>>) => {
  expect(s.listed).toBe(DISTINCT)
  expect(s.notLive).toBe(0)
  expect(s.blockRecords).toBe(s.distinctBlocks)
  expect(s.wrongRefs).toBe(0)
  // The shared prefix's blocks are used by every blob.
  expect(s.maxRefs).toBeGreaterThanOrEqual(DISTINCT)
  expect(s.staged).toBe(0)
  expect(s.objects).toBe(s.distinctBlocks)
}

const inspectWith = <E>(layer: Layer.Layer<BlobStore | KeyValueStore | MutableObjectStore, E>, scheme: string) =>
  Effect.runPromise(Effect.scoped(Effect.provide(inspect(scheme), layer)))

/** `graviton verify --json` over the store; its parsed report and exit code. */
const verify = (args: ReadonlyArray<string>, env: Record<string, string> = {}) => {
  const r = spawnSync(process.execPath, [cli, "verify", "--json", ...args], { cwd: root, env: { ...process.env, ...env }, encoding: "utf8" })
  return { code: r.status, report: r.stdout.trim() === "" ? undefined : JSON.parse(r.stdout) as { checked: number; ok: number }, stderr: r.stderr }
}

const summary = (s: Effect.Effect.Success<ReturnType<typeof inspect>>) =>
  `${s.listed} blobs listed, ${s.notLive} not live, ${s.objects} objects for ${s.distinctBlocks} distinct blocks, ${s.wrongRefs} wrong reference counts (largest ${s.maxRefs}), ${s.staged} staged`

const pgSkip = skipReason()

describe("many processes, one PostgreSQL store", () => {
  let db: { url: string; name: string } | undefined
  afterAll(async () => {
    if (db) await dropDatabase(db.name).catch(() => undefined)
  })

  it.skipIf(pgSkip !== undefined)(`4 processes x 50 overlapping puts at once${pgSkip ? ` (skipped: ${pgSkip})` : ""}`, async () => {
    db = await createDatabase("processes")
    const url = db.url
    await Effect.runPromise(PgStore.migrate({ url: Redacted.make(url) }))
    const writers = Array.from({ length: WORKERS }, (_, w) => writer([String(w), "pg", url]))
    const runs = await Promise.all(writers.map((x) => x.done))
    for (const run of runs) expect(run.code, run.lines.join("\n") + run.stderr).toBe(0)
    checkResults(runs)
    const state = await inspectWith(PgStore.layer({ url: Redacted.make(url), layout: CasBlobStore.chunked(layout) }), PgStore.SCHEME)
    expectClean(state)
    const v = verify(["--store", "pg"], { GRAVITON_PG_URL: url })
    expect(v.code, v.stderr).toBe(0)
    expect(v.report).toMatchObject({ checked: DISTINCT, ok: DISTINCT })
    recordFault({
      area: "processes",
      fault: "4 processes x 50 overlapping puts at once into one PostgreSQL store (chunked)",
      expected: "each content stored once (exactly one put not deduplicated), block refs exact, nothing staged, graviton verify clean",
      observed: `${runs.filter((r) => r.code === 0).length} of ${WORKERS} processes exited 0, ${runs.reduce((n, r) => n + results(r).length, 0)} puts; ${summary(state)}; verify: ${v.report?.ok} of ${v.report?.checked} intact (exit ${v.code})`
    })
  }, 300_000)
})

describe("many processes, one embedded home", () => {
  const home = NFS.mkdtempSync(Path.join(OS.tmpdir(), "graviton-processes-"))
  afterAll(() => NFS.rmSync(home, { recursive: true, force: true }))

  it("a second process gets a clear 'already open in another process' error; the four run in turn", async () => {
    const first = writer(["0", "embedded", home, "--wait"])
    await first.open
    // While the first holds the home: another writer, and the CLI.
    const second = await writer(["1", "embedded", home]).done
    const file = Path.join(home, "..", `${Path.basename(home)}-input`)
    NFS.writeFileSync(file, "hello")
    const put = spawnSync(process.execPath, [cli, "put", file, "--home", home], { cwd: root, encoding: "utf8" })
    NFS.rmSync(file, { force: true })
    first.go()
    const firstRun = await first.done
    const meta = EmbeddedStore.metaDir(home)
    const message = `database at ${meta} is already open in another process (LevelDB holds ${meta}/LOCK)`
    expect(second.code).toBe(3)
    expect(second.lines.join("\n")).toContain(`error MetadataError Unavailable Unavailable: level.open: ${message}`)
    expect(put.status).toBe(5)
    expect(put.stderr).toContain(message)
    expect(firstRun.code, firstRun.lines.join("\n") + firstRun.stderr).toBe(0)

    const rest: Array<Run> = []
    for (let w = 1; w < WORKERS; w++) rest.push(await writer([String(w), "embedded", home]).done)
    for (const run of rest) expect(run.code, run.lines.join("\n") + run.stderr).toBe(0)
    checkResults([firstRun, ...rest])
    const state = await inspectWith(EmbeddedStore.layer({ home, layout: CasBlobStore.chunked(layout) }), EmbeddedStore.SCHEME)
    expectClean(state)
    const v = verify(["--home", home])
    expect(v.code, v.stderr).toBe(0)
    expect(v.report).toMatchObject({ checked: DISTINCT, ok: DISTINCT })
    recordFault({
      area: "processes",
      fault: "a second process opens an embedded home in use (a writer, and graviton put)",
      expected: "MetadataError Unavailable 'database at <home>/meta is already open in another process'; the CLI exits 5 with that sentence",
      observed: `writer: exit ${second.code}, ${second.lines.find((l) => l.startsWith("error"))?.split(":").slice(0, 2).join(":")}; CLI: exit ${put.status}, ${put.stderr.includes("already open in another process") ? "says the home is open in another process" : `said: ${put.stderr.trim()}`}`
    })
    recordFault({
      area: "processes",
      fault: "4 processes x 50 overlapping puts into one embedded home, one after another",
      expected: "each content stored once, block refs exact, nothing staged, graviton verify clean",
      observed: `${[firstRun, ...rest].filter((r) => r.code === 0).length} of ${WORKERS} processes exited 0; ${summary(state)}; verify: ${v.report?.ok} of ${v.report?.checked} intact (exit ${v.code})`
    })
  }, 300_000)
})
