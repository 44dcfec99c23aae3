/** The local filesystem backend: an object store under one root directory, and a file UploadStaging over it. */
export * as FsErrors from "./errors.js"
export * as FsLayers from "./FsLayers.js"
export * as FsObjectStore from "./FsObjectStore.js"
export * as FsUploadStaging from "./FsUploadStaging.js"
