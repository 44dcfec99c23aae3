export * from "./BackendEvents.js"
export { BlobStore } from "./BlobStore.js"
export { type AssemblyPart, BlobAssembly } from "./BlobAssembly.js"
export * as KV from "./KeyValueStore.js"
export { KeyValueStore, type KvCheck, type KvWrite } from "./KeyValueStore.js"
export { MultipartUploads, type PendingMultipart } from "./MultipartUploads.js"
export { MetricsRegistry, type MetricSample, type MetricTags } from "./MetricsRegistry.js"
export {
  ImmutableObjectStore,
  type ImmutableObjectStoreShape,
  MutableObjectStore,
  type MutableObjectStoreShape
} from "./ObjectStore.js"
export * as ObjectStoreCapabilities from "./ObjectStoreCapabilities.js"
export type { ObjectStoreFeature, ServerSideEncryption } from "./ObjectStoreCapabilities.js"
export { RangeTracker } from "./RangeTracker.js"
export { ReplicaIndex } from "./ReplicaIndex.js"
export { UnitOfWork } from "./UnitOfWork.js"
export { type CompleteHint, type StagingState, UploadStaging } from "./UploadStaging.js"
