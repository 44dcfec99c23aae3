/**
 * The BlobStore protocol, written once (as `MessageStorage.makeEncoded` in
 * @effect/cluster): a backend supplies raw storage operations (`Raw`), and
 * `make` turns them into the BlobStore service. The protocol owns
 *
 * - plan validation: algorithm (the plan's, else the expected key's, else
 *   the store's), expected key, `maxSize`, content type;
 * - hashing while the input streams, and the size guard: a chunk that would
 *   take the content past `maxSize` (or past the expected key's size) fails
 *   the put before the staging sees it, so an endless stream fails too;
 * - the expected-key check, after the input ended and before `publish`, so a
 *   mismatch never makes anything visible;
 * - verify-on-read: a full read is re-hashed and fails with Corrupted after
 *   its last chunk when the bytes do not match the key; a ranged read fails
 *   with Corrupted when the body is shorter or longer than the range;
 * - reporting: metrics (bytes ingested and written, blobs, dedup hits,
 *   upload duration, bytes read), BlobStored / BlobDeleted events, and the
 *   latency, outcome and failures of every call (Instrument).
 *
 * The backend decides only where bytes go and how they become visible:
 * `stage` opens one put (a sink for the checked input, and `publish`, which
 * stores the blob under its key or finds it already stored), `read`, `stat`,
 * `delete`, `list`.
 *
 * Costs on the hot path: one Effect per input Chunk (the guard), none per
 * byte array; reads are checked with pure `mapChunks`. The guard only hashes
 * and counts the chunks it passes on, so lent buffers (core/Lending) pass
 * through unchanged, and the staging may give them back.
 */
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Option from "effect/Option"
import * as Sink from "effect/Sink"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as BinaryKey from "../core/BinaryKey.js"
import * as BlobLocator from "../core/BlobLocator.js"
import { BlobError, toPortError } from "../core/Errors.js"
import * as Hashing from "../core/Hashing.js"
import type { BlobStat, BlobWritePlan, BlobWriteResult } from "../core/Models.js"
import * as RangeSet from "../core/RangeSet.js"
import { BlobDeleted, BlobStored } from "../ports/BackendEvents.js"
import { BlobStore } from "../ports/BlobStore.js"
import * as Events from "./Events.js"
import * as Instrument from "./Instrument.js"
import * as MetricKeys from "./MetricKeys.js"
import * as Tracing from "./Tracing.js"
import * as TracingPorts from "./TracingPorts.js"

/** A write plan once checked: what a backend's `stage` is given. */
export interface CheckedPlan {
  readonly algorithm: BinaryKey.HashAlgorithm
  readonly expectedKey: BinaryKey.BinaryKey | undefined
  /** `Infinity` when the plan sets none. */
  readonly maxSize: number
  readonly contentType: string | undefined
}

/** What `publish` did with a put's content. */
export interface Published {
  /** Where the blob lives (reported in the result and the BlobStored event). */
  readonly locator: BlobLocator.BlobLocator
  /** True when the blob was already stored and this put added nothing. */
  readonly deduplicated: boolean
  /** Content bytes this put newly stored (0 when deduplicated; the new blocks only, for a chunked blob). */
  readonly bytesWritten: number
  /** Objects the blob is made of (default 1; the block count of a chunked blob). */
  readonly blocks?: number | undefined
  /** Stored bytes that were missing or damaged were stored again (see BlobWriteResult.repaired). */
  readonly repaired?: boolean | undefined
}

/** One put in progress, opened by `Raw.stage`. */
export interface Staging {
  /**
   * Receives the input once hashed and size-checked; never an empty array.
   * Chunks may be lent (core/Lending): keep one only after `retain`, give it back when done.
   */
  readonly sink: Sink.Sink<unknown, Uint8Array, never, BlobError>
  /**
   * Called once the input has ended and its key matched the plan: stores the
   * content under `key`, or finds it already stored (dedup is decided here).
   */
  readonly publish: (key: BinaryKey.BinaryKey) => Effect.Effect<Published, BlobError>
}

/** A read of `[start, end)` of a blob; `start === 0 && end === key.size` is a full read. */
export interface ReadRange {
  readonly start: number
  readonly end: number
}

