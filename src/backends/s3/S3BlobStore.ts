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
 * `get` verifies a full read like CasBlobStore: the bytes are re-hashed as
 * they flow and the stream fails with Corrupted after the last chunk if
 * they no longer match the key (bytes before the failure were emitted).
 */
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import type * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Sink from "effect/Sink"
import * as Stream from "effect/Stream"
import { randomUUID } from "node:crypto"
import * as BinaryKey from "../../core/BinaryKey.js"
import * as BlobLocator from "../../core/BlobLocator.js"
import { BlobError, type ObjectStoreError, toPortError } from "../../core/Errors.js"
import * as Hashing from "../../core/Hashing.js"
import type { BlobStat, BlobWritePlan, BlobWriteResult } from "../../core/Models.js"
import * as RangeSet from "../../core/RangeSet.js"
import { BlobDeleted, BlobStored } from "../../ports/BackendEvents.js"
import { BlobStore } from "../../ports/BlobStore.js"
import * as Instrument from "../../kit/Instrument.js"
import * as MetricKeys from "../../kit/MetricKeys.js"
import { copy as serverCopy } from "./internal/copy.js"
import { BACKEND, make as makeOps, type ObjectInfo, type Ops, type WriteHeaders } from "./internal/ops.js"
import * as Upload from "./internal/upload.js"
import * as S3Client from "./S3Client.js"
import { normalizePrefix, type S3ClientOptions } from "./S3Config.js"
import { toBlobError } from "./S3Error.js"
import { SCHEME } from "./S3ObjectStore.js"

/** Options of the blob namespace. */
export interface S3BlobStoreOptions {
  /** Where blobs live under the client's key prefix. Default "blobs/". */
  readonly blobPrefix?: string | undefined
}

/** Object metadata names (S3 stores them as `x-amz-meta-*`). */
export const metadataKeys = {
  algorithm: "graviton-algorithm",
  digest: "graviton-digest",
  size: "graviton-size"
} as const

/** The algorithms whose namespaces `list` walks. */
const ALGORITHMS: ReadonlyArray<BinaryKey.HashAlgorithm> = ["sha256", "blake3"]

const fail = (reason: BlobError["reason"], method: string, description: string) =>
  new BlobError({ reason, backend: BACKEND, method, description })

const checkKey = (method: string, key: BinaryKey.BinaryKey): Either.Either<BinaryKey.BinaryKey, BlobError> =>
  Either.mapLeft(BinaryKey.make(key?.algorithm, key?.digest, key?.size), toPortError(BlobError, BACKEND, method))

interface CheckedPlan {
  readonly algorithm: BinaryKey.HashAlgorithm
  readonly expectedKey: BinaryKey.BinaryKey | undefined
  readonly maxSize: number
  readonly contentType: string | undefined
}

const checkPlan = (plan: BlobWritePlan | undefined): Either.Either<CheckedPlan, BlobError> =>
  Either.gen(function*() {
    const p = plan ?? {}
    const expectedKey = p.expectedKey === undefined ? undefined : yield* checkKey("put", p.expectedKey)
    const algorithm = p.algorithm ?? expectedKey?.algorithm ?? "sha256"
    if (algorithm !== "sha256" && algorithm !== "blake3") {
      return yield* Either.left(fail("InvalidInput", "put", `unknown hash algorithm ${JSON.stringify(algorithm)}`))
    }
    if (expectedKey !== undefined && expectedKey.algorithm !== algorithm) {
      return yield* Either.left(
        fail("InvalidInput", "put", `the plan asks for ${algorithm} but the expected key ${expectedKey} uses ${expectedKey.algorithm}`)
      )
    }
    if (p.maxSize !== undefined && (!Number.isSafeInteger(p.maxSize) || p.maxSize < 0)) {
      return yield* Either.left(fail("InvalidInput", "put", `maxSize must be a non-negative integer, got ${p.maxSize}`))
    }
    if (p.contentType !== undefined && (typeof p.contentType !== "string" || !/^[\u0020-\u007e]*$/.test(p.contentType))) {
      return yield* Either.left(fail("InvalidInput", "put", "the content type must be printable ASCII"))
    }
    return { algorithm, expectedKey, maxSize: p.maxSize ?? Number.POSITIVE_INFINITY, contentType: p.contentType }
  })

