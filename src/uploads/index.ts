/** Resumable uploads: spans staged as they arrive, assembled into a blob on complete. */
export * as ObjectStaging from "./ObjectStaging.js"
export * as Uploads from "./Uploads.js"