/** The raw storage operations a backend supplies; every key given to them has been validated. */
export interface Raw {
  /** Backend name in errors, events and metrics ("memory", "s3", "cas" ...). */
  readonly backend: string
  /** Algorithm of plans that name none and have no expected key (default sha256). */
  readonly algorithm?: BinaryKey.HashAlgorithm | undefined
  /**
   * Opens the staging of one put. It runs in the put's scope, which closes
   * when the put has ended however it ended (published, deduplicated,
   * failed, interrupted): finalizers added to it remove what was not published.
   */
  readonly stage: (plan: CheckedPlan) => Effect.Effect<Staging, BlobError, Scope.Scope>
  /**
   * Streams the bytes of `range` as stored; fails with NotFound when the blob
   * is absent. Never called for an empty range of a non-empty blob. The
   * protocol verifies what it emits (see the module comment).
   */
  readonly read: (key: BinaryKey.BinaryKey, range: ReadRange) => Stream.Stream<Uint8Array, BlobError>
  /** The stat of a stored blob; None when absent. */
  readonly stat: (key: BinaryKey.BinaryKey) => Effect.Effect<Option.Option<BlobStat>, BlobError>
  /** Removes the blob; true when it may have existed (a BlobDeleted event is published), false when it surely did not. */
  readonly delete: (key: BinaryKey.BinaryKey) => Effect.Effect<boolean, BlobError>
  /** Every stored blob's stat, in no guaranteed order. */
  readonly list: Stream.Stream<BlobStat, BlobError>
}

const fail = (backend: string, reason: BlobError["reason"], method: string, description: string) =>
  new BlobError({ reason, backend, method, description })

const isAlgorithm = (a: unknown): a is BinaryKey.HashAlgorithm => a === "sha256" || a === "blake3"

/** Re-validates a key: a BinaryKey may be built from parts without the parser's checks. */
export const checkKey = (backend: string, method: string, key: BinaryKey.BinaryKey): Either.Either<BinaryKey.BinaryKey, BlobError> =>
  typeof key !== "object" || key === null
    ? Either.left(fail(backend, "InvalidInput", method, "the key is missing"))
    : Either.mapLeft(BinaryKey.make(key.algorithm, key.digest, key.size), toPortError(BlobError, backend, method))

/** Validates a write plan; the algorithm defaults to the expected key's, then `fallback`. */
export const checkPlan = (
  backend: string,
  plan: BlobWritePlan | undefined,
  fallback: BinaryKey.HashAlgorithm = "sha256",
  method = "put"
): Either.Either<CheckedPlan, BlobError> =>
  Either.gen(function*() {
    const p = plan ?? {}
    const expectedKey = p.expectedKey === undefined ? undefined : yield* checkKey(backend, method, p.expectedKey)
    const algorithm = p.algorithm ?? expectedKey?.algorithm ?? fallback
    if (!isAlgorithm(algorithm)) {
      return yield* Either.left(fail(backend, "InvalidInput", method, `unknown hash algorithm ${JSON.stringify(algorithm)}`))
    }
    if (expectedKey !== undefined && expectedKey.algorithm !== algorithm) {
      return yield* Either.left(fail(
        backend,
        "InvalidInput",
        method,
        `the plan asks for ${algorithm} but the expected key ${expectedKey} uses ${expectedKey.algorithm}`
      ))
    }
    if (p.maxSize !== undefined && (!Number.isSafeInteger(p.maxSize) || p.maxSize < 0)) {
      return yield* Either.left(fail(backend, "InvalidInput", method, `maxSize must be a non-negative integer, got ${p.maxSize}`))
    }
    // Stores keep it as a header or a record field: printable ASCII is what every one of them can hold.
    if (p.contentType !== undefined && (typeof p.contentType !== "string" || !/^[\u0020-\u007e]*$/.test(p.contentType))) {
      return yield* Either.left(fail(backend, "InvalidInput", method, "the content type must be printable ASCII"))
    }
    return { algorithm, expectedKey, maxSize: p.maxSize ?? Number.POSITIVE_INFINITY, contentType: p.contentType }
  })

/** Fails with InvalidInput unless `key` is the plan's expected key (when it has one). */
export const checkExpected = (
  backend: string,
  plan: CheckedPlan,
  key: BinaryKey.BinaryKey,
  method = "put"
): Effect.Effect<void, BlobError> =>
  plan.expectedKey === undefined || BinaryKey.render(plan.expectedKey) === BinaryKey.render(key)
    ? Effect.void
    : Effect.fail(fail(
      backend,
      "InvalidInput",
      method,
      `the content hashes to ${key} but the expected key is ${plan.expectedKey}; nothing was stored`
    ))