const sameKey = (a: BinaryKey.BinaryKey, b: BinaryKey.BinaryKey) => BinaryKey.render(a) === BinaryKey.render(b)

/** What a stored object says about the blob it holds. */
type Presence = "absent" | "present" | "mismatched"

/** Where blobs of the namespace `blobPrefix` live, and the headers that describe them (shared by the store and `adoptStaged`). */
const addressing = (settings: Ops["settings"], blobPrefix: string) => {
  const base = settings.prefix + blobPrefix
  const locatorOf = (key: BinaryKey.BinaryKey) =>
    new BlobLocator.BlobLocator({ scheme: SCHEME, bucket: settings.bucket, path: `${blobPrefix}${key.algorithm}/${key.digest}` })
  return {
    base,
    contentKey: (key: BinaryKey.BinaryKey) => `${base}${key.algorithm}/${key.digest}`,
    locatorOf,
    textOf: (key: BinaryKey.BinaryKey) => BlobLocator.render(locatorOf(key)),
    headersOf: (key: BinaryKey.BinaryKey, contentType: string | undefined): WriteHeaders => ({
      contentType,
      metadata: {
        [metadataKeys.algorithm]: key.algorithm,
        [metadataKeys.digest]: key.digest,
        [metadataKeys.size]: String(key.size)
      }
    })
  }
}

