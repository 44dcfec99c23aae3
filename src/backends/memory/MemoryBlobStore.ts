/**
 * In-memory content-addressed BlobStore, for tests and demos.
 *
 * `put` hashes while it consumes the stream and keeps private copies of the
 * chunks; the blob becomes visible under its key only once the stream has
 * ended and every check passed, so a failed or interrupted put leaves
 * nothing behind. Storing is one synchronous step, so of two concurrent
 * puts of the same content exactly one stores it and the other reports
 * `deduplicated: true`. Full reads are re-hashed and fail with Corrupted
 * when the bytes no longer match their key.
 */
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Sink from "effect/Sink"
import * as Stream from "effect/Stream"
import * as BinaryKey from "../../core/BinaryKey.js"
import * as BlobLocator from "../../core/BlobLocator.js"
import { BlobError, toPortError } from "../../core/Errors.js"
import * as Hashing from "../../core/Hashing.js"
import type { BlobStat, BlobWritePlan, BlobWriteResult } from "../../core/Models.js"
import * as RangeSet from "../../core/RangeSet.js"
import { BlobDeleted, BlobStored } from "../../ports/BackendEvents.js"
import { BlobStore } from "../../ports/BlobStore.js"
import * as Instrument from "../../kit/Instrument.js"
import * as MetricKeys from "../../kit/MetricKeys.js"

const BACKEND = "memory"

/** Largest chunk `get` emits: bounds what one pull copies, whatever size the chunks were written in. */
const READ_CHUNK = 64 * 1024

interface StoredBlob {
  readonly key: BinaryKey.BinaryKey
  readonly locator: BlobLocator.BlobLocator
  /** Private copies of the chunks as they arrived; never handed out. */
  readonly chunks: ReadonlyArray<Uint8Array>
  readonly createdAt: Date
}

const fail = (reason: BlobError["reason"], method: string, description: string) =>
  new BlobError({ reason, backend: BACKEND, method, description })

/** The locator a blob is reported under: `mem://blobs/<algo>/<hex>`. */
export const locatorOf = (key: BinaryKey.BinaryKey): BlobLocator.BlobLocator =>
  new BlobLocator.BlobLocator({ scheme: "mem", bucket: "blobs", path: `${key.algorithm}/${key.digest}` })

/** Re-validates a key (a BinaryKey may be constructed without the parser's checks). */
const checkKey = (method: string, key: BinaryKey.BinaryKey): Either.Either<BinaryKey.BinaryKey, BlobError> =>
  Either.mapLeft(BinaryKey.make(key?.algorithm, key?.digest, key?.size), toPortError(BlobError, BACKEND, method))

interface CheckedPlan {
  readonly algorithm: BinaryKey.HashAlgorithm
  readonly expectedKey: BinaryKey.BinaryKey | undefined
  readonly maxSize: number
}

/** Validates a write plan; the algorithm defaults to the expected key's, then sha256. */
const checkPlan = (plan: BlobWritePlan | undefined): Either.Either<CheckedPlan, BlobError> => {
  const p = plan ?? {}
  let expectedKey: BinaryKey.BinaryKey | undefined
  if (p.expectedKey !== undefined) {
    const checked = checkKey("put", p.expectedKey)
    if (Either.isLeft(checked)) return Either.left(checked.left)
    expectedKey = checked.right
  }
  const algorithm = p.algorithm ?? expectedKey?.algorithm ?? "sha256"
  if (algorithm !== "sha256" && algorithm !== "blake3") {
    return Either.left(fail("InvalidInput", "put", `unknown hash algorithm ${JSON.stringify(algorithm)}`))
  }
  if (expectedKey !== undefined && expectedKey.algorithm !== algorithm) {
    return Either.left(
      fail("InvalidInput", "put", `the plan asks for ${algorithm} but the expected key ${expectedKey} uses ${expectedKey.algorithm}`)
    )
  }
  const maxSize = p.maxSize ?? Number.POSITIVE_INFINITY
  if (p.maxSize !== undefined && (!Number.isSafeInteger(maxSize) || maxSize < 0)) {
    return Either.left(fail("InvalidInput", "put", `maxSize must be a non-negative integer, got ${p.maxSize}`))
  }
  return Either.right({ algorithm, expectedKey, maxSize })
}

