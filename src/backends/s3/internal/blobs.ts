/**
 * The raw storage operations of S3BlobStore (see kit/BlobStoreProtocol):
 * where a blob lives in the bucket, how a put's bytes get there, and how
 * they are read, stat'ed, deleted and listed. Plan checks, hashing, the size
 * guard, the expected-key check, read verification and reporting are the
 * protocol's.
 */
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Sink from "effect/Sink"
import * as Stream from "effect/Stream"
import { randomUUID } from "node:crypto"
import * as BinaryKey from "../../../core/BinaryKey.js"
import * as BlobLocator from "../../../core/BlobLocator.js"
import { BlobError, type ObjectStoreError } from "../../../core/Errors.js"
import type { BlobStat } from "../../../core/Models.js"
import type * as BlobStoreProtocol from "../../../kit/BlobStoreProtocol.js"
import { toBlobError } from "../S3Error.js"
import { SCHEME } from "../S3ObjectStore.js"
import { copy as serverCopy } from "./copy.js"
import { BACKEND, type ObjectInfo, type Ops, type WriteHeaders } from "./ops.js"
import * as Upload from "./upload.js"

/** Object metadata names (S3 stores them as `x-amz-meta-*`). */
export const metadataKeys = {
  algorithm: "graviton-algorithm",
  digest: "graviton-digest",
  size: "graviton-size"
} as const

/** The algorithms whose namespaces `list` walks. */
const ALGORITHMS: ReadonlyArray<BinaryKey.HashAlgorithm> = ["sha256", "blake3"]

export const fail = (reason: BlobError["reason"], method: string, description: string) =>
  new BlobError({ reason, backend: BACKEND, method, description })

/** An S3 failure as a BlobError of `method` (same reason); BlobErrors pass unchanged. */
export const relabel = (method: string) => (e: ObjectStoreError | BlobError): BlobError =>
  e._tag === "BlobError" ? e : toBlobError(e, method)

/** What a stored object says about the blob it holds. */
export type Presence = "absent" | "present" | "mismatched"

