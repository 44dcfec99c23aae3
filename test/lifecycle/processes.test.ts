/**
 * gc in this process while two other processes put chunked content into the
 * same PostgreSQL store (test/processes/putter.ts). Every content shares a
 * 96 KiB prefix, whose blocks were leaked beforehand (records dropped by
 * hand, last reference "taken" long ago), so gc is after exactly the blocks
 * the writers keep taking. Afterwards every blob a writer reported reads
 * back and verifies, and check finds nothing missing or damaged (only the
 * planted leaks, which --repair recounts). The embedded store admits one
 * process at a time (LevelDB's lock), so it has no such test.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import { spawn } from "node:child_process"
import * as Path from "node:path"
import * as BinaryKey from "../../src/core/BinaryKey.js"
import * as BlobMeta from "../../src/blobs/BlobMeta.js"
import * as CasBlobStore from "../../src/blobs/CasBlobStore.js"
import { BlobStore } from "../../src/ports/BlobStore.js"
import { KeyValueStore } from "../../src/ports/KeyValueStore.js"
import * as Lifecycle from "../../src/lifecycle/Lifecycle.js"
import * as PgStore from "../../src/stores/PgStore.js"
import { gate } from "../../src/testing/capabilities.js"
import { chunked, collect, sameBytes } from "../../src/testing/bytes.js"
import { freshDatabase, skipReason, usePostgres } from "../harness/postgres.js"
import { content, contentsOf, layout } from "../processes/contents.js"

usePostgres()

const root = Path.join(import.meta.dirname, "..", "..")
const tsx = Path.join(root, "node_modules", ".bin", "tsx")
const putter = Path.join(root, "test", "processes", "putter.ts")

/** Runs one writer to its end; resolves to the keys it printed (in put order), or rejects with its output. */
const writer = (worker: number, url: string) =>
  Effect.promise(() =>
    new Promise<ReadonlyArray<string>>((resolve, reject) => {
      const child = spawn(tsx, [putter, String(worker), "pg", url], { cwd: root, stdio: ["ignore", "pipe", "pipe"] })
      let out = ""
      let err = ""
      child.stdout.on("data", (d) => void (out += String(d)))
      child.stderr.on("data", (d) => void (err += String(d)))
      child.on("close", (code) => {
        const keys = out.split("\n").filter((l) => l.startsWith("{")).map((l) => (JSON.parse(l) as { key: string }).key)
        code === 0 ? resolve(keys) : reject(new Error(`writer ${worker} exited ${code}: ${out}${err}`))
      })
    })
  )

describe("gc while other processes put (PostgreSQL)", () => {
  gate(it.live, skipReason())("every blob the writers stored verifies; nothing gc removed is referenced", () =>
    Effect.scoped(Effect.gen(function*() {
      const db = yield* freshDatabase("lifecycle_processes")
      const store = PgStore.layer({ url: Redacted.make(db.url), layout: CasBlobStore.chunked(layout), migrate: true })
      yield* Effect.gen(function*() {
        const lc = yield* Lifecycle.make()
        const kv = yield* KeyValueStore
        // Leak the shared prefix's blocks (and those of two contents), as a crash would.
        for (const c of [0, 1]) {
          const key = (yield* Stream.run(chunked(content(c)), (yield* BlobStore).put())).key
          yield* kv.delete(BlobMeta.blobKey(key))
        }
        yield* Stream.runForEach(kv.list(BlobMeta.BLOCKS), ([k, raw]) => {
          const block = Either.getOrThrow(BlobMeta.decodeBlock(raw))
          return block._tag === "Live" ? kv.put(k, BlobMeta.encodeBlock({ ...block, at: 0 })) : Effect.void
        })
        let done = false
        let runs = 0
        const gcLoop = Effect.gen(function*() {
          while (!done) {
            yield* lc.gc({ grace: Duration.seconds(10) })
            runs++
          }
        })
        const writers = Effect.all([writer(0, db.url), writer(1, db.url)], { concurrency: 2 }).pipe(
          Effect.ensuring(Effect.sync(() => void (done = true)))
        )
        const [written] = yield* Effect.all([writers, gcLoop], { concurrency: 2 })
        expect(runs).toBeGreaterThan(0)
        const blobs = yield* BlobStore
        for (const [w, keys] of written.entries()) {
          const contents = contentsOf(w)
          expect(keys.length).toBe(contents.length)
          for (const [i, text] of keys.entries()) {
            const got = yield* collect(blobs.get(Either.getOrThrow(BinaryKey.parse(text))))
            expect(sameBytes(got, contents[i]!), text).toBe(true)
          }
        }
        const found = yield* lc.check({ grace: Duration.millis(0), readData: true })
        for (const p of found.problems) expect(p.kind, p.description).toBe("refcount")
        yield* lc.check({ grace: Duration.millis(0), repair: true })
        expect((yield* lc.check({ grace: Duration.millis(0), readData: true })).problems).toEqual([])
        // Leaked blocks no writer took again are gc's now, and only those.
        yield* lc.gc({ grace: Duration.millis(0) })
        expect((yield* lc.check({ grace: Duration.millis(0), readData: true })).problems).toEqual([])
      }).pipe(Effect.provide(store))
    })), 300_000)
})
