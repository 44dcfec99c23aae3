/**
 * A primary CasBlobStore (memory, or fs + LevelDB in a temp directory) with
 * its underlying ports exposed for tampering, two target stores of the same
 * kind taken out as plain values, and helpers to damage copies behind the
 * stores' backs.
 */
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as NodePath from "node:path"
import type * as BinaryKey from "../../src/core/BinaryKey.js"
import type * as BlobLocator from "../../src/core/BlobLocator.js"
import { BackendEvents } from "../../src/ports/BackendEvents.js"
import { BlobStore } from "../../src/ports/BlobStore.js"
import { MetricsRegistry } from "../../src/ports/MetricsRegistry.js"
import { MutableObjectStore } from "../../src/ports/ObjectStore.js"
import { ReplicaIndex } from "../../src/ports/ReplicaIndex.js"
import type * as CasBlobStore from "../../src/blobs/CasBlobStore.js"
import * as Replicator from "../../src/replication/Replicator.js"
import * as Retry from "../../src/kit/Retry.js"
import * as Fixtures from "../blobs/fixtures.js"

export type Kind = "memory" | "embedded"

/** A store and the ports under it. */
export interface Node {
  readonly store: BlobStore["Type"]
  readonly objects: MutableObjectStore["Type"]
  readonly index: ReplicaIndex["Type"]
  readonly context: Context.Context<Fixtures.Env>
}

/** Retries quickly under the live clock. */
export const fastRetries = Retry.policy({ base: Duration.millis(1), jitter: false, maxRetries: 4 })

let counter = 0
let base: string | undefined

/** One temp directory per test file (each adds an exit listener), one sub-directory per store. */
const freshDir = (): string => {
  base ??= Fixtures.tempDir("graviton-replication-")
  return NodePath.join(base, `n${counter++}`)
}

/** A fresh store of `kind` (CasBlobStore `options`), built in the current scope. */
export const node = (kind: Kind, options: CasBlobStore.Options = {}): Effect.Effect<Node, never, Scope.Scope> =>
  Effect.gen(function*() {
    const layer = kind === "memory"
      ? Fixtures.memory(options)
      : Fixtures.embedded(freshDir(), options)
    const context = yield* Effect.orDie(Layer.build(layer))
    return {
      store: Context.get(context, BlobStore),
      objects: Context.get(context, MutableObjectStore),
      index: Context.get(context, ReplicaIndex),
      context
    }
  })

/** A primary, two targets "east" and "west", and a Replicator over the primary. */
export interface World {
  readonly primary: Node
  readonly east: Node
  readonly west: Node
  readonly targets: ReadonlyArray<Replicator.Target>
  readonly replicator: Replicator.Replicator["Type"]
  /** Runs an effect with the primary's services. */
  readonly run: <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, Exclude<R, Fixtures.Env>>
  readonly events: BackendEvents["Type"]
  readonly metrics: MetricsRegistry["Type"]
}

/** A world of `kind`; `primaryOptions` configure the primary's CasBlobStore (e.g. the chunked layout). */
export const world = (kind: Kind, primaryOptions: CasBlobStore.Options = {}): Effect.Effect<World, never, Scope.Scope> =>
  Effect.gen(function*() {
    const primary = yield* node(kind, primaryOptions)
    const east = yield* node(kind)
    const west = yield* node(kind)
    const targets = [{ name: "east", store: east.store }, { name: "west", store: west.store }]
    const run = <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.provide(self, primary.context)
    const replicator = yield* run(Replicator.make({ targets, schedule: fastRetries }))
    return {
      primary,
      east,
      west,
      targets,
      replicator,
      run,
      events: Context.get(primary.context, BackendEvents),
      metrics: Context.get(primary.context, MetricsRegistry)
    }
  })

/** Deterministic pseudo-random bytes. */
export const bytes = (size: number, seed: number): Uint8Array => {
  const out = new Uint8Array(size)
  let x = seed >>> 0 || 1
  for (let i = 0; i < size; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    out[i] = x & 0xff
  }
  return out
}

/** Stores `content` in `store` (in a few chunks) and returns its key. */
export const put = (store: BlobStore["Type"], content: Uint8Array) =>
  Effect.map(
    Stream.run(Stream.fromIterable([content.subarray(0, 1000), content.subarray(1000)]), store.put()),
    (r) => r.key
  )

/** Reads a whole stream into one array. */
export const collect = <E>(stream: Stream.Stream<Uint8Array, E>) =>
  Effect.map(Stream.runCollect(stream), (chunks) => Buffer.concat(Chunk.toReadonlyArray(chunks)))

/** The locator of the primary copy, from stat. */
export const locatorOf = (n: Node, key: BinaryKey.BinaryKey) =>
  Effect.map(n.store.stat(key), (s) => Option.getOrThrow(Option.getOrThrow(s).locator))

/** Removes the object under a blob, leaving its record alive. */
export const dropObject = (n: Node, key: BinaryKey.BinaryKey) =>
  Effect.flatMap(locatorOf(n, key), (l) => n.objects.delete(l))

/** Overwrites the object under a blob with other bytes of the same length. */
export const corruptObject = (n: Node, key: BinaryKey.BinaryKey) =>
  Effect.flatMap(locatorOf(n, key), (l: BlobLocator.BlobLocator) =>
    Stream.run(Stream.make(bytes(key.size, 999)), n.objects.put(l)))

/** The index entries of `key` as text. */
export const entries = (n: Node, key: BinaryKey.BinaryKey) =>
  Effect.map(n.index.replicas(key), (ls) => ls.map(String))
