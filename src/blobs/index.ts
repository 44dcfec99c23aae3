/** The content-addressed BlobStore over any object store and key-value store: monolithic and chunked layouts. */
export * as CasBlobStore from "./CasBlobStore.js"
export * as Chunker from "./Chunker.js"