/**
 * Hashes each input Chunk and enforces the size limits before it goes any
 * further; drops empty arrays (some object stores reject zero-length writes).
 */
export const guard = (backend: string, plan: CheckedPlan, hasher: Hashing.Hasher) => {
  const limit = Math.min(plan.maxSize, plan.expectedKey?.size ?? Number.POSITIVE_INFINITY)
  return (chunks: Chunk.Chunk<Uint8Array>): Effect.Effect<Chunk.Chunk<Uint8Array>, BlobError> => {
    let incoming = 0
    let empties = 0
    for (const c of chunks) {
      incoming += c.length
      if (c.length === 0) empties++
    }
    if (hasher.size + incoming > limit) {
      return Effect.fail(
        hasher.size + incoming > plan.maxSize
          ? fail(backend, "InvalidInput", "put", `the content exceeds maxSize (${plan.maxSize} bytes); nothing was stored`)
          : fail(backend, "InvalidInput", "put", `the content is longer than the expected key ${plan.expectedKey} says; nothing was stored`)
      )
    }
    for (const c of chunks) hasher.update(c)
    return Effect.succeed(empties === 0 ? chunks : Chunk.filter(chunks, (c) => c.length > 0))
  }
}

/** Metrics and the BlobStored event of a finished put (or assembly); its result. */
export const reportPut = (
  instrument: Instrument.Instrument,
  key: BinaryKey.BinaryKey,
  published: Published,
  startedAt: bigint
): Effect.Effect<BlobWriteResult> =>
  Effect.gen(function*() {
    const seconds = Number((yield* Clock.currentTimeNanos) - startedAt) / 1e9
    yield* instrument.counter(MetricKeys.bytesIngested, key.size)
    yield* instrument.counter(MetricKeys.blocksIngested, published.blocks ?? 1)
    yield* instrument.histogram(MetricKeys.uploadDurationSeconds, seconds)
    if (published.deduplicated) yield* instrument.counter(MetricKeys.dedupHitsTotal, 1)
    if (published.bytesWritten > 0) yield* instrument.counter(MetricKeys.bytesWrittenTotal, published.bytesWritten)
    yield* instrument.publish(
      new BlobStored({
        backend: instrument.backend,
        at: yield* Events.now,
        key: BinaryKey.render(key),
        locator: BlobLocator.render(published.locator),
        size: key.size,
        deduplicated: published.deduplicated
      })
    )
    return {
      key,
      locator: published.locator,
      size: key.size,
      deduplicated: published.deduplicated,
      ...(published.repaired === true ? { repaired: true } : {})
    } satisfies BlobWriteResult
  })

/** Re-hashes a full read; a mismatch (length or digest) fails it with Corrupted after its last chunk. */
export const verifyWhole = <R>(
  backend: string,
  key: BinaryKey.BinaryKey,
  bytes: Stream.Stream<Uint8Array, BlobError, R>
): Stream.Stream<Uint8Array, BlobError, R> =>
  Stream.unwrap(Effect.map(Hashing.makeHasher(key.algorithm), (hasher) =>
    Stream.concat(
      Stream.mapChunks(bytes, (chunks) => {
        for (const c of chunks) hasher.update(c)
        return chunks
      }),
      Stream.execute(Effect.suspend(() => {
        if (hasher.size !== key.size) {
          return Effect.fail(fail(backend, "Corrupted", "get", `the stored bytes of ${key} are ${hasher.size} bytes long`))
        }
        const digest = hasher.digest()
        return digest === key.digest
          ? Effect.void
          : Effect.fail(fail(backend, "Corrupted", "get", `the stored bytes of ${key} hash to ${digest}`))
      }))
    )))

/** Checks that a ranged read carries exactly `length` bytes: a body cut short (or too long) fails with Corrupted. */
export const verifyLength = <R>(
  backend: string,
  key: BinaryKey.BinaryKey,
  length: number,
  bytes: Stream.Stream<Uint8Array, BlobError, R>
): Stream.Stream<Uint8Array, BlobError, R> =>
  Stream.suspend(() => {
    let seen = 0
    return Stream.concat(
      Stream.mapChunks(bytes, (chunks) => {
        for (const c of chunks) seen += c.length
        return chunks
      }),
      Stream.execute(Effect.suspend(() =>
        seen === length
          ? Effect.void
          : Effect.fail(fail(backend, "Corrupted", "get", `the stored bytes of ${key} gave ${seen} of the ${length} bytes in range`))
      ))
    )
  })

