/**
 * A put killed at a known step, for killed.test.ts (run with tsx):
 *
 *   tsx killedPut.ts <home> <claim|move|publish> <monolithic|chunked> <seed>
 *
 * Opens the embedded store at <home> as EmbeddedStore does (fs objects,
 * LevelDB metadata), with the store's own CasBlobStore over ports that stop
 * at one step of a put: `claim` (the staged object is written, the record
 * not yet claimed), `move` (claimed Pending, the staged object not yet moved
 * to its address), `publish` (the record about to become Live: a monolithic
 * object is at its address, a chunked put's blocks hold their references).
 * There it prints `at <step>` and waits forever; the test SIGKILLs it, so
 * whatever the put leaves is what a real crash at that step leaves.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import { mkdirSync } from "node:fs"
import * as FsObjectStore from "../../src/backends/fs/FsObjectStore.js"
import * as LevelLayers from "../../src/backends/level/LevelLayers.js"
import * as CasBlobStore from "../../src/blobs/CasBlobStore.js"
import * as Events from "../../src/kit/Events.js"
import * as Metrics from "../../src/kit/Metrics.js"
import { BlobStore } from "../../src/ports/BlobStore.js"
import { KeyValueStore, type KvWrite } from "../../src/ports/KeyValueStore.js"
import { MutableObjectStore } from "../../src/ports/ObjectStore.js"
import * as EmbeddedStore from "../../src/stores/EmbeddedStore.js"
import { chunked, randomBytes } from "../../src/testing/bytes.js"
import { blocks } from "./layout.js"

const [home, step, layoutName, seed] = process.argv.slice(2) as [string, "claim" | "move" | "publish", string, string]

const stop = Effect.zipRight(Effect.sync(() => console.log(`at ${step}`)), Effect.never)

const decoder = new TextDecoder()
/** The state a write gives a blob record ("pending", "live"), if it writes one. */
const blobState = (w: KvWrite): string | undefined => {
  if (w._tag !== "Put" || !w.key.startsWith("blobs/")) return undefined
  return (JSON.parse(decoder.decode(w.value)) as { state?: string }).state
}
const stopsAt = (writes: ReadonlyArray<KvWrite>) =>
  writes.some((w) => blobState(w) === (step === "claim" ? "pending" : step === "publish" ? "live" : undefined))

const hookedKv = Layer.effect(
  KeyValueStore,
  Effect.map(KeyValueStore, (kv) => ({
    ...kv,
    commit: (checks, writes) => (stopsAt(writes) ? stop : kv.commit(checks, writes)),
    compareAndSet: (key, expected, next) =>
      next._tag === "Some" && stopsAt([{ _tag: "Put", key, value: next.value }]) ? stop : kv.compareAndSet(key, expected, next)
  }))
)
const hookedObjects = Layer.effect(
  MutableObjectStore,
  Effect.map(MutableObjectStore, (objects) => ({
    ...objects,
    move: (from, to) => (step === "move" && from.path.startsWith("staging/") ? stop : objects.move(from, to))
  }))
)

mkdirSync(EmbeddedStore.metaDir(home), { recursive: true })
const ports = FsObjectStore.layer({ root: EmbeddedStore.objectsRoot(home), scheme: EmbeddedStore.SCHEME }).pipe(
  Layer.provideMerge(LevelLayers.live({ path: EmbeddedStore.metaDir(home) })),
  Layer.provideMerge(Layer.merge(Metrics.layer, Events.layer))
)
const store = CasBlobStore.layer({ scheme: EmbeddedStore.SCHEME, layout: layoutName === "chunked" ? blocks : CasBlobStore.monolithic }).pipe(
  Layer.provide(Layer.merge(hookedKv, hookedObjects)),
  Layer.provideMerge(ports)
)

const program = Effect.gen(function*() {
  const s = yield* BlobStore
  yield* Stream.run(chunked(randomBytes(100_000, Number(seed))), s.put())
  console.log("stored")
})

Effect.runPromise(Effect.scoped(Effect.provide(program, store))).then(
  () => process.exit(0),
  (e: unknown) => {
    console.log(`failed ${String(e)}`)
    process.exit(3)
  }
)
