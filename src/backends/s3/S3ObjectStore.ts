/**
 * ImmutableObjectStore and MutableObjectStore on S3.
 *
 * Locators are `s3://<bucket>/<path>`: the bucket must be the configured one
 * (else InvalidInput), and the path maps to the key `<prefix><path>` (see
 * S3Config). Puts stream (internal/upload.ts): one PutObject below one part,
 * else a multipart upload aborted if the put fails or is interrupted, so an
 * object is visible only once complete. Full reads are one GET; a ranged read
 * is a HEAD (to check the range against the size, as the port requires,
 * before any byte is read) then a ranged GET. Copies are server-side;
 * `move` is copy + delete (S3 has no rename).
 */
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Sink from "effect/Sink"
import * as Stream from "effect/Stream"
import * as BlobLocator from "../../core/BlobLocator.js"
import { ObjectStoreError, toPortError } from "../../core/Errors.js"
import type { ObjectStat, PutOptions } from "../../core/Models.js"
import { type ByteRange, resolveRange } from "../../core/RangeSet.js"
import { ObjectCopied, ObjectDeleted, ObjectWritten } from "../../ports/BackendEvents.js"
import { ImmutableObjectStore, MutableObjectStore, type MutableObjectStoreShape, writeThroughPut } from "../../ports/ObjectStore.js"
import * as Instrument from "../../kit/Instrument.js"
import * as TracingPorts from "../../kit/TracingPorts.js"
import { copy as serverCopy } from "./internal/copy.js"
import { BACKEND, make as makeOps, type ObjectInfo, type Ops } from "./internal/ops.js"
import * as Upload from "./internal/upload.js"
import * as S3Capabilities from "./S3Capabilities.js"
import * as S3Client from "./S3Client.js"
import type { S3Settings } from "./S3Config.js"
import { relabel } from "./S3Error.js"

/** The scheme of every locator this backend serves. */
export const SCHEME = "s3"

/** S3's key limit, in UTF-8 bytes. */
const MAX_KEY_BYTES = 1024

const fail = (method: string, reason: ObjectStoreError["reason"], description: string) =>
  new ObjectStoreError({ reason, backend: BACKEND, method, description })

/** A locator resolved to its object key. */
export interface Located {
  readonly locator: BlobLocator.BlobLocator
  readonly key: string
  /** The locator's text, for messages and events. */
  readonly text: string
}

/** Checks a locator against the settings (scheme, bucket, key length) and maps it to its key. */
export const locate = (settings: S3Settings, method: string, l: BlobLocator.BlobLocator): Either.Either<Located, ObjectStoreError> => {
  if (typeof l !== "object" || l === null) return Either.left(fail(method, "InvalidInput", "the locator is missing"))
  return Either.flatMap(
    Either.mapLeft(BlobLocator.make(l.scheme, l.bucket, l.path), toPortError(ObjectStoreError, BACKEND, method)),
    (locator): Either.Either<Located, ObjectStoreError> => {
      const text = BlobLocator.render(locator)
      if (locator.scheme !== SCHEME) {
        return Either.left(fail(method, "InvalidInput", `${text}: the S3 store serves ${SCHEME}:// locators`))
      }
      if (locator.bucket !== settings.bucket) {
        return Either.left(fail(method, "InvalidInput", `${text}: this store is configured for bucket ${settings.bucket}`))
      }
      const key = settings.prefix + locator.path
      if (Buffer.byteLength(key, "utf8") > MAX_KEY_BYTES) {
        return Either.left(fail(method, "InvalidInput", `${text}: the S3 key would exceed ${MAX_KEY_BYTES} bytes`))
      }
      return Either.right({ locator, key, text })
    }
  )
}

/** The locator of an object key under the settings' prefix; None for keys no locator can name. */
export const locatorOfKey = (settings: S3Settings, key: string): Option.Option<BlobLocator.BlobLocator> =>
  key.startsWith(settings.prefix)
    ? Either.getRight(BlobLocator.make(SCHEME, settings.bucket, key.slice(settings.prefix.length)))
    : Option.none()

const HEADER_TOKEN = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/
const HEADER_VALUE = /^[\u0020-\u007e]*$/