/** Copies of `[start, end)` of the blob, in pieces of at most READ_CHUNK bytes. */
const slices = (chunks: ReadonlyArray<Uint8Array>, start: number, end: number): Stream.Stream<Uint8Array> => {
  // State: index of the current chunk, offset of that chunk in the blob, position to read from.
  type Cursor = readonly [index: number, chunkStart: number, position: number]
  return Stream.unfold<Cursor, Uint8Array>([0, 0, start], ([index, chunkStart, position]) => {
    let i = index
    let base = chunkStart
    while (i < chunks.length && base + chunks[i]!.length <= position) {
      base += chunks[i]!.length
      i++
    }
    if (position >= end || i >= chunks.length) return Option.none()
    const chunk = chunks[i]!
    const from = position - base
    const to = Math.min(chunk.length, end - base, from + READ_CHUNK)
    return Option.some([chunk.slice(from, to), [i, base, base + to]] as const)
  })
}

/** The store and a handle on its contents, for fault-injection tests. */
export interface Inspectable {
  readonly store: BlobStore["Type"]
  /**
   * Flips one stored byte of `key` (offset within the blob) without touching
   * its key, to exercise the Corrupted path; false when there is no such byte.
   */
  readonly corrupt: (key: BinaryKey.BinaryKey, offset: number) => Effect.Effect<boolean>
}

