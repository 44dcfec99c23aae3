/**
 * What the conformance suites cannot tolerate as written: streaming puts that
 * fail mid-stream and reads that come back damaged. CasBlobStore over
 * chaos-wrapped memory and fs + LevelDB ports (every kind of call may fail,
 * puts included; 10% of object reads truncated or bit-flipped), the ports
 * retried as in the suites and each put retried by the caller, who still has
 * its source. Then, with the chaos switched off, the invariants:
 *
 * - every put completed or failed with a typed, transient BlobError (no defect);
 * - every read returned exactly the stored bytes or failed with a typed error
 *   (Corrupted for a damaged body): never wrong bytes;
 * - every stored blob verifies (a full read, re-hashed by the store);
 * - counts are exact: `list` gives each distinct content once, the object
 *   store holds one object per blob (monolithic) or one per distinct block
 *   with its reference count equal to the manifests using it (chunked), no
 *   record is left Pending and nothing is left under staging/;
 * - a put that failed leaves nothing visible.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { createHash } from "node:crypto"
import * as CasBlobStore from "../../src/blobs/CasBlobStore.js"
import * as BinaryKey from "../../src/core/BinaryKey.js"
import * as BlobLocator from "../../src/core/BlobLocator.js"
import { BlobError, isStorageError } from "../../src/core/Errors.js"
import * as Chaos from "../../src/kit/Chaos.js"
import * as Retry from "../../src/kit/Retry.js"
import { BlobStore } from "../../src/ports/BlobStore.js"
import { KeyValueStore } from "../../src/ports/KeyValueStore.js"
import { MutableObjectStore } from "../../src/ports/ObjectStore.js"
import { chunked, collect, randomBytes, sameBytes } from "../../src/testing/bytes.js"
import { recordFault } from "../harness/reliability.js"
import { cas, embeddedPorts, memoryPorts, schedule, tempDir } from "./fixtures.js"

const smallBlocks = CasBlobStore.chunked({ min: 4 * 1024, avg: 16 * 1024, max: 64 * 1024 })

/** Every kind of call may fail, puts included; a tenth of object reads are damaged. */
const everything = (seed: number): Chaos.Options => ({
  seed,
  failure: 0.15,
  corruption: 0.1,
  latency: { min: 0, max: Duration.millis(1) }
})

const sha256 = (bytes: Uint8Array): string => createHash("sha256").update(bytes).digest("hex")

/** 40 distinct contents of 0 B to 300 KiB, put 60 times (a third of them twice). */
const contents = Array.from({ length: 40 }, (_, i) => randomBytes(i === 0 ? 0 : (i * 7919) % (300 * 1024) + 1, 1000 + i))
const puts = Array.from({ length: 60 }, (_, i) => contents[i % 40]!)

/** A put retried by the caller on transient reasons: Right(key) or Left(the typed error). */
const putRetried = (bytes: Uint8Array, seed: number) =>
  Effect.flatMap(BlobStore, (store) =>
    Stream.run(chunked(bytes, { seed, max: 48 * 1024 }), store.put()).pipe(
      Retry.retryTransient({ schedule }),
      Effect.map((r) => r.key),
      Effect.either
    ))

const listAll = <A, E, R>(s: Stream.Stream<A, E, R>) => Effect.map(Stream.runCollect(s), Chunk.toReadonlyArray)

const decode = (bytes: Uint8Array): Record<string, unknown> => JSON.parse(new TextDecoder().decode(bytes))

