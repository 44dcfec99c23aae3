/**
 * The BlobStore port natively on S3: content lives at
 * `<prefix><blobPrefix><algo>/<hex>` (default `blobs/sha256/<hex>`), with
 * its digest, algorithm and size in the object's metadata so that `stat` is
 * one HEAD.
 *
 * How a put stores content, hashing it as it streams:
 * - Content that fits in one part is buffered anyway (internal/upload.ts),
 *   so its key is known before anything is sent: a HEAD checks for the blob,
 *   then one PutObject writes it straight to its content address with
 *   `If-None-Match: *`, so of racing puts exactly one stores it (where the
 *   server honours conditional writes; the others report `deduplicated`).
 * - Longer content streams into a multipart upload under a staging key
 *   (`<blobPrefix>staging/<uuid>`). At the end of the stream the key is
 *   known: if the blob exists, the upload is aborted (nothing was ever
 *   visible); else it is completed, copied server-side to the content
 *   address, and the staging object deleted. Two racing puts of the same
 *   large content may both report `deduplicated: false` (the copy is not
 *   conditional: CopyObject has no portable If-None-Match); the bytes stored
 *   are the same.
 * - A plan with `expectedKey` skips staging: if the blob exists the stream
 *   is only hashed and checked; else it is uploaded straight to its content
 *   address, and a mismatch is caught before PutObject or
 *   CompleteMultipartUpload, so nothing is stored.
 *
 * The storage decisions above are internal/blobs.ts; plan checks, the size
 * guard, the expected-key check, verified reads (full reads re-hashed, ranged
 * reads length-checked) and metrics and events are the BlobStore protocol's
 * (kit/BlobStoreProtocol), as for every BlobStore.
 */
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as BinaryKey from "../../core/BinaryKey.js"
import * as BlobLocator from "../../core/BlobLocator.js"
import type { BlobError, ObjectStoreError } from "../../core/Errors.js"
import * as Hashing from "../../core/Hashing.js"
import type { BlobWritePlan, BlobWriteResult } from "../../core/Models.js"
import { BlobStore } from "../../ports/BlobStore.js"
import * as BlobStoreProtocol from "../../kit/BlobStoreProtocol.js"
import * as Instrument from "../../kit/Instrument.js"
import { addressing, fail, presence, raw, relabel } from "./internal/blobs.js"
import { copy as serverCopy } from "./internal/copy.js"
import { BACKEND, make as makeOps, type Ops } from "./internal/ops.js"
import * as S3Client from "./S3Client.js"
import { normalizePrefix } from "./S3Config.js"
import { SCHEME } from "./S3ObjectStore.js"

export { metadataKeys } from "./internal/blobs.js"

/** Options of the blob namespace. */
export interface S3BlobStoreOptions {
  /** Where blobs live under the client's key prefix. Default "blobs/". */
  readonly blobPrefix?: string | undefined
}

/** Builds the BlobStore on the S3ClientInstance in context. */
export const make = (
  options: S3BlobStoreOptions = {}
): Effect.Effect<BlobStore["Type"], ObjectStoreError, S3Client.S3ClientInstance> =>
  Effect.gen(function*() {
    const blobPrefix = yield* normalizePrefix(options.blobPrefix ?? "blobs")
    const shape = yield* S3Client.S3ClientInstance
    const instrument = yield* Instrument.make(BACKEND, "BlobStore")
    return yield* BlobStoreProtocol.make(raw(makeOps(shape, instrument, { countBytes: false }), blobPrefix), instrument)
  })

/** BlobStore over the S3ClientInstance in context. */
export const layer = (
  options: S3BlobStoreOptions = {}
): Layer.Layer<BlobStore, ObjectStoreError, S3Client.S3ClientInstance> => Layer.effect(BlobStore, make(options))

/** BlobStore over the S3ClientInstance in context, its options from a Config. */
export const layerConfig = (
  config: Config.Config.Wrap<S3BlobStoreOptions>
): Layer.Layer<BlobStore, ObjectStoreError | ConfigError.ConfigError, S3Client.S3ClientInstance> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(config), layer))

/**
 * Adopts an object already staged in the bucket (e.g. a completed multipart
 * upload) as a blob of the namespace `blobPrefix`: the object is read once to
 * be hashed (skipped when `known` is given: the caller hashed the bytes as it
 * wrote them), the key checked against the plan, then copied server-side to
 * its content address unless the blob is already there. On an expected-key
 * mismatch (InvalidInput) nothing is stored and the staged object stays; on
 * success it is deleted. Any other failure also leaves it in place, so the
 * adoption can be repeated (the staged object may be the only copy).
 */
export const adoptStaged = (ops: Ops, blobPrefix: string) =>
(
  staged: BlobLocator.BlobLocator,
  plan?: BlobWritePlan,
  known?: BinaryKey.BinaryKey
): Effect.Effect<BlobWriteResult, BlobError> => {
  const { instrument, settings } = ops
  const at = addressing(settings, blobPrefix)

  return Effect.gen(function*() {
    const checked = yield* BlobStoreProtocol.checkPlan(BACKEND, plan, "sha256", "adopt")
    const startedAt = yield* Clock.currentTimeNanos
    if (staged.scheme !== SCHEME || staged.bucket !== settings.bucket) {
      return yield* fail("InvalidInput", "adopt", `${BlobLocator.render(staged)} is not in this store's bucket ${settings.bucket}`)
    }
    const stagedKey = settings.prefix + staged.path
    const stagedText = BlobLocator.render(staged)
    const info = yield* ops.head(stagedKey, stagedText)
    if (Option.isNone(info)) return yield* fail("NotFound", "adopt", `no staged object ${stagedText}`)
    const size = info.value.size
    if (size > checked.maxSize) return yield* fail("InvalidInput", "adopt", `the content exceeds maxSize (${checked.maxSize} bytes)`)
    const key = known !== undefined && known.algorithm === checked.algorithm && known.size === size
      ? known
      : yield* Effect.scoped(Effect.flatMap(ops.open(stagedKey, stagedText), (opened) => Hashing.hashStream(checked.algorithm, opened.body)))
    if (key.size !== size) {
      return yield* fail("Conflict", "adopt", `${stagedText} changed while it was read (${key.size} of ${size} bytes)`)
    }
    yield* BlobStoreProtocol.checkExpected(BACKEND, checked, key, "adopt")
    const found = yield* presence(ops, at, key)
    const deduplicated = found === "present"
      ? true
      : (yield* serverCopy(
        ops,
        stagedKey,
        at.contentKey(key),
        at.textOf(key),
        size,
        { contentType: checked.contentType },
        at.headersOf(key, checked.contentType),
        found === "absent"
      ))._tag === "Exists"
    // Only now is the staged object redundant.
    yield* ops.deleteObject(stagedKey, stagedText)
    return yield* BlobStoreProtocol.reportPut(
      instrument,
      key,
      // The bytes were counted as the parts landed, and the copy is server-side: nothing new is written here.
      { locator: at.locatorOf(key), deduplicated, bytesWritten: 0 },
      startedAt
    )
  }).pipe(Effect.mapError(relabel("adopt")), instrument.observe("adopt"))
}