/** The BlobStore over `ops`, blobs under `blobPrefix` (already normalized, relative to the client's prefix). */
export const fromOps = (ops: Ops, blobPrefix: string): BlobStore["Type"] => {
  const { instrument, settings } = ops
  const { base, contentKey, locatorOf, textOf, headersOf } = addressing(settings, blobPrefix)
  const relabel = (method: string) => (e: ObjectStoreError | BlobError): BlobError =>
    e._tag === "BlobError" ? e : toBlobError(e, method)

  const sizeOf = (info: ObjectInfo) => {
    const declared = info.metadata[metadataKeys.size]
    return declared !== undefined && /^\d+$/.test(declared) ? Number(declared) : info.size
  }

  const presence = (key: BinaryKey.BinaryKey): Effect.Effect<Presence, ObjectStoreError> =>
    Effect.map(ops.head(contentKey(key), textOf(key)), (info): Presence =>
      Option.isNone(info) ? "absent" : info.value.size === key.size ? "present" : "mismatched")

  const put = (plan?: BlobWritePlan): Sink.Sink<BlobWriteResult, Uint8Array, never, BlobError> =>
    Sink.unwrapScoped(Effect.gen(function*() {
      const { algorithm, contentType, expectedKey, maxSize } = yield* checkPlan(plan)
      const limit = Math.min(maxSize, expectedKey?.size ?? Number.POSITIVE_INFINITY)
      const hasher = yield* Hashing.makeHasher(algorithm)
      const startedAt = yield* Clock.currentTimeMillis
      // With the key known in advance, an existing blob needs no upload at all.
      const known = expectedKey === undefined ? undefined : { key: expectedKey, presence: yield* presence(expectedKey) }
      const staging = `${base}staging/${randomUUID()}`
      const upload = known?.presence === "present"
        ? undefined
        : yield* Upload.start(
          ops,
          known === undefined
            ? { key: staging, target: `${SCHEME}://${settings.bucket}/${staging.slice(settings.prefix.length)}`, headers: { contentType } }
            : { key: contentKey(known.key), target: textOf(known.key), headers: headersOf(known.key, contentType), size: known.key.size }
        )

      const consume = (input: Chunk.Chunk<Uint8Array>) =>
        Effect.forEach(input, (c): Effect.Effect<void, BlobError | ObjectStoreError> => {
          // Checked before anything is kept, so an endless stream fails at the first byte too many.
          if (hasher.size + c.length > limit) {
            return Effect.fail(
              hasher.size + c.length > maxSize
                ? fail("InvalidInput", "put", `the content exceeds maxSize (${maxSize} bytes)`)
                : fail("InvalidInput", "put", `the content is longer than the expected key ${expectedKey} says`)
            )
          }
          hasher.update(c)
          return upload === undefined ? Effect.void : upload.write(c)
        }, { discard: true })

      const mismatch = (key: BinaryKey.BinaryKey) =>
        fail("InvalidInput", "put", `the content hashes to ${key} but the expected key is ${expectedKey}; nothing was stored`)

      const store = (key: BinaryKey.BinaryKey): Effect.Effect<boolean, ObjectStoreError | BlobError> =>
        Effect.gen(function*() {
          if (expectedKey !== undefined && !sameKey(key, expectedKey)) return yield* mismatch(key)
          if (upload === undefined) return true
          if (known !== undefined) {
            // Straight to the content address; the check above already ran, before anything became visible.
            const finished = yield* upload.finish(() =>
              Effect.succeedSome({ ifNoneMatch: known.presence === "absent" } satisfies Upload.Commit)
            )
            return finished._tag === "Skipped"
          }
          let found: Presence = "absent"
          const finished = yield* upload.finish((_, multipart) =>
            Effect.map(presence(key), (p): Option.Option<Upload.Commit> => {
              found = p
              if (p === "present") return Option.none()
              // One part: it is still in memory, so it goes to its content address directly.
              return multipart
                ? Option.some({ ifNoneMatch: false })
                : Option.some({ key: contentKey(key), headers: headersOf(key, contentType), ifNoneMatch: p === "absent" })
            })
          )
          if (finished._tag === "Skipped") return true
          if (finished.key !== staging) return false
          // Staged (multipart): copy to the content address, then drop the staging object whatever happens.
          const copied = yield* serverCopy(
            ops,
            staging,
            contentKey(key),
            textOf(key),
            key.size,
            { contentType },
            headersOf(key, contentType),
            found === "absent"
          ).pipe(Effect.ensuring(Effect.ignore(ops.deleteObject(staging, textOf(key)))))
          return copied._tag === "Exists"
        })

      const finish = Effect.gen(function*() {
        const key = hasher.key()
        const deduplicated = yield* store(key)
        const locator = locatorOf(key)
        const at = new Date(yield* Clock.currentTimeMillis)
        yield* instrument.publish(
          new BlobStored({ backend: BACKEND, at, key: BinaryKey.render(key), locator: BlobLocator.render(locator), size: key.size, deduplicated })
        )
        yield* instrument.counter(MetricKeys.bytesIngested, key.size)
        yield* instrument.counter(MetricKeys.blocksIngested, 1)
        if (deduplicated) yield* instrument.counter(MetricKeys.dedupHits, 1)
        yield* instrument.histogram(MetricKeys.uploadDurationSeconds, (at.getTime() - startedAt) / 1000)
        return { key, locator, size: key.size, deduplicated } satisfies BlobWriteResult
      })

      return Sink.forEachChunk(consume).pipe(Sink.mapEffect(() => finish))
    }).pipe(Effect.mapError(relabel("put")))).pipe(Sink.mapError(relabel("put")), instrument.observeSink("put"))

  const get = (key: BinaryKey.BinaryKey, range?: RangeSet.ByteRange): Stream.Stream<Uint8Array, BlobError> =>
    Stream.unwrapScoped(Effect.gen(function*() {
      const k = yield* checkKey("get", key)
      const [start, end] = yield* Either.mapLeft(RangeSet.resolveRange(range, k.size), toPortError(BlobError, BACKEND, "get"))
      const full = start === 0 && end === k.size
      if (start === end && !full) {
        // Nothing to read, but a missing blob is still NotFound.
        if ((yield* presence(k)) !== "present") return yield* fail("NotFound", "get", `no blob ${k}`)
        return Stream.empty
      }
      const opened = yield* ops.open(contentKey(k), textOf(k), full ? undefined : [start, end]).pipe(
        Effect.catchIf((e) => e.reason === "NotFound", () => Effect.fail(fail("NotFound", "get", `no blob ${k}`)))
      )
      if (opened.info.size !== k.size) {
        // Metadata naming this size means the blob was stored and has since changed length.
        return yield* sizeOf(opened.info) === k.size
          ? fail("Corrupted", "get", `the stored object of ${k} has ${opened.info.size} bytes`)
          : fail("NotFound", "get", `no blob ${k}`)
      }
      if (!full) return opened.body
      const hasher = yield* Hashing.makeHasher(k.algorithm)
      return Stream.concat(
        Stream.mapChunks(opened.body, (chunk) => {
          for (const c of chunk) hasher.update(c)
          return chunk
        }),
        Stream.execute(Effect.suspend(() => {
          const digest = hasher.digest()
          return digest === k.digest && hasher.size === k.size
            ? Effect.void
            : Effect.fail(fail("Corrupted", "get", `the stored bytes of ${k} hash to ${digest}`))
        }))
      )
    }).pipe(Effect.mapError(relabel("get")))).pipe(Stream.mapError(relabel("get")), instrument.observeStream("get"))

  const stat = (key: BinaryKey.BinaryKey): Effect.Effect<Option.Option<BlobStat>, BlobError> =>
    Effect.gen(function*() {
      const k = yield* checkKey("stat", key)
      const info = yield* ops.head(contentKey(k), textOf(k))
      return Option.flatMap(info, (i): Option.Option<BlobStat> =>
        i.size === k.size ? Option.some({ key: k, size: k.size, locator: Option.some(locatorOf(k)), createdAt: i.lastModified }) : Option.none())
    }).pipe(Effect.mapError(relabel("stat")), instrument.observe("stat"))

  const del = (key: BinaryKey.BinaryKey): Effect.Effect<void, BlobError> =>
    Effect.gen(function*() {
      const k = yield* checkKey("delete", key)
      yield* ops.deleteObject(contentKey(k), textOf(k))
      // S3 does not say whether the object existed: every delete is published.
      yield* instrument.publish(new BlobDeleted({ backend: BACKEND, at: new Date(yield* Clock.currentTimeMillis), key: BinaryKey.render(k) }))
    }).pipe(Effect.mapError(relabel("delete")), instrument.observe("delete"))

  const listAlgorithm = (algorithm: BinaryKey.HashAlgorithm): Stream.Stream<BlobStat, ObjectStoreError> => {
    const prefix = `${base}${algorithm}/`
    return Stream.paginateChunkEffect(undefined as string | undefined, (token) =>
      Effect.map(ops.listPage(prefix, `${SCHEME}://${settings.bucket}/${prefix.slice(settings.prefix.length)}`, token), ({ next, objects }) => {
        const stats: Array<BlobStat> = []
        for (const o of objects) {
          const parsed = o.Key === undefined ? undefined : BinaryKey.make(algorithm, o.Key.slice(prefix.length), o.Size ?? 0)
          // Anything else under the prefix (not a hex digest) is not a blob.
          if (parsed === undefined || Either.isLeft(parsed)) continue
          stats.push({ key: parsed.right, size: parsed.right.size, locator: Option.some(locatorOf(parsed.right)), createdAt: Option.fromNullable(o.LastModified) })
        }
        return [Chunk.unsafeFromArray(stats), next as Option.Option<string | undefined>] as const
      }))
  }

  const list: Stream.Stream<BlobStat, BlobError> = Stream.flatMap(Stream.fromIterable(ALGORITHMS), listAlgorithm).pipe(
    Stream.mapError(relabel("list")),
    instrument.observeStream("list")
  )

  return BlobStore.of({ put, get, stat, delete: del, list })
}