/** Counts the bytes a read emitted, recorded once when it ends (not once per chunk). */
const countRead = <E, R>(instrument: Instrument.Instrument, bytes: Stream.Stream<Uint8Array, E, R>) =>
  Stream.suspend(() => {
    let read = 0
    return Stream.mapChunks(bytes, (chunks) => {
      for (const c of chunks) read += c.length
      return chunks
    }).pipe(Stream.ensuring(Effect.suspend(() => instrument.counter(MetricKeys.bytesReadTotal, read))))
  })

/**
 * The BlobStore over `raw`. Metrics and events go through `instrument`
 * (default: the MetricsRegistry and BackendEvents in context, if any).
 */
export const make = (raw: Raw, instrument?: Instrument.Instrument): Effect.Effect<BlobStore["Type"]> =>
  Effect.map(
    instrument === undefined ? Instrument.make(raw.backend, "BlobStore") : Effect.succeed(instrument),
    (instrument) => fromInstrument(raw, instrument)
  )

const fromInstrument = (raw: Raw, instrument: Instrument.Instrument): BlobStore["Type"] => {
  const { backend } = raw

  const put = (plan?: BlobWritePlan): Sink.Sink<BlobWriteResult, Uint8Array, never, BlobError> =>
    Sink.unwrapScoped(Effect.gen(function*() {
      const checked = yield* checkPlan(backend, plan, raw.algorithm)
      const startedAt = yield* Clock.currentTimeNanos
      const hasher = yield* Hashing.makeHasher(checked.algorithm)
      const staging = yield* raw.stage(checked)
      // Spans of the two steps of every put: bytes into staging, then the staged bytes published under the key.
      return Tracing.sink(staging.sink, "graviton.BlobStore.stage", { attributes: () => ({ [Tracing.attr.backend]: backend }) }).pipe(
        Sink.mapInputChunksEffect(guard(backend, checked, hasher)),
        Sink.mapEffect(() => {
          const key = hasher.key()
          return checkExpected(backend, checked, key).pipe(
            Effect.zipRight(Tracing.effect(staging.publish(key), "graviton.BlobStore.publish", {
              attributes: () => ({ [Tracing.attr.backend]: backend, [Tracing.attr.blobKey]: BinaryKey.render(key) })
            })),
            Effect.flatMap((published) => reportPut(instrument, key, published, startedAt))
          )
        })
      )
    })).pipe(instrument.observeSink("put"))

  const get = (key: BinaryKey.BinaryKey, range?: RangeSet.ByteRange): Stream.Stream<Uint8Array, BlobError> =>
    Stream.unwrap(Effect.gen(function*() {
      const k = yield* checkKey(backend, "get", key)
      const [start, end] = yield* Either.mapLeft(RangeSet.resolveRange(range, k.size), toPortError(BlobError, backend, "get"))
      if (start === 0 && end === k.size) return countRead(instrument, verifyWhole(backend, k, raw.read(k, { start, end })))
      // Nothing to read, but a missing blob is still NotFound.
      if (start === end) {
        const found = yield* raw.stat(k)
        return found._tag === "None" ? yield* fail(backend, "NotFound", "get", `no blob ${k}`) : Stream.empty
      }
      return countRead(instrument, verifyLength(backend, k, end - start, raw.read(k, { start, end })))
    })).pipe(instrument.observeStream("get"))

  const stat = (key: BinaryKey.BinaryKey) =>
    Effect.flatMap(checkKey(backend, "stat", key), raw.stat).pipe(instrument.observe("stat"))

  const del = (key: BinaryKey.BinaryKey) =>
    Effect.gen(function*() {
      const k = yield* checkKey(backend, "delete", key)
      if (yield* raw.delete(k)) {
        yield* instrument.publish(new BlobDeleted({ backend, at: yield* Events.now, key: BinaryKey.render(k) }))
      }
    }).pipe(instrument.observe("delete"))

  return TracingPorts.blobStore(backend, BlobStore.of({ put, get, stat, delete: del, list: instrument.observeStream("list")(raw.list) }))
}