/** Runs the workload with the chaos on, then checks the invariants with it off. */
const workload = (chaos: Chaos.Chaos, layout: "monolithic" | "chunked") =>
  Effect.gen(function*() {
    const store = yield* BlobStore
    const kv = yield* KeyValueStore
    chaos.active = true
    const results = yield* Effect.forEach(puts, (bytes, i) => putRetried(bytes, i + 1), { concurrency: 4 })
    const putFailures: Array<string> = []
    const stored = new Map<string, Uint8Array>()
    results.forEach((r, i) =>
      Either.match(r, {
        onLeft: (e) => {
          // Typed and transient: the retries ran out, nothing else.
          expect(isStorageError(e), String(e)).toBe(true)
          expect((e as BlobError).isTransient, (e as BlobError).message).toBe(true)
          putFailures.push((e as BlobError).reason)
        },
        onRight: (key) => {
          expect(key.digest).toBe(sha256(puts[i]!))
          stored.set(BinaryKey.render(key), puts[i]!)
        }
      }))
    // Reads under chaos: exact bytes, or a typed failure; never other bytes.
    let reads = 0
    let damaged = 0
    let wrong = 0
    for (const [text, bytes] of stored) {
      const key = Either.getOrThrow(BinaryKey.parse(text))
      for (let n = 0; n < 3; n++) {
        reads++
        const read = yield* Effect.either(collect(store.get(key)).pipe(Retry.retryTransient({ schedule })))
        Either.match(read, {
          onLeft: (e) => {
            expect(e._tag).toBe("BlobError")
            expect(e.reason, e.message).toBe("Corrupted")
            damaged++
          },
          onRight: (back) => void (sameBytes(back, bytes) || wrong++)
        })
      }
    }
    expect(wrong).toBe(0)

    // The final state, without chaos.
    chaos.active = false
    const listed = yield* listAll(store.list)
    expect(listed.map((s) => BinaryKey.render(s.key)).sort()).toEqual([...stored.keys()].sort())
    for (const [text, bytes] of stored) {
      const back = yield* collect(store.get(Either.getOrThrow(BinaryKey.parse(text))))
      expect(sameBytes(back, bytes), text).toBe(true)
    }
    const records = yield* listAll(kv.list("blobs/"))
    expect(records.length).toBe(stored.size)
    for (const [, value] of records) expect(decode(value).state).toBe("live")
    return { stored, records, putFailures, reads, damaged }
  }).pipe(Effect.map((r) => ({ ...r, layout })))

/** Objects of the CAS's bucket, by first path segment. */
const objectsOf = (scheme: string) =>
  Effect.flatMap(MutableObjectStore, (objects) =>
    listAll(objects.list(Either.getOrThrow(BlobLocator.makePrefix(scheme, CasBlobStore.defaults.bucket, "")))))

const checkCounts = (scheme: string, layout: "monolithic" | "chunked", stored: number) =>
  Effect.gen(function*() {
    const kv = yield* KeyValueStore
    const all = yield* objectsOf(scheme)
    const staging = all.filter((o) => o.locator.path.startsWith(`${CasBlobStore.defaults.stagingPrefix}/`))
    // A put that failed left nothing behind.
    expect(staging.map((o) => BlobLocator.render(o.locator))).toEqual([])
    if (layout === "monolithic") {
      expect(all.length).toBe(stored)
      return { objects: all.length, blocks: 0 }
    }
    // Chunked: one object per distinct block, each block's refs = its uses in the live manifests.
    const uses = new Map<string, number>()
    for (const [, value] of yield* listAll(kv.list("blobs/"))) {
      const record = decode(value) as { algorithm: string; blocks?: ReadonlyArray<[number, string]> }
      for (const [size, digest] of record.blocks ?? []) {
        const id = `${record.algorithm}:${digest}:${size}`
        uses.set(id, (uses.get(id) ?? 0) + 1)
      }
    }
    const blocks = yield* listAll(kv.list("blocks/"))
    expect(blocks.length).toBe(uses.size)
    for (const [key, value] of blocks) {
      const record = decode(value) as { state: string; refs: number }
      expect(record.state).toBe("live")
      expect(record.refs, key).toBe(uses.get(key.slice("blocks/".length)))
    }
    expect(all.length).toBe(uses.size)
    return { objects: all.length, blocks: uses.size }
  })

const variants = [
  { name: "memory, monolithic", seed: 41, layout: "monolithic" as const, scheme: CasBlobStore.defaults.scheme },
  { name: "memory, chunked", seed: 42, layout: "chunked" as const, scheme: CasBlobStore.defaults.scheme },
  { name: "fs + LevelDB, monolithic", seed: 43, layout: "monolithic" as const, scheme: "file" },
  { name: "fs + LevelDB, chunked", seed: 44, layout: "chunked" as const, scheme: "file" }
]

