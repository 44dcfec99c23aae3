/**
 * Chaos-wrapped stores for the chaos tests: memory and embedded (fs +
 * LevelDB) object and key-value stores behind `Chaos`, with the retry policy
 * of src/kit/Retry.ts between them and their users, as OpenDAL stacks its
 * RetryLayer over its ChaosLayer.
 *
 * The retry wrapper repeats a call that failed with a transient reason. That
 * is safe here because the chaos layer fails a call before it reaches the
 * store (see Chaos.ts), except a streaming `put`, which this wrapper never
 * repeats (its input is consumed once: only the caller, who still has the
 * source, can put again). Streams (`get`, `list`) are repeated only when
 * they failed before their first element.
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import * as NFS from "node:fs"
import * as OS from "node:os"
import * as Path from "node:path"
import * as FsObjectStore from "../../src/backends/fs/FsObjectStore.js"
import * as LevelDatabase from "../../src/backends/level/LevelDatabase.js"
import * as LevelKeyValueStore from "../../src/backends/level/LevelKeyValueStore.js"
import * as MemoryKeyValueStore from "../../src/backends/memory/MemoryKeyValueStore.js"
import * as MemoryObjectStore from "../../src/backends/memory/MemoryObjectStore.js"
import * as CasBlobStore from "../../src/blobs/CasBlobStore.js"
import { isTransient } from "../../src/core/Errors.js"
import * as Chaos from "../../src/kit/Chaos.js"
import * as Events from "../../src/kit/Events.js"
import * as KvRangeTracker from "../../src/kit/KvRangeTracker.js"
import * as KvReplicaIndex from "../../src/kit/KvReplicaIndex.js"
import * as Metrics from "../../src/kit/Metrics.js"
import * as Retry from "../../src/kit/Retry.js"
import { KeyValueStore } from "../../src/ports/KeyValueStore.js"
import { ImmutableObjectStore, MutableObjectStore, type MutableObjectStoreShape } from "../../src/ports/ObjectStore.js"

/** Fast backoff: chaos tests make thousands of calls, a fifth of them failing. */
export const schedule = Retry.policy({ base: Duration.millis(1), factor: 2, maxRetries: 12, maxElapsed: Duration.seconds(20) })

/** Retries a call on transient reasons with `schedule`; counts the retries in `retries`. */
export const retries = { count: 0 }
const again = Retry.retryTransient({ schedule, onRetry: () => Effect.sync(() => void retries.count++) })

/** Repeats a stream that failed transiently before its first element. */
const againStream = <A, E>(body: Stream.Stream<A, E>): Stream.Stream<A, E> =>
  Stream.suspend(() => {
    let emitted = false
    return body.pipe(
      Stream.tap(() => Effect.sync(() => void (emitted = true))),
      Stream.retry(schedule.pipe(
        Schedule.whileInput((e: unknown) => !emitted && isTransient(e)),
        Schedule.tapInput((e: unknown) => Effect.sync(() => void (!emitted && isTransient(e) && retries.count++)))
      ))
    )
  })

/** The object store with every repeatable call retried (a streaming put is not). */
export const retryingObjects = (store: MutableObjectStoreShape): MutableObjectStoreShape => ({
  capabilities: store.capabilities,
  head: (l) => again(store.head(l)),
  list: (p) => againStream(store.list(p)),
  get: (l, r) => againStream(store.get(l, r)),
  put: (l, o) => store.put(l, o),
  write: (l, b, o) => again(store.write(l, b, o)),
  delete: (l) => again(store.delete(l)),
  copy: (s, d) => again(store.copy(s, d)),
  move: (s, d) => again(store.move(s, d))
})

/** The key-value store with every call retried. */
export const retryingKv = (kv: KeyValueStore["Type"]): KeyValueStore["Type"] => ({
  get: (k) => again(kv.get(k)),
  put: (k, v) => again(kv.put(k, v)),
  delete: (k) => again(kv.delete(k)),
  list: (p) => againStream(kv.list(p)),
  compareAndSet: (k, e, n) => again(kv.compareAndSet(k, e, n)),
  commit: (c, w) => again(kv.commit(c, w))
})