/** Builds an empty store and a handle to corrupt its contents (tests of the Corrupted path). */
export const makeInspectable = Effect.gen(function*() {
  const instrument = yield* Instrument.make(BACKEND, "BlobStore")
  const blobs = new Map<string, StoredBlob>()

  const put = (plan?: BlobWritePlan): Sink.Sink<BlobWriteResult, Uint8Array, never, BlobError> =>
    Sink.unwrap(
      Effect.gen(function*() {
        // BlobStat has no content type, so `plan.contentType` has nowhere to go here.
        const { algorithm, expectedKey, maxSize } = yield* checkPlan(plan)
        const limit = Math.min(maxSize, expectedKey?.size ?? Number.POSITIVE_INFINITY)
        const hasher = yield* Hashing.makeHasher(algorithm)
        const chunks: Array<Uint8Array> = []
        const startedAt = yield* Clock.currentTimeNanos

        const consume = (input: Chunk.Chunk<Uint8Array>) =>
          Effect.suspend(() => {
            for (const c of input) {
              // Checked before hashing, so an endless stream fails at the first byte too many.
              if (hasher.size + c.length > limit) {
                return Effect.fail(
                  hasher.size + c.length > maxSize
                    ? fail("InvalidInput", "put", `the content exceeds maxSize (${maxSize} bytes)`)
                    : fail("InvalidInput", "put", `the content is longer than the expected key ${expectedKey} says`)
                )
              }
              hasher.update(c)
              if (c.length > 0) chunks.push(new Uint8Array(c))
            }
            return Effect.void
          })

        const finish = Effect.gen(function*() {
          const key = hasher.key()
          if (expectedKey !== undefined && BinaryKey.render(key) !== BinaryKey.render(expectedKey)) {
            return yield* fail(
              "InvalidInput",
              "put",
              `the content hashes to ${key} but the expected key is ${expectedKey}; nothing was stored`
            )
          }
          const createdAt = new Date(yield* Clock.currentTimeMillis)
          const locator = locatorOf(key)
          const id = BinaryKey.render(key)
          // One synchronous step: concurrent puts of the same content store it once.
          const deduplicated = yield* Effect.sync(() => {
            if (blobs.has(id)) return true
            blobs.set(id, { key, locator, chunks, createdAt })
            return false
          })
          const elapsed = Number((yield* Clock.currentTimeNanos) - startedAt) / 1e9
          yield* instrument.publish(
            new BlobStored({ backend: BACKEND, at: createdAt, key: id, locator: BlobLocator.render(locator), size: key.size, deduplicated })
          )
          yield* instrument.counter(MetricKeys.bytesIngested, key.size)
          yield* instrument.counter(MetricKeys.blocksIngested, 1)
          yield* instrument.counter(deduplicated ? MetricKeys.dedupHitsTotal : MetricKeys.bytesWrittenTotal, deduplicated ? 1 : key.size)
          yield* instrument.histogram(MetricKeys.uploadDurationSeconds, elapsed)
          return { key, locator, size: key.size, deduplicated } satisfies BlobWriteResult
        })

        return Sink.forEachChunk(consume).pipe(Sink.mapEffect(() => finish))
      })
    ).pipe(instrument.observeSink("put"))

  const lookup = (method: string, key: BinaryKey.BinaryKey) =>
    Effect.flatMap(checkKey(method, key), (k) => Effect.sync(() => Option.fromNullable(blobs.get(BinaryKey.render(k)))))

  const get = (key: BinaryKey.BinaryKey, range?: RangeSet.ByteRange): Stream.Stream<Uint8Array, BlobError> =>
    Stream.unwrap(
      Effect.gen(function*() {
        const found = yield* lookup("get", key)
        if (Option.isNone(found)) return yield* fail("NotFound", "get", `no blob ${BinaryKey.render(key)}`)
        const blob = found.value
        const [start, end] = yield* Either.mapLeft(
          RangeSet.resolveRange(range, blob.key.size),
          toPortError(BlobError, BACKEND, "get")
        )
        const bytes = Stream.tap(slices(blob.chunks, start, end), (c) => instrument.counter(MetricKeys.bytesReadTotal, c.length))
        if (start !== 0 || end !== blob.key.size) return bytes
        // A full read proves the bytes still match their key; the error arrives after the last chunk.
        const hasher = yield* Hashing.makeHasher(blob.key.algorithm)
        return Stream.concat(
          Stream.tap(bytes, (c) => Effect.sync(() => hasher.update(c))),
          Stream.execute(Effect.suspend(() => {
            const digest = hasher.digest()
            return digest === blob.key.digest && hasher.size === blob.key.size
              ? Effect.void
              : Effect.fail(fail("Corrupted", "get", `the stored bytes of ${blob.key} hash to ${digest}`))
          }))
        )
      })
    ).pipe(instrument.observeStream("get"))

  const stat = (key: BinaryKey.BinaryKey) =>
    instrument.observe("stat")(Effect.map(lookup("stat", key), Option.map(toStat)))

  const del = (key: BinaryKey.BinaryKey) =>
    instrument.observe("delete")(Effect.gen(function*() {
      const k = yield* checkKey("delete", key)
      const id = BinaryKey.render(k)
      const existed = yield* Effect.sync(() => blobs.delete(id))
      // Only real removals are published: deleting a missing blob changes nothing to observe.
      if (existed) yield* instrument.publish(new BlobDeleted({ backend: BACKEND, at: new Date(yield* Clock.currentTimeMillis), key: id }))
    }))

  // A live iterator over the map: blobs deleted during the listing are skipped, nothing is copied up front.
  const list: Stream.Stream<BlobStat, BlobError> = instrument.observeStream("list")(
    Stream.suspend(() => Stream.map(Stream.fromIterable(blobs.values()), toStat))
  )

  const corrupt = (key: BinaryKey.BinaryKey, offset: number) =>
    Effect.sync(() => {
      const blob = blobs.get(BinaryKey.render(key))
      if (blob === undefined) return false
      let base = 0
      for (const c of blob.chunks) {
        if (offset >= base && offset < base + c.length) {
          c[offset - base] = c[offset - base]! ^ 0xff
          return true
        }
        base += c.length
      }
      return false
    })

  return { store: BlobStore.of({ put, get, stat, delete: del, list }), corrupt } satisfies Inspectable
})

const toStat = (blob: StoredBlob): BlobStat => ({
  key: blob.key,
  size: blob.key.size,
  locator: Option.some(blob.locator),
  createdAt: Option.some(blob.createdAt)
})

/** Builds an empty in-memory BlobStore. */
export const make = Effect.map(makeInspectable, (i) => i.store)

/** A fresh, empty in-memory BlobStore. */
export const layer = Layer.effect(BlobStore, make)

/** Alias of `layer`, under the name every memory backend exports. */
export const layerMemory = layer