const layerOf = (v: (typeof variants)[number], chaos: Chaos.Chaos) => {
  const ports = v.scheme === "file" ? embeddedPorts(tempDir("graviton-chaos-inv-"), chaos) : memoryPorts(chaos)
  return cas(ports, { scheme: v.scheme, ...(v.layout === "chunked" ? { layout: smallBlocks } : {}) })
}

describe("CAS under full chaos (failing puts, damaged reads), caller retries", () => {
  for (const v of variants) {
    it.live(`${v.name}: puts complete or fail typed, reads are exact or Corrupted, blobs verify, counts exact`, () => {
      const chaos = Chaos.make(everything(v.seed))
      return Effect.gen(function*() {
        const r = yield* workload(chaos, v.layout)
        const counts = yield* checkCounts(v.scheme, v.layout, r.stored.size)
        // Deletes under chaos, retried; then the counts again.
        chaos.active = true
        const store = yield* BlobStore
        const gone = [...r.stored.keys()].filter((_, i) => i % 2 === 0)
        for (const text of gone) {
          yield* store.delete(Either.getOrThrow(BinaryKey.parse(text))).pipe(Retry.retryTransient({ schedule }))
        }
        chaos.active = false
        const left = r.stored.size - gone.length
        expect((yield* listAll(store.list)).length).toBe(left)
        const after = yield* checkCounts(v.scheme, v.layout, left)
        const s = chaos.stats
        expect(Chaos.failures(s)).toBeGreaterThan(0)
        expect(s.failuresByKind.put + s.truncated + s.flipped).toBeGreaterThan(0)
        recordFault({
          area: "chaos",
          fault: `CAS over ${v.name}: 15% transient failures on every call (puts mid-stream included), 10% of reads truncated or bit-flipped`,
          expected: "puts complete or fail with a transient BlobError; reads exact or Corrupted; every blob verifies; counts and refs exact; nothing staged",
          observed: `${puts.length - r.putFailures.length} of ${puts.length} puts stored (${r.stored.size} distinct), ${r.putFailures.length} failed typed [${r.putFailures.join(", ")}]; ` +
            `${r.reads} reads: ${r.reads - r.damaged} exact, ${r.damaged} Corrupted, 0 wrong; ` +
            `${Chaos.failures(s)} failures injected (${s.failuresByKind.put} mid-put), ${s.truncated} truncated, ${s.flipped} flipped; ` +
            `${counts.objects} objects${v.layout === "chunked" ? ` (${counts.blocks} blocks, refs exact)` : ""}, ${after.objects} after deleting ${gone.length}; staging empty`
        })
      }).pipe(Effect.provide(layerOf(v, chaos)))
    }, 120_000)
  }
})

describe("a put that fails leaves nothing visible", () => {
  for (const v of [variants[0]!, variants[3]!]) {
    it.live(`${v.name}: every streaming put fails mid-stream; nothing listed, stat None, nothing staged`, () => {
      const chaos = Chaos.make({ seed: 51, failure: { put: 1 } })
      return Effect.gen(function*() {
        const store = yield* BlobStore
        const reasons: Array<string> = []
        for (let i = 0; i < 10; i++) {
          const bytes = randomBytes(200 * 1024 + i, 500 + i)
          const error = yield* Effect.flip(Stream.run(chunked(bytes, { seed: i + 1, max: 32 * 1024 }), store.put()))
          expect(error._tag).toBe("BlobError")
          expect(error.isTransient, error.message).toBe(true)
          reasons.push(error.reason)
          const key = new BinaryKey.BinaryKey({ algorithm: "sha256", digest: sha256(bytes), size: bytes.length })
          expect(Option.isNone(yield* store.stat(key))).toBe(true)
        }
        chaos.active = false
        const listed = (yield* listAll(store.list)).length
        const objects = (yield* objectsOf(v.scheme)).length
        expect(listed).toBe(0)
        expect(objects).toBe(0)
        recordFault({
          area: "chaos",
          fault: `CAS over ${v.name}: every streaming put fails at its 1st-3rd chunk or its end`,
          expected: "a transient BlobError; nothing listed, no object, stat None",
          observed: `${reasons.length} puts failed [${[...new Set(reasons)].join(", ")}]; ${listed} listed, ${objects} objects, ${chaos.stats.failuresByKind.put} failures injected`
        })
      }).pipe(Effect.provide(layerOf(v, chaos)))
    })
  }
})