/**
 * Faults on every call the retry wrapper can repeat: a fifth of head, get,
 * list, write (write, copy, move; KV put, compareAndSet, commit) and delete
 * fail transiently; every call is delayed 0-1 ms. No streaming-put failures
 * and no damaged reads (see blobs.suites.test.ts).
 */
export const repeatable = (seed: number): Chaos.Options => ({
  seed,
  failure: { head: 0.2, get: 0.2, list: 0.2, write: 0.2, delete: 0.2 },
  latency: { min: 0, max: Duration.millis(1) }
})

/** Whether the retry policy sits between the chaos and the store's users. */
export type Retrying = "retry" | "no retry"

/** The MutableObjectStore of the context behind `chaos` (and retries), as both object store tags. */
export const faultyObjects = (chaos: Chaos.Chaos, retrying: Retrying = "retry") =>
  Layer.effectContext(Effect.map(MutableObjectStore, (store) => {
    const faulty = chaos.objectStore(store)
    const used = retrying === "retry" ? retryingObjects(faulty) : faulty
    return Context.make(MutableObjectStore, used).pipe(Context.add(ImmutableObjectStore, used))
  }))

/** The KeyValueStore of the context behind `chaos` (and retries). */
export const faultyKv = (chaos: Chaos.Chaos, retrying: Retrying = "retry") =>
  Layer.effect(KeyValueStore, Effect.map(KeyValueStore, (kv) => {
    const faulty = chaos.keyValueStore(kv)
    return retrying === "retry" ? retryingKv(faulty) : faulty
  }))

/** KeyValueStore, RangeTracker and ReplicaIndex over a faulty KV. */
const metadataOver = <E>(kv: Layer.Layer<KeyValueStore, E>, chaos: Chaos.Chaos, retrying: Retrying) =>
  Layer.mergeAll(KvRangeTracker.layer, KvReplicaIndex.layer).pipe(
    Layer.provideMerge(faultyKv(chaos, retrying).pipe(Layer.provide(kv)))
  )

/** Faulty in-memory ports: object store, KeyValueStore, RangeTracker, ReplicaIndex. */
export const memoryPorts = (chaos: Chaos.Chaos, retrying: Retrying = "retry") =>
  Layer.merge(
    faultyObjects(chaos, retrying).pipe(Layer.provide(MemoryObjectStore.layer)),
    metadataOver(MemoryKeyValueStore.layer, chaos, retrying)
  )

/** A faulty LevelDB KeyValueStore (with RangeTracker and ReplicaIndex) at `path`. */
export const levelMetadata = (path: string, chaos: Chaos.Chaos, retrying: Retrying = "retry", namespaces?: ReadonlyArray<string>) =>
  metadataOver(
    LevelKeyValueStore.layer.pipe(Layer.provide(LevelDatabase.layer({ path, ...(namespaces ? { namespaces } : {}) }))),
    chaos,
    retrying
  )

/** Faulty embedded ports: FsObjectStore under `<home>/blobs`, LevelDB under `<home>/meta`. */
export const embeddedPorts = (home: string, chaos: Chaos.Chaos, retrying: Retrying = "retry") =>
  Layer.merge(
    faultyObjects(chaos, retrying).pipe(
      Layer.provide(FsObjectStore.layer({ root: Path.join(home, "blobs"), scheme: "file" }))
    ),
    levelMetadata(Path.join(home, "meta"), chaos, retrying)
  )

/** CasBlobStore over faulty ports, with metrics and events (the ports stay visible, to count what is stored). */
export const cas = <A, E>(
  ports: Layer.Layer<A, E>,
  options: CasBlobStore.Options = {}
) =>
  CasBlobStore.layer(options).pipe(
    Layer.provideMerge(ports),
    Layer.provideMerge(Layer.merge(Metrics.layer, Events.layer))
  )

/** A fresh temporary directory, removed when the process exits. */
export const tempDir = (prefix: string): string => {
  const dir = NFS.mkdtempSync(Path.join(OS.tmpdir(), prefix))
  process.once("exit", () => NFS.rmSync(dir, { recursive: true, force: true }))
  return dir
}
