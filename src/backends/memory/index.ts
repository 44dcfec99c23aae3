/**
 * In-memory backends for every port: fakes for tests and demos that keep
 * every rule of the ports. `MemoryLayers.live` provides them all at once;
 * each module's `layer` builds one store. Every build of a layer starts
 * empty; within one build, layers are memoized, so per-port layers merged
 * together share one store (wrap one in `Layer.fresh` to keep it apart).
 */
export * as MemoryBlobStore from "./MemoryBlobStore.js"
export * as MemoryKeyValueStore from "./MemoryKeyValueStore.js"
export * as MemoryLayers from "./MemoryLayers.js"
export * as MemoryObjectStore from "./MemoryObjectStore.js"
