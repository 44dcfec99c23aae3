/**
 * One list of key namespaces (KvKey.NAMESPACES): every prefix Graviton
 * writes is in it, and the embedded home's LevelDB holds each namespace in
 * its own sublevel (`!<ns>!<rest>`, the layout earlier versions used for
 * the same names), with nothing in the old shared `default` sublevel.
 */
import { describe, expect, it } from "@effect/vitest"
import { ClassicLevel } from "classic-level"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as BlobMeta from "../../src/blobs/BlobMeta.js"
import * as CasBlobStore from "../../src/blobs/CasBlobStore.js"
import * as Counters from "../../src/blobs/counters.js"
import * as MetricsState from "../../src/cli/metricsState.js"
import { TARGETS_PREFIX } from "../../src/cli/commands/replicate.js"
import * as KvKey from "../../src/core/KvKey.js"
import * as KvRangeTracker from "../../src/kit/KvRangeTracker.js"
import * as KvReplicaIndex from "../../src/kit/KvReplicaIndex.js"
import { BlobStore } from "../../src/ports/BlobStore.js"
import * as EmbeddedStore from "../../src/stores/EmbeddedStore.js"
import { chunked, randomBytes } from "../../src/testing/bytes.js"
import * as Uploads from "../../src/uploads/Uploads.js"
import { tempDir } from "../blobs/fixtures.js"

describe("key namespaces", () => {
  it("every prefix Graviton writes is a declared namespace", () => {
    const prefixes = [
      BlobMeta.BLOBS,
      BlobMeta.BLOCKS,
      Counters.NAMESPACE,
      KvRangeTracker.NAMESPACE,
      KvReplicaIndex.NAMESPACE,
      Uploads.NAMESPACE,
      MetricsState.KEY,
      TARGETS_PREFIX
    ]
    for (const prefix of prefixes) expect(KvKey.NAMESPACES, prefix).toContain(KvKey.namespaceOf(prefix))
  })

  it.live("the embedded home keeps each namespace in its own sublevel, nothing in the old default one", () =>
    Effect.gen(function*() {
      const home = tempDir("namespaces-embedded-")
      yield* Effect.gen(function*() {
        const blobs = yield* BlobStore
        yield* Stream.run(chunked(randomBytes(300_000, 9)), blobs.put())
        const uploads = yield* Uploads.Uploads
        yield* uploads.begin({})
      }).pipe(Effect.provide(EmbeddedStore.layerWithUploads({ home, layout: CasBlobStore.chunked({ avg: 64 * 1024 }) })))
      const keys = yield* Effect.promise(async () => {
        const db = new ClassicLevel<string, Uint8Array>(EmbeddedStore.metaDir(home), { keyEncoding: "utf8", valueEncoding: "view" })
        try {
          return await db.keys().all()
        } finally {
          await db.close()
        }
      })
      const sublevels = new Set(keys.map((k) => k.slice(1, k.indexOf("!", 1))))
      for (const ns of sublevels) expect(KvKey.NAMESPACES).toContain(ns)
      for (const ns of ["blobs", "blocks", "uploads"]) expect(sublevels).toContain(ns)
      expect(sublevels).not.toContain("default")
    }))
})