/** Builds the BlobStore on the S3ClientInstance in context. */
export const make = (
  options: S3BlobStoreOptions = {}
): Effect.Effect<BlobStore["Type"], ObjectStoreError, S3Client.S3ClientInstance> =>
  Effect.gen(function*() {
    const blobPrefix = yield* normalizePrefix(options.blobPrefix ?? "blobs")
    const shape = yield* S3Client.S3ClientInstance
    const instrument = yield* Instrument.make(BACKEND, "BlobStore")
    return fromOps(makeOps(shape, instrument), blobPrefix)
  })

/** BlobStore over the S3ClientInstance in context. */
export const layerFromClient = (
  options: S3BlobStoreOptions = {}
): Layer.Layer<BlobStore, ObjectStoreError, S3Client.S3ClientInstance> => Layer.effect(BlobStore, make(options))

/** BlobStore with its own client, from options. */
export const layer = (options: S3ClientOptions & S3BlobStoreOptions): Layer.Layer<BlobStore, ObjectStoreError> =>
  layerFromClient(options).pipe(Layer.provide(S3Client.layer(options)))

/** BlobStore with its own client, from a Config of the client options. */
export const layerConfig = (
  config: Config.Config.Wrap<S3ClientOptions>,
  options: S3BlobStoreOptions = {}
): Layer.Layer<BlobStore, ObjectStoreError | ConfigError.ConfigError> =>
  layerFromClient(options).pipe(Layer.provide(S3Client.layerConfig(config)))

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
  const { contentKey, locatorOf, headersOf } = addressing(settings, blobPrefix)
  const relabel = (e: ObjectStoreError | BlobError): BlobError => e._tag === "BlobError" ? e : toBlobError(e, "adopt")

  return Effect.gen(function*() {
    const { algorithm, contentType, expectedKey, maxSize } = yield* Either.mapLeft(
      checkPlan(plan),
      (e) => new BlobError({ ...e, method: "adopt" })
    )
    if (staged.scheme !== SCHEME || staged.bucket !== settings.bucket) {
      return yield* fail("InvalidInput", "adopt", `${BlobLocator.render(staged)} is not in this store's bucket ${settings.bucket}`)
    }
    const stagedKey = settings.prefix + staged.path
    const stagedText = BlobLocator.render(staged)
    const info = yield* ops.head(stagedKey, stagedText)
    if (Option.isNone(info)) return yield* fail("NotFound", "adopt", `no staged object ${stagedText}`)
    const size = info.value.size
    if (size > maxSize) return yield* fail("InvalidInput", "adopt", `the content exceeds maxSize (${maxSize} bytes)`)
    const key = known !== undefined && known.algorithm === algorithm && known.size === size
      ? known
      : yield* Effect.scoped(Effect.flatMap(ops.open(stagedKey, stagedText), (opened) => Hashing.hashStream(algorithm, opened.body)))
    if (key.size !== size) {
      return yield* fail("Conflict", "adopt", `${stagedText} changed while it was read (${key.size} of ${size} bytes)`)
    }
    if (expectedKey !== undefined && !sameKey(key, expectedKey)) {
      return yield* fail("InvalidInput", "adopt", `the content hashes to ${key} but the expected key is ${expectedKey}; nothing was stored`)
    }
    const locator = locatorOf(key)
    const text = BlobLocator.render(locator)
    const found = yield* Effect.map(ops.head(contentKey(key), text), (i): Presence =>
      Option.isNone(i) ? "absent" : i.value.size === key.size ? "present" : "mismatched")
    const deduplicated = found === "present"
      ? true
      : (yield* serverCopy(ops, stagedKey, contentKey(key), text, size, { contentType }, headersOf(key, contentType), found === "absent"))
        ._tag === "Exists"
    // Only now is the staged object redundant.
    yield* ops.deleteObject(stagedKey, stagedText)
    yield* instrument.publish(
      new BlobStored({ backend: BACKEND, at: new Date(yield* Clock.currentTimeMillis), key: BinaryKey.render(key), locator: text, size, deduplicated })
    )
    yield* instrument.counter(MetricKeys.bytesIngested, size)
    yield* instrument.counter(MetricKeys.blocksIngested, 1)
    if (deduplicated) yield* instrument.counter(MetricKeys.dedupHits, 1)
    return { key, locator, size, deduplicated } satisfies BlobWriteResult
  }).pipe(Effect.mapError(relabel), instrument.observe("adopt"))
}
