/**
 * The `graviton` entry: core values and errors, the ports, the kit backends
 * share, the content-addressed BlobStore, resumable uploads and replication.
 * Backends and ready-made stores have their own subpaths (`graviton/memory`,
 * `graviton/pg`, `graviton/embedded`, ...), so importing this one loads no
 * driver; the HTTP gateway is `graviton/gateway` (it loads @effect/platform-node).
 */
export * from "./core/index.js"
export * from "./ports/index.js"
export * from "./kit/index.js"
export * from "./blobs/index.js"
export * from "./uploads/index.js"
export * from "./replication/index.js"
