/**
 * Environments for the CasBlobStore tests: the store over fresh in-memory
 * ports (or fs + LevelDB in a temp directory), with the underlying ports,
 * a MetricsRegistry and BackendEvents exposed so that tests can look at what
 * was really stored, and tamper with it.
 */
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as NFS from "node:fs"
import * as OS from "node:os"
import * as Path from "node:path"
import * as FsObjectStore from "../../src/backends/fs/FsObjectStore.js"
import * as LevelLayers from "../../src/backends/level/LevelLayers.js"
import * as MemoryLayers from "../../src/backends/memory/MemoryLayers.js"
import * as MemoryObjectStore from "../../src/backends/memory/MemoryObjectStore.js"
import * as BlobLocator from "../../src/core/BlobLocator.js"
import type { ObjectStat } from "../../src/core/Models.js"
import { ObjectStoreError } from "../../src/core/Errors.js"
import type { ObjectStoreCapabilities } from "../../src/ports/ObjectStoreCapabilities.js"
import type { BackendEvents } from "../../src/ports/BackendEvents.js"
import type { BlobStore } from "../../src/ports/BlobStore.js"
import { KeyValueStore } from "../../src/ports/KeyValueStore.js"
import type { MetricsRegistry } from "../../src/ports/MetricsRegistry.js"
import { ImmutableObjectStore, MutableObjectStore, type MutableObjectStoreShape } from "../../src/ports/ObjectStore.js"
import type { ReplicaIndex } from "../../src/ports/ReplicaIndex.js"
import * as CasBlobStore from "../../src/blobs/CasBlobStore.js"
import * as Counters from "../../src/blobs/counters.js"
import * as Events from "../../src/kit/Events.js"
import * as Metrics from "../../src/kit/Metrics.js"

/** Everything a CAS test environment provides. */
export type Env = BlobStore | MutableObjectStore | KeyValueStore | ReplicaIndex | MetricsRegistry | BackendEvents

/** Small blocks, so that modest test inputs span many of them. */
export const smallBlocks = CasBlobStore.chunked({ min: 4 * 1024, avg: 16 * 1024, max: 64 * 1024 })

/** Medium blocks: multi-block blobs from 100 KiB up, at a quarter of the per-block cost of `smallBlocks` on disk. */
export const mediumBlocks = CasBlobStore.chunked({ min: 16 * 1024, avg: 64 * 1024, max: 256 * 1024 })

const shared = Layer.merge(Metrics.layer, Events.layer)

/** CasBlobStore over fresh in-memory ports. */
export const memory = (options: CasBlobStore.Options = {}): Layer.Layer<Env> =>
  CasBlobStore.layer(options).pipe(
    Layer.provideMerge(Layer.merge(MemoryObjectStore.layer, MemoryLayers.metadata)),
    Layer.provideMerge(shared)
  )

/** What `plainObjects` was asked to do, counted. */
export interface PlainCounts {
  moves: number
  rangedGets: number
}

/**
 * The in-memory object store as a plainer backend would be, and declaring
 * it: no rename (move is copy + delete), no ranged reads (a ranged get fails
 * with Unsupported), objects up to `maxObjectSize`. Counts the moves and
 * ranged gets asked of it in `counts`.
 */
export const plainObjects = (
  counts: PlainCounts,
  overrides: Partial<ObjectStoreCapabilities> = {}
): Layer.Layer<MutableObjectStore | ImmutableObjectStore> =>
  Layer.effectContext(Effect.map(MemoryObjectStore.make, (store) => {
    const plain: MutableObjectStoreShape = {
      ...store,
      capabilities: { ...store.capabilities, nativeMove: false, rangedRead: false, ...overrides },
      move: (source, destination) =>
        Effect.suspend(() => {
          counts.moves++
          return Effect.zipLeft(store.copy(source, destination), store.delete(source))
        }),
      get: (locator, range) =>
        range === undefined ? store.get(locator) : Stream.suspend(() => {
          counts.rangedGets++
          return Stream.fail(new ObjectStoreError({ reason: "Unsupported", backend: "plain", method: "get", description: "no ranged reads" }))
        })
    }
    return Context.make(MutableObjectStore, plain).pipe(Context.add(ImmutableObjectStore, plain))
  }))

/** CasBlobStore over `plainObjects` and in-memory metadata. */
export const plain = (counts: PlainCounts, options: CasBlobStore.Options = {}, overrides: Partial<ObjectStoreCapabilities> = {}): Layer.Layer<Env> =>
  CasBlobStore.layer(options).pipe(
    Layer.provideMerge(Layer.merge(plainObjects(counts, overrides), MemoryLayers.metadata)),
    Layer.provideMerge(shared)
  )

/** A fresh temporary directory, removed when the process exits. */
export const tempDir = (prefix: string): string => {
  const dir = NFS.mkdtempSync(Path.join(OS.tmpdir(), prefix))
  process.once("exit", () => NFS.rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** CasBlobStore over FsObjectStore (`<home>/blobs`) and LevelDB (`<home>/meta`). */
export const embedded = (home: string, options: CasBlobStore.Options = {}) =>
  CasBlobStore.layer({ scheme: "file", ...options }).pipe(
    Layer.provideMerge(Layer.merge(
      FsObjectStore.layer({ root: Path.join(home, "blobs"), scheme: "file" }),
      LevelLayers.live({ path: Path.join(home, "meta"), namespaces: ["blobs", "blocks", "replicas", "ranges"] })
    )),
    Layer.provideMerge(shared)
  )

/** Every object under `scheme://bucket/` (default: the store's defaults). */
export const objectsUnder = (path = "", scheme = "file", bucket = "blobs") =>
  Effect.flatMap(MutableObjectStore, (objects) =>
    Effect.map(
      Stream.runCollect(objects.list(Either.getOrThrow(BlobLocator.makePrefix(scheme, bucket, path)))),
      (c): ReadonlyArray<ObjectStat> => Chunk.toReadonlyArray(c)
    ))

/** Total bytes of the objects under a prefix. */
export const storedBytes = (path = "", scheme = "file", bucket = "blobs") =>
  Effect.map(objectsUnder(path, scheme, bucket), (all) => all.reduce((n, o) => n + o.size, 0))

const decodeValue = (bytes: Uint8Array): unknown => {
  const text = new TextDecoder().decode(bytes)
  try {
    return JSON.parse(text)
  } catch {
    // Replica sets are newline-separated locator texts.
    return text
  }
}

/**
 * Every KV entry under a prefix, as [key, decoded JSON (or the text when it is not JSON)],
 * leaving out the space counters (`stats/…`, kept from the store's opening on; lifecycle tests check them).
 */
export const kvEntries = (prefix: string) =>
  Effect.flatMap(KeyValueStore, (kv) =>
    Effect.map(Stream.runCollect(kv.list(prefix)), (c) =>
      Chunk.toReadonlyArray(c).filter(([k]) => !k.startsWith(Counters.NAMESPACE)).map(([k, v]) => [k, decodeValue(v)] as const)))
