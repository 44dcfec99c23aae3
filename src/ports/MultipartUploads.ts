/**
 * Multipart uploads an object store has begun and not finished: on S3 an
 * upload whose CompleteMultipartUpload or AbortMultipartUpload never came
 * (a killed process, a failed abort) keeps its parts, billed, invisible to
 * listings, forever. The lifecycle's `gc` lists the ones under Graviton's
 * prefix and aborts those older than its grace period. Optional: a store
 * without multipart uploads does not provide the tag.
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import type * as Stream from "effect/Stream"
import type { BlobLocator, LocatorPrefix } from "../core/BlobLocator.js"
import type { ObjectStoreError } from "../core/Errors.js"

/** One unfinished multipart upload. */
export interface PendingMultipart {
  /** The object the upload would create. */
  readonly locator: BlobLocator
  readonly uploadId: string
  /** When the upload began, when the store says. */
  readonly initiated: Option.Option<Date>
}

/** See the module comment. */
export class MultipartUploads extends Context.Tag("graviton/MultipartUploads")<MultipartUploads, {
  /** Streams the unfinished uploads whose object would be under `prefix`, in key order, with bounded memory. */
  readonly list: (prefix: LocatorPrefix) => Stream.Stream<PendingMultipart, ObjectStoreError>
  /** Bytes the upload's parts hold so far. */
  readonly size: (upload: PendingMultipart) => Effect.Effect<number, ObjectStoreError>
  /** Aborts the upload (its parts go); an upload already gone succeeds. */
  readonly abort: (upload: PendingMultipart) => Effect.Effect<void, ObjectStoreError>
}>() {}