/** Where the blobs of the namespace `blobPrefix` live, and the headers that describe them. */
export const addressing = (settings: Ops["settings"], blobPrefix: string) => {
  const base = settings.prefix + blobPrefix
  const locatorOf = (key: BinaryKey.BinaryKey) =>
    new BlobLocator.BlobLocator({ scheme: SCHEME, bucket: settings.bucket, path: `${blobPrefix}${key.algorithm}/${key.digest}` })
  return {
    base,
    contentKey: (key: BinaryKey.BinaryKey) => `${base}${key.algorithm}/${key.digest}`,
    locatorOf,
    textOf: (key: BinaryKey.BinaryKey) => BlobLocator.render(locatorOf(key)),
    /** Locator text of an object key under the client's prefix. */
    textOfKey: (key: string) => `${SCHEME}://${settings.bucket}/${key.slice(settings.prefix.length)}`,
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

type Addressing = ReturnType<typeof addressing>

/** Whether `key`'s object is there with the key's length. */
export const presence = (ops: Ops, at: Addressing, key: BinaryKey.BinaryKey): Effect.Effect<Presence, ObjectStoreError> =>
  Effect.map(ops.head(at.contentKey(key), at.textOf(key)), (info): Presence =>
    Option.isNone(info) ? "absent" : info.value.size === key.size ? "present" : "mismatched")

/** The size the object's metadata declares (else its length). */
const declaredSize = (info: ObjectInfo) => {
  const declared = info.metadata[metadataKeys.size]
  return declared !== undefined && /^\d+$/.test(declared) ? Number(declared) : info.size
}

/**
 * Opens one put. Without an expected key, the bytes stream to a staging key
 * (see S3BlobStore); with one, straight to the content address, or nowhere
 * when that blob is already stored (the stream is then only hashed).
 */
const stage = (ops: Ops, at: Addressing) => (plan: BlobStoreProtocol.CheckedPlan) =>
  Effect.gen(function*() {
    const { contentType, expectedKey } = plan
    const known = expectedKey === undefined ? undefined : { key: expectedKey, presence: yield* presence(ops, at, expectedKey) }
    const staging = `${at.base}staging/${randomUUID()}`
    const upload = known?.presence === "present"
      ? undefined
      : yield* Upload.start(
        ops,
        // Both keys are ours alone: a random staging name, or a content address (any object of the size there is the content).
        known === undefined
          ? { key: staging, target: at.textOfKey(staging), headers: { contentType }, keyIsOurs: true }
          : {
            key: at.contentKey(known.key),
            target: at.textOf(known.key),
            headers: at.headersOf(known.key, contentType),
            size: known.key.size,
            keyIsOurs: true
          }
      )

    const sink: Sink.Sink<unknown, Uint8Array, never, BlobError> = upload === undefined
      ? Sink.drain
      : Sink.forEachChunk((input: Chunk.Chunk<Uint8Array>) =>
        Effect.mapError(Effect.forEach(input, upload.write, { discard: true }), relabel("put"))
      )

    /** Stores the content under `key` (its check already passed); true when it was already stored. */
    const store = (key: BinaryKey.BinaryKey): Effect.Effect<boolean, ObjectStoreError> =>
      Effect.gen(function*() {
        if (upload === undefined) return true
        if (known !== undefined) {
          const finished = yield* upload.finish(() =>
            Effect.succeedSome({ ifNoneMatch: known.presence === "absent" } satisfies Upload.Commit)
          )
          return finished._tag === "Skipped"
        }
        let found: Presence = "absent"
        const finished = yield* upload.finish((_, multipart) =>
          Effect.map(presence(ops, at, key), (p): Option.Option<Upload.Commit> => {
            found = p
            if (p === "present") return Option.none()
            // One part: it is still in memory, so it goes to its content address directly.
            return multipart
              ? Option.some({ ifNoneMatch: false })
              : Option.some({ key: at.contentKey(key), headers: at.headersOf(key, contentType), ifNoneMatch: p === "absent" })
          })
        )
        if (finished._tag === "Skipped") return true
        if (finished.key !== staging) return false
        // Staged (multipart): copy to the content address, then drop the staging object whatever happens.
        const copied = yield* serverCopy(
          ops,
          staging,
          at.contentKey(key),
          at.textOf(key),
          key.size,
          { contentType },
          at.headersOf(key, contentType),
          found === "absent"
        ).pipe(Effect.ensuring(Effect.ignore(ops.deleteObject(staging, at.textOf(key)))))
        return copied._tag === "Exists"
      })

    const publish = (key: BinaryKey.BinaryKey) =>
      Effect.map(store(key), (deduplicated): BlobStoreProtocol.Published => ({
        locator: at.locatorOf(key),
        deduplicated,
        bytesWritten: deduplicated ? 0 : key.size
      })).pipe(Effect.mapError(relabel("put")))

    return { sink, publish } satisfies BlobStoreProtocol.Staging
  }).pipe(Effect.mapError(relabel("put")))

/** The bytes of `[start, end)` as stored (the whole object for a full read). */
const read = (ops: Ops, at: Addressing) => (k: BinaryKey.BinaryKey, { end, start }: BlobStoreProtocol.ReadRange) =>
  Stream.unwrapScoped(Effect.gen(function*() {
    const full = start === 0 && end === k.size
    const opened = yield* ops.open(at.contentKey(k), at.textOf(k), full ? undefined : [start, end]).pipe(
      Effect.catchIf((e) => e.reason === "NotFound", () => Effect.fail(fail("NotFound", "get", `no blob ${k}`)))
    )
    if (opened.info.size !== k.size) {
      // Metadata naming this size means the blob was stored and has since changed length.
      return yield* declaredSize(opened.info) === k.size
        ? fail("Corrupted", "get", `the stored object of ${k} has ${opened.info.size} bytes`)
        : fail("NotFound", "get", `no blob ${k}`)
    }
    return opened.body
  }).pipe(Effect.mapError(relabel("get")))).pipe(Stream.mapError(relabel("get")))

const stat = (ops: Ops, at: Addressing) => (k: BinaryKey.BinaryKey): Effect.Effect<Option.Option<BlobStat>, BlobError> =>
  ops.head(at.contentKey(k), at.textOf(k)).pipe(
    Effect.map(Option.flatMap((i): Option.Option<BlobStat> =>
      i.size === k.size
        ? Option.some({ key: k, size: k.size, locator: Option.some(at.locatorOf(k)), createdAt: i.lastModified })
        : Option.none()
    )),
    Effect.mapError(relabel("stat"))
  )

// S3 does not say whether the object existed: every delete is reported.
const remove = (ops: Ops, at: Addressing) => (k: BinaryKey.BinaryKey): Effect.Effect<boolean, BlobError> =>
  ops.deleteObject(at.contentKey(k), at.textOf(k)).pipe(Effect.as(true), Effect.mapError(relabel("delete")))

const listAlgorithm = (ops: Ops, at: Addressing, algorithm: BinaryKey.HashAlgorithm): Stream.Stream<BlobStat, ObjectStoreError> => {
  const prefix = `${at.base}${algorithm}/`
  return Stream.paginateChunkEffect(undefined as string | undefined, (token) =>
    Effect.map(ops.listPage(prefix, at.textOfKey(prefix), token), ({ next, objects }) => {
      const stats: Array<BlobStat> = []
      for (const o of objects) {
        const parsed = o.Key === undefined ? undefined : BinaryKey.make(algorithm, o.Key.slice(prefix.length), o.Size ?? 0)
        // Anything else under the prefix (not a hex digest) is not a blob.
        if (parsed === undefined || Either.isLeft(parsed)) continue
        stats.push({ key: parsed.right, size: parsed.right.size, locator: Option.some(at.locatorOf(parsed.right)), createdAt: Option.fromNullable(o.LastModified) })
      }
      return [Chunk.unsafeFromArray(stats), next as Option.Option<string | undefined>] as const
    }))
}

/** The raw operations of the blob namespace `blobPrefix` (normalized, relative to the client's prefix). */
export const raw = (ops: Ops, blobPrefix: string): BlobStoreProtocol.Raw => {
  const at = addressing(ops.settings, blobPrefix)
  return {
    backend: BACKEND,
    stage: stage(ops, at),
    read: read(ops, at),
    stat: stat(ops, at),
    delete: remove(ops, at),
    list: Stream.flatMap(Stream.fromIterable(ALGORITHMS), (a) => listAlgorithm(ops, at, a)).pipe(Stream.mapError(relabel("list")))
  }
}