/** S3 user metadata travels in HTTP headers: names are tokens, values printable ASCII. */
const checkOptions = (method: string, options: PutOptions | undefined): Effect.Effect<void, ObjectStoreError> => {
  if (options === undefined) return Effect.void
  if (options.size !== undefined && (!Number.isSafeInteger(options.size) || options.size < 0)) {
    return Effect.fail(fail(method, "InvalidInput", `the declared size must be a non-negative integer, got ${options.size}`))
  }
  if (options.contentType !== undefined && (typeof options.contentType !== "string" || !HEADER_VALUE.test(options.contentType))) {
    return Effect.fail(fail(method, "InvalidInput", "the content type must be printable ASCII"))
  }
  for (const [k, v] of Object.entries(options.metadata ?? {})) {
    if (!HEADER_TOKEN.test(k)) return Effect.fail(fail(method, "InvalidInput", `metadata name ${JSON.stringify(k)} is not an HTTP token`))
    if (typeof v !== "string" || !HEADER_VALUE.test(v)) {
      return Effect.fail(fail(method, "InvalidInput", `metadata ${JSON.stringify(k)} must be printable ASCII text`))
    }
  }
  return Effect.void
}

/** An ObjectStat from what S3 said about the object. */
export const toStat = (locator: BlobLocator.BlobLocator, info: ObjectInfo): ObjectStat => ({
  locator,
  size: info.size,
  etag: info.etag,
  lastModified: info.lastModified,
  contentType: info.contentType,
  metadata: info.metadata
})

const now = Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms))

/** Largest range a check of range arguments alone (before the object's size is known) accepts. */
const ANY_SIZE = Number.MAX_SAFE_INTEGER

