/** Replication: copies of blobs on other stores, recorded in a ReplicaIndex, and a BlobStore that repairs from them. */
export * as ReplicatedBlobStore from "./ReplicatedBlobStore.js"
export * as Replicator from "./Replicator.js"
