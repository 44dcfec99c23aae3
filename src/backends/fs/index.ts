/** The local filesystem backend: an object store under one root directory. */
export * as FsErrors from "./errors.js"
export * as FsObjectStore from "./FsObjectStore.js"
