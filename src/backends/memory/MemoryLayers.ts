/**
 * Every port on in-memory backends, in one layer: the original
 * `PgLayers.live` idea for tests and demos. One MetricsRegistry and one
 * BackendEvents bus are built once and shared by every store, so metrics of
 * all backends land in the same registry and one subscriber sees every
 * event. RangeTracker and ReplicaIndex are the KV-backed ones, over the
 * same MemoryKeyValueStore that the layer exposes.
 */
import * as Layer from "effect/Layer"
import type { BackendEvents } from "../../ports/BackendEvents.js"
import type { BlobStore } from "../../ports/BlobStore.js"
import type { KeyValueStore } from "../../ports/KeyValueStore.js"
import type { MetricsRegistry } from "../../ports/MetricsRegistry.js"
import type { ImmutableObjectStore, MutableObjectStore } from "../../ports/ObjectStore.js"
import type { RangeTracker } from "../../ports/RangeTracker.js"
import type { ReplicaIndex } from "../../ports/ReplicaIndex.js"
import * as Events from "../../kit/Events.js"
import * as KvRangeTracker from "../../kit/KvRangeTracker.js"
import * as KvReplicaIndex from "../../kit/KvReplicaIndex.js"
import * as Metrics from "../../kit/Metrics.js"
import * as MemoryBlobStore from "./MemoryBlobStore.js"
import * as MemoryKeyValueStore from "./MemoryKeyValueStore.js"
import * as MemoryObjectStore from "./MemoryObjectStore.js"

/** Every service `live` provides. */
export type Services =
  | BlobStore
  | MutableObjectStore
  | ImmutableObjectStore
  | KeyValueStore
  | RangeTracker
  | ReplicaIndex
  | MetricsRegistry
  | BackendEvents

/** KeyValueStore, RangeTracker and ReplicaIndex over one in-memory key-value store. */
export const metadata: Layer.Layer<KeyValueStore | RangeTracker | ReplicaIndex> = Layer.mergeAll(
  KvRangeTracker.layer,
  KvReplicaIndex.layer
).pipe(Layer.provideMerge(MemoryKeyValueStore.layer))

/** Fresh, empty in-memory stores for every port, sharing one MetricsRegistry and one BackendEvents. */
export const live: Layer.Layer<Services> = Layer.mergeAll(
  metadata,
  MemoryObjectStore.layer,
  MemoryBlobStore.layer
).pipe(Layer.provideMerge(Layer.merge(Metrics.layer, Events.layer)))
