/**
 * The embedded default composed by hand: CasBlobStore over files + LevelDB
 * metadata (the home is laid out as EmbeddedStore.layer lays it out: the
 * LevelDB namespaces are Graviton's one list, KvKey.NAMESPACES).
 * Run from the repository root: `npx tsx examples/embedded.ts`.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as FsObjectStore from "../src/backends/fs/FsObjectStore.js"
import * as LevelLayers from "../src/backends/level/LevelLayers.js"
import { BlobStore } from "../src/ports/BlobStore.js"
import * as CasBlobStore from "../src/blobs/CasBlobStore.js"
import * as Events from "../src/kit/Events.js"
import * as Metrics from "../src/kit/Metrics.js"

const home = mkdtempSync(join(tmpdir(), "graviton-example-"))

const Embedded = CasBlobStore.layer({ layout: CasBlobStore.monolithic }).pipe(
  Layer.provide(FsObjectStore.layer({ root: join(home, "blobs") })),
  Layer.provide(LevelLayers.metadata({ path: join(home, "meta") })),
  Layer.provideMerge(Layer.merge(Metrics.layer, Events.layer))
)

const program = Effect.gen(function*() {
  const blobs = yield* BlobStore
  const hello = new TextEncoder().encode("hello, graviton")
  const first = yield* Stream.run(Stream.make(hello), blobs.put())
  const second = yield* Stream.run(Stream.make(hello), blobs.put())
  const back = yield* blobs.get(first.key).pipe(Stream.decodeText(), Stream.mkString)
  return { key: String(first.key), text: back, secondDeduplicated: second.deduplicated }
})

Effect.runPromise(program.pipe(Effect.provide(Embedded))).then(
  (result) => console.log(result),
  (error) => {
    console.error(String(error))
    process.exitCode = 1
  }
)
