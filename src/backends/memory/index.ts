/**
 * In-memory backends for every port: fakes for tests and demos that keep
 * every rule of the ports. `live` provides them all at once; the per-port
 * layers build one store each. Every build of a layer starts empty; within
 * one build, layers are memoized, so `layerKeyValueStore`,
 * `layerRangeTracker` and `layerReplicaIndex` merged together share one
 * key-value store (wrap one in `Layer.fresh` to keep it apart).
 */
import * as Layer from "effect/Layer"
import type { RangeTracker } from "../../ports/RangeTracker.js"
import type { ReplicaIndex } from "../../ports/ReplicaIndex.js"
import * as KvRangeTracker from "../../kit/KvRangeTracker.js"
import * as KvReplicaIndex from "../../kit/KvReplicaIndex.js"
import * as MemoryBlobStore from "./MemoryBlobStore.js"
import * as MemoryKeyValueStore from "./MemoryKeyValueStore.js"
import * as MemoryLayers from "./MemoryLayers.js"
import * as MemoryObjectStore from "./MemoryObjectStore.js"

export { MemoryBlobStore, MemoryKeyValueStore, MemoryLayers, MemoryObjectStore }

/** Every port on in-memory backends, with one shared MetricsRegistry and BackendEvents (see MemoryLayers). */
export const live = MemoryLayers.live

/** An in-memory KeyValueStore. */
export const layerKeyValueStore = MemoryKeyValueStore.layer

/** An in-memory content-addressed BlobStore. */
export const layerBlobStore = MemoryBlobStore.layer

/** An in-memory MutableObjectStore (also provided as ImmutableObjectStore). */
export const layerObjectStore = MemoryObjectStore.layer

/** A RangeTracker over an in-memory KeyValueStore (see the note above on sharing). */
export const layerRangeTracker: Layer.Layer<RangeTracker> = KvRangeTracker.layer.pipe(
  Layer.provide(MemoryKeyValueStore.layer)
)

/** A ReplicaIndex over an in-memory KeyValueStore (see the note above on sharing). */
export const layerReplicaIndex: Layer.Layer<ReplicaIndex> = KvReplicaIndex.layer.pipe(
  Layer.provide(MemoryKeyValueStore.layer)
)

/** KeyValueStore, RangeTracker and ReplicaIndex sharing one in-memory key-value store. */
export const layerMetadata = MemoryLayers.metadata
