/**
 * Leftovers made the real way: a child process (killedPut.ts) puts into an
 * embedded home and is SIGKILLed at each step of a put (monolithic: before
 * the claim, after the claim, after the move; chunked: with its blocks
 * referenced, before the manifest). Then `gc --dry-run` reports exactly what
 * those kills left, `gc` removes exactly that, a second `gc` nothing,
 * `check` is clean and every live blob verifies.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Stream from "effect/Stream"
import { spawn } from "node:child_process"
import * as Path from "node:path"
import * as BinaryKey from "../../src/core/BinaryKey.js"
import * as BlobMeta from "../../src/blobs/BlobMeta.js"
import * as CasBlobStore from "../../src/blobs/CasBlobStore.js"
import * as Lifecycle from "../../src/lifecycle/Lifecycle.js"
import { BlobStore } from "../../src/ports/BlobStore.js"
import { KeyValueStore } from "../../src/ports/KeyValueStore.js"
import * as EmbeddedStore from "../../src/stores/EmbeddedStore.js"
import { chunked, collect, randomBytes, sameBytes } from "../../src/testing/bytes.js"
import { tempDir } from "../blobs/fixtures.js"
import { blocks } from "./suite.js"

const root = Path.join(import.meta.dirname, "..", "..")
const child = Path.join(root, "test", "lifecycle", "killedPut.ts")

/** Runs killedPut.ts until it reports the step, then SIGKILLs it; rejects if it ends any other way. */
const killAt = (home: string, step: string, layout: string, seed: number) =>
  Effect.promise(() =>
    new Promise<void>((resolve, reject) => {
      // node itself with tsx's loader: one process, so that the SIGKILL reaches the put (the tsx wrapper would pass it on to no one).
      const p = spawn(process.execPath, ["--import", "tsx", child, home, step, layout, String(seed)], { cwd: root, stdio: ["ignore", "pipe", "pipe"] })
      let out = ""
      let err = ""
      let killed = false
      p.stdout.on("data", (d) => {
        out += String(d)
        if (!killed && out.includes(`at ${step}`)) {
          killed = true
          p.kill("SIGKILL")
        }
      })
      p.stderr.on("data", (d) => void (err += String(d)))
      p.on("close", (code, signal) =>
        killed && signal === "SIGKILL" ? resolve() : reject(new Error(`killedPut ${step} ended ${code ?? signal}: ${out}${err}`)))
    })
  )

/** Block records and their bytes. */
const blockRecords = Effect.flatMap(KeyValueStore, (kv) =>
  Stream.runFold(kv.list(BlobMeta.BLOCKS), new Map<string, number>(), (m, [k]) => {
    m.set(k, Either.getOrThrow(BinaryKey.parse(k.slice(BlobMeta.BLOCKS.length))).size)
    return m
  }))

const count = (report: { readonly reclaimed: Record<Lifecycle.LeftoverKind, Lifecycle.Tally> }) =>
  Object.fromEntries(Object.entries(report.reclaimed).map(([k, t]) => [k, t.count]))

const GRACE = Duration.millis(50)

describe("gc after puts killed at each step (embedded, child processes)", () => {
  it.live("reports and removes exactly what the kills left; check is clean; every live blob verifies", () =>
    Effect.gen(function*() {
      const home = tempDir("lifecycle-killed-")
      const open = EmbeddedStore.layer({ home, layout: blocks })
      const live = [randomBytes(120_000, 1), randomBytes(30_000, 2)]
      // Live blobs first (one chunked, one monolithic), and the block records they own.
      const putIn = (layout: CasBlobStore.Layout, bytes: Uint8Array) =>
        Effect.scoped(Effect.flatMap(BlobStore, (s) => Stream.run(chunked(bytes), s.put())).pipe(
          Effect.provide(EmbeddedStore.layer({ home, layout }))
        ))
      const keys = [(yield* putIn(blocks, live[0]!)).key, (yield* putIn(CasBlobStore.monolithic, live[1]!)).key]
      const before = yield* Effect.scoped(Effect.provide(blockRecords, open))

      yield* killAt(home, "claim", "monolithic", 11)
      yield* killAt(home, "move", "monolithic", 12)
      yield* killAt(home, "publish", "monolithic", 13)
      yield* killAt(home, "publish", "chunked", 14)

      yield* Effect.scoped(Effect.gen(function*() {
        const lc = yield* Lifecycle.make()
        const after = yield* blockRecords
        const leaked = Array.from(after).filter(([k]) => !before.has(k))
        expect(leaked.length).toBeGreaterThan(1)
        yield* Effect.sleep(Duration.millis(1100))

        // claim: a staged object; move: a staged object and a claim; publish: a claim and its object at the address.
        const expected = { staging: 2, pending: 2, uploads: 0, blocks: leaked.length, orphans: 0, multipart: 0 }
        const dry = yield* lc.gc({ grace: GRACE, dryRun: true })
        expect(count(dry)).toEqual(expected)
        expect(dry.reclaimed.staging.bytes).toBe(200_000)
        expect(dry.reclaimed.pending.bytes).toBe(100_000)
        expect(dry.reclaimed.blocks.bytes).toBe(leaked.reduce((n, [, size]) => n + size, 0))
        const real = yield* lc.gc({ grace: GRACE })
        expect(real.reclaimed).toEqual(dry.reclaimed)
        expect((yield* lc.gc({ grace: GRACE })).total.count).toBe(0)

        const checked = yield* lc.check({ grace: GRACE, readData: true })
        expect(checked.problems).toEqual([])
        expect(checked.blobs).toBe(keys.length)
        expect(checked.counters.state).toBe("match")
        expect(Array.from(yield* blockRecords).filter(([k]) => !before.has(k))).toEqual([])
        const store = yield* BlobStore
        for (const [i, key] of keys.entries()) expect(sameBytes(yield* collect(store.get(key)), live[i]!)).toBe(true)
      }).pipe(Effect.provide(open)))
      // A killed put's content can be stored again afterwards.
      const again = yield* putIn(CasBlobStore.monolithic, randomBytes(100_000, 13))
      expect(again.deduplicated).toBe(false)
      const back = yield* Effect.scoped(Effect.flatMap(BlobStore, (s) => collect(s.get(again.key))).pipe(Effect.provide(open)))
      expect(sameBytes(back, randomBytes(100_000, 13))).toBe(true)
    }), 300_000)
})
