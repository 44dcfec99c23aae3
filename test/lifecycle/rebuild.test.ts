/**
 * Rebuilding the index from the data: the metadata of an embedded home is
 * deleted, and `check --repair` records the monolithic blobs again from
 * their objects (re-hashed); block records lost while the manifests survive
 * are restored from the manifests. gc never removes objects while no blob
 * record exists at all (the metadata may be lost).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as NFS from "node:fs"
import * as Path from "node:path"
import type * as BinaryKey from "../../src/core/BinaryKey.js"
import * as BlobMeta from "../../src/blobs/BlobMeta.js"
import * as CasBlobStore from "../../src/blobs/CasBlobStore.js"
import { BlobStore } from "../../src/ports/BlobStore.js"
import { KeyValueStore } from "../../src/ports/KeyValueStore.js"
import * as Lifecycle from "../../src/lifecycle/Lifecycle.js"
import * as EmbeddedStore from "../../src/stores/EmbeddedStore.js"
import { chunked, collect, randomBytes, sameBytes } from "../../src/testing/bytes.js"
import { tempDir } from "../blobs/fixtures.js"
import { blocks } from "./suite.js"

const put = (bytes: Uint8Array) => Effect.flatMap(BlobStore, (s) => Stream.run(chunked(bytes), s.put()))
const read = (key: BinaryKey.BinaryKey) => collect(Stream.unwrap(Effect.map(BlobStore, (s) => s.get(key))))
const GRACE = Duration.millis(50)

describe("index rebuild", () => {
  it.live("embedded: after the metadata is deleted, check --repair records every monolithic blob again", () =>
    Effect.gen(function*() {
      const home = tempDir("lifecycle-rebuild-")
      const contents = [randomBytes(50_000, 1), randomBytes(3, 2), randomBytes(300_000, 3)]
      const keys = yield* Effect.scoped(
        Effect.forEach(contents, (c) => Effect.map(put(c), (r) => r.key)).pipe(
          Effect.provide(EmbeddedStore.layer({ home, layout: CasBlobStore.monolithic }))
        )
      )
      NFS.rmSync(Path.join(home, "meta"), { recursive: true, force: true })
      yield* Effect.sleep(Duration.millis(100))
      yield* Effect.scoped(Effect.gen(function*() {
        const lc = yield* Lifecycle.make()
        expect((yield* lc.stats).blobs).toBe(0)
        // Every object is an orphan now: gc must keep them.
        const gc = yield* lc.gc({ grace: GRACE })
        expect(gc.total.count).toBe(0)
        expect(gc.notes.join(" ")).toContain("check --repair")
        const repaired = yield* lc.check({ grace: GRACE, repair: true })
        expect(repaired.repairs.reindexed).toBe(contents.length)
        expect(repaired.unrepaired).toBe(0)
        expect((yield* lc.stats).blobs).toBe(contents.length)
        for (let i = 0; i < keys.length; i++) expect(sameBytes(yield* read(keys[i]!), contents[i]!)).toBe(true)
        expect((yield* lc.check({ grace: GRACE, readData: true })).problems).toEqual([])
      }).pipe(Effect.provide(EmbeddedStore.layer({ home, layout: CasBlobStore.monolithic }))))
    }), 120_000)

  it.live("embedded: lost block records are restored from the surviving manifests", () =>
    Effect.scoped(Effect.gen(function*() {
      const lc = yield* Lifecycle.make()
      const content = randomBytes(250_000, 4)
      const key = (yield* put(content)).key
      const kv = yield* KeyValueStore
      const lost = yield* Stream.runCollect(kv.list(BlobMeta.BLOCKS))
      for (const [k] of lost) yield* kv.delete(k)
      const found = yield* lc.check({ grace: GRACE })
      expect(found.problemCounts.missingBlockRecord).toBe(lost.length)
      const fixed = yield* lc.check({ grace: GRACE, repair: true })
      expect(fixed.repairs.blockRecordRestored).toBe(lost.length)
      expect((yield* lc.check({ grace: GRACE, readData: true })).problems).toEqual([])
      expect(sameBytes(yield* read(key), content)).toBe(true)
      // The restored counts are right: deleting the blob frees every block.
      yield* (yield* BlobStore).delete(key)
      expect((yield* Stream.runCollect(kv.list(BlobMeta.BLOCKS))).length).toBe(0)
    }).pipe(Effect.provide(EmbeddedStore.layer({ home: tempDir("lifecycle-blocks-"), layout: blocks })))), 120_000)
})
