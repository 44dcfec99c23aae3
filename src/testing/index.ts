/**
 * The conformance suites, one per port, for anyone writing a backend: each
 * is a function of the backend's `Layer` and its capabilities, to be called
 * from an `@effect/vitest` test file (a gap the backend declares shows as a
 * skipped test with its reason). `Chaos` wraps a store with seeded transient
 * failures, latency and damaged reads, to test an app's retries against.
 */
export * from "./capabilities.js"
export { type BlobStoreCapabilities, testBlobStore } from "./BlobStore.js"
export { type KeyValueStoreCapabilities, testKeyValueStore } from "./KeyValueStore.js"
export { type ObjectStoreSuiteOptions, testImmutableObjectStore, testMutableObjectStore } from "./ObjectStore.js"
export { type RangeTrackerCapabilities, testRangeTracker } from "./RangeTracker.js"
export { type ReplicaIndexCapabilities, testReplicaIndex } from "./ReplicaIndex.js"
export { testUploads, type UploadsFixture } from "./Uploads.js"
export * as Chaos from "../kit/Chaos.js"
