/**
 * The S3 backend: BlobStore, MutableObjectStore, ImmutableObjectStore and
 * UploadStaging on AWS S3 and S3-compatible services. See docs/backends/s3.md.
 */
export * as S3BlobStore from "./S3BlobStore.js"
export * as S3Client from "./S3Client.js"
export * as S3Config from "./S3Config.js"
export * as S3Error from "./S3Error.js"
export * as S3Layers from "./S3Layers.js"
export * as S3Metrics from "./S3Metrics.js"
export * as S3MultipartUploads from "./S3MultipartUploads.js"
export * as S3ObjectStore from "./S3ObjectStore.js"
export * as S3UploadStaging from "./S3UploadStaging.js"
