/**
 * What PgS3Store and LevelS3Store share: CasBlobStore with its bytes in S3
 * (S3ObjectStore on its own client) over a metadata layer that has no object
 * store, so the bytes can only go to S3.
 */
import * as Layer from "effect/Layer"
import type { MetricsRegistry } from "../ports/MetricsRegistry.js"
import * as CasBlobStore from "../blobs/CasBlobStore.js"
import * as Events from "../kit/Events.js"
import * as S3Client from "../backends/s3/S3Client.js"
import type * as S3Config from "../backends/s3/S3Config.js"
import * as S3MultipartUploads from "../backends/s3/S3MultipartUploads.js"
import * as S3ObjectStore from "../backends/s3/S3ObjectStore.js"

/** CasBlobStore over S3 bytes and `metadata`, reporting to `metrics` and a fresh event bus. */
export const casOverS3 = <M, E>(
  s3: S3Config.S3ClientOptions,
  layout: CasBlobStore.Layout | undefined,
  metadata: Layer.Layer<M, E>,
  metrics: Layer.Layer<MetricsRegistry>
) =>
  CasBlobStore.layer({ scheme: S3ObjectStore.SCHEME, bucket: s3.bucket, layout: layout ?? CasBlobStore.monolithic }).pipe(
    Layer.provideMerge(Layer.merge(
      // MultipartUploads: what the lifecycle's gc lists and aborts (unfinished multipart puts).
      Layer.merge(S3ObjectStore.layer, S3MultipartUploads.layer).pipe(Layer.provideMerge(S3Client.layer(s3))),
      metadata
    )),
    Layer.provideMerge(Layer.merge(metrics, Events.layer))
  )