/** The object store over `ops` (one client, one Instrument). */
const fromOps = (ops: Ops): MutableObjectStoreShape => {
  const { instrument, settings } = ops
  const capabilities = S3Capabilities.of(settings)
  const located = (method: string, l: BlobLocator.BlobLocator) => locate(settings, method, l)

  const head: MutableObjectStoreShape["head"] = (locator) =>
    Effect.gen(function*() {
      const at = yield* located("head", locator)
      return Option.map(yield* ops.head(at.key, at.text), (info) => toStat(at.locator, info))
    }).pipe(Effect.mapError(relabel("head")), instrument.observe("head"))

  const get: MutableObjectStoreShape["get"] = (locator, range?: ByteRange) =>
    Stream.unwrapScoped(Effect.gen(function*() {
      const at = yield* located("get", locator)
      if (range === undefined || (range.start === 0 && range.end === undefined)) {
        return (yield* ops.open(at.key, at.text)).body
      }
      // Malformed ranges fail before any request; the size check needs a HEAD.
      yield* Either.mapLeft(resolveRange(range, ANY_SIZE), toPortError(ObjectStoreError, BACKEND, "get"))
      const info = yield* ops.head(at.key, at.text)
      if (Option.isNone(info)) return yield* fail("get", "NotFound", `no object at ${at.text}`)
      const [start, end] = yield* Either.mapLeft(resolveRange(range, info.value.size), toPortError(ObjectStoreError, BACKEND, "get"))
      if (start === end) return Stream.empty
      return (yield* ops.open(at.key, at.text, [start, end])).body
    })).pipe(Stream.mapError(relabel("get")), instrument.observeStream("get"))

  const put: MutableObjectStoreShape["put"] = (locator, options) =>
    Sink.unwrapScoped(Effect.gen(function*() {
      const at = yield* located("put", locator)
      yield* checkOptions("put", options)
      const ifAbsent = options?.ifAbsent === true
      if (ifAbsent && !capabilities.conditionalWrite) {
        return yield* fail("put", "Unsupported", `${at.text}: this endpoint takes no conditional writes (If-None-Match)`)
      }
      const headers = { contentType: options?.contentType, metadata: options?.metadata }
      const upload = yield* Upload.start(ops, { key: at.key, target: at.text, headers, size: options?.size })
      return Sink.forEachChunk((chunk: Chunk.Chunk<Uint8Array>) => Effect.forEach(chunk, upload.write, { discard: true })).pipe(
        Sink.mapEffect(() => upload.finish(() => Effect.succeedSome({ ifNoneMatch: ifAbsent }))),
        Sink.mapEffect((finished) =>
          Effect.gen(function*() {
            if (finished._tag === "Skipped") return yield* fail("put", "AlreadyExists", `an object is already at ${at.text}`)
            const etag = finished._tag === "Written" ? finished.etag : Option.none()
            yield* instrument.publish(new ObjectWritten({ backend: BACKEND, at: yield* now, locator: at.text, size: finished.size }))
            return {
              locator: at.locator,
              size: finished.size,
              etag,
              lastModified: Option.none(),
              contentType: Option.fromNullable(options?.contentType),
              metadata: { ...options?.metadata }
            } satisfies ObjectStat
          })
        )
      )
    })).pipe(Sink.mapError(relabel("put")), instrument.observeSink("put"))

  const del: MutableObjectStoreShape["delete"] = (locator) =>
    Effect.gen(function*() {
      const at = yield* located("delete", locator)
      yield* ops.deleteObject(at.key, at.text)
      yield* instrument.publish(new ObjectDeleted({ backend: BACKEND, at: yield* now, locator: at.text }))
    }).pipe(Effect.mapError(relabel("delete")), instrument.observe("delete"))

  const transfer = (method: "copy" | "move") => (source: BlobLocator.BlobLocator, destination: BlobLocator.BlobLocator) =>
    Effect.gen(function*() {
      const from = yield* located(method, source)
      const to = yield* located(method, destination)
      const found = yield* ops.head(from.key, from.text)
      if (Option.isNone(found)) return yield* fail(method, "NotFound", `no object at ${from.text}`)
      const info = found.value
      // S3 refuses to copy an object onto itself unchanged; it is already where it should be.
      if (from.key === to.key) return toStat(to.locator, info)
      const keep = { contentType: Option.getOrUndefined(info.contentType), metadata: info.metadata }
      const outcome = yield* serverCopy(ops, from.key, to.key, to.text, info.size, keep, undefined)
      if (method === "move") yield* ops.deleteObject(from.key, from.text)
      const at = yield* now
      if (method === "move") yield* instrument.publish(new ObjectWritten({ backend: BACKEND, at, locator: to.text, size: info.size }))
      yield* instrument.publish(new ObjectCopied({ backend: BACKEND, at, source: from.text, destination: to.text, moved: method === "move" }))
      return {
        ...toStat(to.locator, info),
        ...(outcome._tag === "Copied" ? { etag: outcome.etag, lastModified: outcome.lastModified } : {})
      } satisfies ObjectStat
    }).pipe(Effect.mapError(relabel(method)), instrument.observe(method))

  const list: MutableObjectStoreShape["list"] = (prefix) =>
    Stream.unwrap(Effect.gen(function*() {
      if (typeof prefix !== "object" || prefix === null) return yield* fail("list", "InvalidInput", "the prefix is missing")
      const p = yield* Either.mapLeft(
        BlobLocator.makePrefix(prefix.scheme, prefix.bucket, prefix.path),
        toPortError(ObjectStoreError, BACKEND, "list")
      )
      if (p.scheme !== SCHEME || p.bucket !== settings.bucket) {
        return yield* fail("list", "InvalidInput", `${p}: this store serves ${SCHEME}://${settings.bucket}/`)
      }
      const keyPrefix = settings.prefix + p.path
      const text = String(p)
      // One page (up to 1,000 keys) at a time, pulled only as the consumer asks.
      return Stream.paginateChunkEffect(undefined as string | undefined, (token) =>
        Effect.map(ops.listPage(keyPrefix, text, token), ({ next, objects }) => {
          const stats: Array<ObjectStat> = []
          for (const o of objects) {
            if (o.Key === undefined) continue
            const l = locatorOfKey(settings, o.Key)
            // Keys written by other tools that no locator can name ("a//b") are not listed.
            if (Option.isNone(l)) continue
            stats.push({
              locator: l.value,
              size: o.Size ?? 0,
              etag: Option.fromNullable(o.ETag),
              lastModified: Option.fromNullable(o.LastModified),
              contentType: Option.none(),
              metadata: {}
            })
          }
          return [Chunk.unsafeFromArray(stats), next as Option.Option<string | undefined>] as const
        }))
    })).pipe(Stream.mapError(relabel("list")), instrument.observeStream("list"))

  // The put of bytes within one part is already a single PutObject.
  const write = writeThroughPut(put)
  return { capabilities, head, list, get, put, write, delete: del, copy: transfer("copy"), move: transfer("move") }
}

/** Builds the object store on the S3ClientInstance in context. */
export const make: Effect.Effect<MutableObjectStoreShape, never, S3Client.S3ClientInstance> = Effect.gen(function*() {
  const shape = yield* S3Client.S3ClientInstance
  const instrument = yield* Instrument.make(BACKEND, "ObjectStore")
  return TracingPorts.objectStore(BACKEND, fromOps(makeOps(shape, instrument)))
})

/** MutableObjectStore and ImmutableObjectStore (one instance) over the S3ClientInstance in context. */
export const layer: Layer.Layer<MutableObjectStore | ImmutableObjectStore, never, S3Client.S3ClientInstance> =
  Layer.effectContext(
    Effect.map(make, (store) => Context.make(MutableObjectStore, store).pipe(Context.add(ImmutableObjectStore, store)))
  )
