/**
 * CasBlobStore: the content-addressed BlobStore, composed from ports so that
 * it runs unchanged over memory, fs + LevelDB, PostgreSQL or S3:
 *
 * - a MutableObjectStore holds the bytes,
 * - a KeyValueStore holds blob records (`blobs/<key>`) and, in the chunked
 *   layout, block records with reference counts (`blocks/<key>`); see BlobMeta,
 * - a ReplicaIndex learns the locator of every object written,
 * - a UnitOfWork, when the backend offers one (PostgreSQL), makes each
 *   finalizing step below one transaction across those ports,
 * - MetricsRegistry and BackendEvents, when present, get metrics and events.
 *
 * Objects live under `<scheme>://<bucket>/`:
 *
 *   <algo>/<hex[0..2]>/<hex>           a monolithic blob, at its content address
 *   <blocks>/<algo>/<hex[0..2]>/<hex>  a block of the chunked layout
 *   <staging>/<uuid>                   a monolithic put in flight
 *
 * Monolithic put. Bytes stream into a staging object while they are hashed
 * (and counted against `maxSize`, which fails at once). When the input ends
 * the key is known; a key other than `plan.expectedKey` fails and stores
 * nothing. The blob record then moves through a small state machine, every
 * step one compareAndSet (on a transactional backend, claim and publish
 * commit together, see below):
 *
 *   absent --claim--> Pending --move staging to address--> Live
 *   Live --delete--> Deleting --remove object--> absent
 *
 * Whoever claims the key (absent → Pending) owns the content address until it
 * publishes Live, so the record never points at a missing object and no
 * delete can remove bytes a put is placing. A put that finds Live deletes its
 * staging object and reports `deduplicated: true`; one that finds a fresh
 * Pending waits for it (polling, see `lease`), so of many concurrent puts of
 * the same content exactly one stores it. A put that finds Deleting (or a
 * stale Pending) takes the record over; after a Deleting it places its bytes
 * at a fresh alternate address (`<hex>.<uuid>`), because the interrupted
 * delete may still remove the usual one. A failed or interrupted put removes
 * its staging object and leaves no record; the claim-move-publish step is
 * uninterruptible.
 *
 * On a transactional backend (a UnitOfWork in the context) that step (claim,
 * move, publish Live, add the replica) is also one transaction: the object
 * appears at its address together with its Live record and replica entry, or
 * none of them does. Other writers then never see our Pending record (it is
 * uncommitted); a concurrent put of the same content reads the record as
 * absent, and its own claim waits on the row lock of ours, then fails (we
 * committed Live: the next round finds it and deduplicates) or succeeds (we
 * rolled back). Waiting on a lock replaces polling, but the loop is the same.
 * A failed step leaves the bytes at the staging address, which the put then
 * removes; a transient failure of the step is retried whole, because inside
 * a transaction the ports do not retry on their own.
 *
 * Chunked put. The stream is cut into content-defined blocks (FastCDC, see
 * Chunker). Each block is hashed and stored once under its own key: the
 * first writer puts the object and creates the block record with one
 * reference, later blobs only increment it. Up to four blocks of a put are
 * stored at once by background fibers while the input keeps flowing, so a
 * put holds at most about five blocks (`max` bytes each) in memory. The blob record, published at
 * the end, holds the manifest and owns one reference per distinct block;
 * references taken by a put that fails, is interrupted or finds the blob
 * already stored are released. Publishing is a UnitOfWork step too (the
 * references count as owned only once it has committed). Deleting a blob releases its references and
 * removes its record in one atomic `commit`; a block whose count drops to
 * zero is marked Deleting, its object removed, then its record.
 *
 * Assembly (the BlobAssembly the layer also provides, used by resumable
 * uploads). Objects already staged under `<staging>/uploads/` are read once,
 * hashed whole and one by one, and once the key is verified each becomes a
 * block of a chunked blob: moved to its block address (or removed when the
 * block is already stored), with the same reference counting as a chunked
 * put. No byte is written twice. The moves run uninterruptibly; a failure
 * during them may leave some parts consumed (the upload must then be sent
 * again: space and time are lost, never stored data).
 *
 * Reads verify. A full read is re-hashed as it flows and fails with
 * Corrupted at the end when the bytes do not match the key: every byte
 * before that failure has already been emitted, so a caller that must not
 * keep bad data writes to a temporary place and keeps it only on success.
 * A ranged read of a monolithic blob cannot be checked against a digest of
 * the whole: it is returned as stored and fails with Corrupted only when the
 * object is shorter than the record says. A ranged read of a chunked blob
 * fetches only the blocks it overlaps, each whole, checks each against its
 * block key before emitting any of its bytes, then emits the requested slice.
 *
 * Errors of the underlying ports keep their reason (`fromPortError`); the
 * ports' own backends already retry transient failures, so nothing is
 * retried here again, except a whole UnitOfWork step (see above).
 *
 * Known limits. A process that dies mid-put leaves its staging object
 * (or, chunked, block references that are never released: space, never
 * data); nothing sweeps them yet. A delete stalled between hiding a blob
 * and removing its object for longer than `lease` can remove bytes that a
 * later put of the same content placed at the same address. Without a
 * UnitOfWork the replica entry is recorded after the blob is published: if
 * that fails, the put fails although the blob is stored (a retry reports it
 * deduplicated); with one, the failure undoes the publication as well.
 */
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Sink from "effect/Sink"
import * as Stream from "effect/Stream"
import { randomUUID } from "node:crypto"
import * as BinaryKey from "../core/BinaryKey.js"
import * as BlobLocator from "../core/BlobLocator.js"
import { BlobError, type MetadataError, type ObjectStoreError, toPortError } from "../core/Errors.js"
import * as Hashing from "../core/Hashing.js"
import * as Lending from "../core/Lending.js"
import type { BlobStat, BlobWritePlan, BlobWriteResult } from "../core/Models.js"
import * as RangeSet from "../core/RangeSet.js"
import { BlobDeleted, BlobStored } from "../ports/BackendEvents.js"
import { type AssemblyPart, BlobAssembly } from "../ports/BlobAssembly.js"
import { BlobStore } from "../ports/BlobStore.js"
import { KeyValueStore, type KvCheck, type KvWrite } from "../ports/KeyValueStore.js"
import * as KV from "../ports/KeyValueStore.js"
import { getRange, MutableObjectStore } from "../ports/ObjectStore.js"
import { ReplicaIndex } from "../ports/ReplicaIndex.js"
import { UnitOfWork } from "../ports/UnitOfWork.js"
import * as BlobMeta from "./BlobMeta.js"
import * as Chunker from "./Chunker.js"
import * as Events from "../kit/Events.js"
import * as Instrument from "../kit/Instrument.js"
import * as MetricKeys from "../kit/MetricKeys.js"

/** Backend name in errors, events and metrics of this store. */
export const BACKEND = "cas"

/** How new blobs are stored: one object per blob, or content-defined blocks stored once each. */
export type Layout =
  | { readonly _tag: "Monolithic" }
  | { readonly _tag: "Chunked"; readonly min: number; readonly avg: number; readonly max: number }

/** One object per blob (the default). */
export const monolithic: Layout = { _tag: "Monolithic" }

/** Content-defined blocks: 256 KiB / 1 MiB / 4 MiB by default; a missing min or max is avg / 4 or avg * 4. */
export const chunked = (sizes: Partial<Chunker.ChunkerOptions> = {}): Layout => {
  const avg = sizes.avg ?? Chunker.defaults.avg
  return { _tag: "Chunked", min: sizes.min ?? Math.floor(avg / 4), avg, max: sizes.max ?? avg * 4 }
}

/** Options of a CasBlobStore. Invalid ones make every put fail with InvalidInput (reads still work). */
export interface Options {
  /** Hash algorithm of keys when the plan names none (default sha256). */
  readonly algorithm?: BinaryKey.HashAlgorithm | undefined
  /** Layout of newly stored blobs (default monolithic); existing blobs are read whatever their layout. */
  readonly layout?: Layout | undefined
  /** Scheme of the locators of stored objects (default "file": what FsObjectStore answers to; memory takes any). */
  readonly scheme?: string | undefined
  /** Bucket of stored objects (default "blobs"). */
  readonly bucket?: string | undefined
  /** Path prefix of staged puts inside the bucket (default "staging"). */
  readonly stagingPrefix?: string | undefined
  /** Path prefix of blocks inside the bucket (default "blocks"). */
  readonly blockPrefix?: string | undefined
  /**
   * How long a Pending or Deleting record of another writer is respected
   * before it is taken over as abandoned (default 30 seconds). Puts of the
   * same content wait while another put holds a fresh claim, polling with
   * `Effect.sleep` (under TestClock, advance the clock or use the live one).
   */
  readonly lease?: Duration.DurationInput | undefined
}

/** Defaults of the options. */
export const defaults = {
  scheme: "file",
  bucket: "blobs",
  stagingPrefix: "staging",
  blockPrefix: "blocks",
  lease: Duration.seconds(30)
} as const

/** Scheme and bucket of the locator reported for a chunked blob: its manifest, `kv://blobs/<key>`. */
export const MANIFEST_SCHEME = "kv"
const MANIFEST_BUCKET = "blobs"

/** First and longest pause of a put waiting for a concurrent put of the same content. */
const POLL_START = Duration.millis(2)
const POLL_MAX_MILLIS = 100
/** Block records read or objects removed at once. */
const CONCURRENCY = 16
/** Blocks of one put being stored at once (each holds up to `max` bytes in memory). */
const PARALLEL_BLOCKS = 4

interface Settings {
  readonly algorithm: BinaryKey.HashAlgorithm
  readonly layout: Layout
  readonly scheme: string
  readonly bucket: string
  readonly stagingPrefix: string
  readonly blockBase: BlobLocator.LocatorPrefix
  readonly leaseMillis: number
}

const fail = (reason: BlobError["reason"], method: string, description: string) =>
  new BlobError({ reason, backend: BACKEND, method, description })

/** The one error mapping of this store: a port's error becomes a BlobError with the same reason. */
export const fromPortError = (method: string) => (e: ObjectStoreError | MetadataError): BlobError =>
  new BlobError({ reason: e.reason, backend: BACKEND, method, description: e.message, cause: e })

const invalid = (method: string) => toPortError(BlobError, BACKEND, method)

/** First path segments of content addresses, which the staging and block prefixes must not use. */
const RESERVED_FIRST_SEGMENTS: ReadonlyArray<string> = ["sha256", "blake3"]

const isAlgorithm = (a: unknown): a is BinaryKey.HashAlgorithm => a === "sha256" || a === "blake3"

/** Checks the options once; the store keeps the outcome and refuses puts when it is an error. */
const resolve = (options: Options): Either.Either<Settings, BlobError> => {
  const scheme = options.scheme ?? defaults.scheme
  const bucket = options.bucket ?? defaults.bucket
  const stagingPrefix = options.stagingPrefix ?? defaults.stagingPrefix
  const blockPrefix = options.blockPrefix ?? defaults.blockPrefix
  const algorithm = options.algorithm ?? "sha256"
  const layout = options.layout ?? monolithic
  if (!isAlgorithm(algorithm)) {
    return Either.left(fail("InvalidInput", "put", `unknown hash algorithm ${JSON.stringify(algorithm)}`))
  }
  for (const [name, prefix] of [["stagingPrefix", stagingPrefix], ["blockPrefix", blockPrefix]] as const) {
    const checked = BlobLocator.make(scheme, bucket, `${prefix}/x`)
    if (Either.isLeft(checked)) return Either.left(invalid("put")(checked.left))
    const first = prefix.split("/")[0]!
    if (RESERVED_FIRST_SEGMENTS.includes(first)) {
      return Either.left(fail("InvalidInput", "put", `${name} ${JSON.stringify(prefix)} collides with content addresses`))
    }
  }
  if (stagingPrefix.split("/")[0] === blockPrefix.split("/")[0]) {
    return Either.left(fail("InvalidInput", "put", "stagingPrefix and blockPrefix must start with different segments"))
  }
  if (layout?._tag === "Chunked") {
    const sizes = Chunker.validate(layout)
    if (Either.isLeft(sizes)) return Either.left(invalid("put")(sizes.left))
  } else if (layout?._tag !== "Monolithic") {
    return Either.left(fail("InvalidInput", "put", "the layout must be monolithic or chunked"))
  }
  const lease = Duration.decodeUnknown(options.lease ?? defaults.lease)
  if (Option.isNone(lease)) return Either.left(fail("InvalidInput", "put", "lease is not a duration"))
  const blockBase = BlobLocator.makePrefix(scheme, bucket, `${blockPrefix}/`)
  if (Either.isLeft(blockBase)) return Either.left(invalid("put")(blockBase.left))
  return Either.right({
    algorithm,
    layout,
    scheme,
    bucket,
    stagingPrefix,
    blockBase: blockBase.right,
    leaseMillis: Duration.toMillis(lease.value)
  })
}

/** Re-validates a key (it may have been built from parts without checks). */
const checkKey = (method: string, key: BinaryKey.BinaryKey): Either.Either<BinaryKey.BinaryKey, BlobError> =>
  typeof key !== "object" || key === null
    ? Either.left(fail("InvalidInput", method, "the key is missing"))
    : Either.mapLeft(BinaryKey.make(key.algorithm, key.digest, key.size), invalid(method))

interface CheckedPlan {
  readonly algorithm: BinaryKey.HashAlgorithm
  readonly expectedKey: BinaryKey.BinaryKey | undefined
  readonly maxSize: number
  readonly contentType: string | undefined
}

/** Validates a write plan; the algorithm defaults to the expected key's, then the store's. */
const checkPlan = (plan: BlobWritePlan | undefined, fallback: BinaryKey.HashAlgorithm): Either.Either<CheckedPlan, BlobError> => {
  const p = plan ?? {}
  let expectedKey: BinaryKey.BinaryKey | undefined
  if (p.expectedKey !== undefined) {
    const checked = checkKey("put", p.expectedKey)
    if (Either.isLeft(checked)) return Either.left(checked.left)
    expectedKey = checked.right
  }
  const algorithm = p.algorithm ?? expectedKey?.algorithm ?? fallback
  if (!isAlgorithm(algorithm)) {
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
  if (p.contentType !== undefined && typeof p.contentType !== "string") {
    return Either.left(fail("InvalidInput", "put", "the content type must be a string"))
  }
  return Either.right({ algorithm, expectedKey, maxSize, contentType: p.contentType })
}

const sameLocator = (a: BlobLocator.BlobLocator, b: BlobLocator.BlobLocator): boolean =>
  BlobLocator.render(a) === BlobLocator.render(b)

const sameBytes = (a: Option.Option<Uint8Array>, b: Option.Option<Uint8Array>): boolean =>
  Option.isNone(a)
    ? Option.isNone(b)
    : Option.isSome(b) && Buffer.compare(Buffer.from(a.value.buffer, a.value.byteOffset, a.value.length), Buffer.from(b.value.buffer, b.value.byteOffset, b.value.length)) === 0

/** The locator reported for a stored blob: its object, or for a chunked blob its manifest (`kv://blobs/<key>`). */
export const reportedLocator = (key: BinaryKey.BinaryKey, live: BlobMeta.Live): BlobLocator.BlobLocator =>
  live.storage._tag === "Monolithic"
    ? live.storage.locator
    // Cannot fail: a checked key renders to a short path without '/' or control characters.
    : Either.getOrThrow(BlobLocator.make(MANIFEST_SCHEME, MANIFEST_BUCKET, BinaryKey.render(key)))

/** A record read from the KV store: the raw bytes (for compareAndSet) and their decoding. */
interface Read<A> {
  readonly raw: Option.Option<Uint8Array>
  readonly record: Option.Option<A>
}

/** What a finished put reports before metrics and events. */
interface Stored {
  readonly locator: BlobLocator.BlobLocator
  readonly deduplicated: boolean
}

/** The store and its BlobAssembly, sharing one set of internals. */
const build = (options: Options) =>
  Effect.gen(function*() {
    const objects = yield* MutableObjectStore
    const kv = yield* KeyValueStore
    const replicas = yield* ReplicaIndex
    const unitOfWork = yield* Effect.serviceOption(UnitOfWork)
    const instrument = yield* Instrument.make(BACKEND, "BlobStore")
    const settings = resolve(options)
    const leaseMillis = Either.match(settings, { onLeft: () => Duration.toMillis(defaults.lease), onRight: (s) => s.leaseMillis })

    // --- locators -----------------------------------------------------------

    const locatorIn = (method: string, s: Settings, path: string) =>
      Either.mapLeft(BlobLocator.make(s.scheme, s.bucket, path), invalid(method))
    const contentLocator = (s: Settings, key: BinaryKey.BinaryKey) => locatorIn("put", s, BlobMeta.contentPath(key))
    /** A fresh address next to the usual one, for content whose usual address an unfinished delete may still remove. */
    const alternateLocator = (s: Settings, key: BinaryKey.BinaryKey) =>
      locatorIn("put", s, `${BlobMeta.contentPath(key)}.${randomUUID()}`)
    const blockLocator = (s: Settings, key: BinaryKey.BinaryKey, alternate: boolean) =>
      Either.mapLeft(
        BlobLocator.child(s.blockBase, BlobMeta.contentPath(key) + (alternate ? `.${randomUUID()}` : "")),
        invalid("put")
      )

    // --- key-value records --------------------------------------------------

    const corrupt = (method: string, kvKey: string, why: string) =>
      fail("Corrupted", method, `the record ${JSON.stringify(kvKey)} is unreadable: ${why}`)

    /** Reads a record with its raw bytes (for compareAndSet); an undecodable one fails with Corrupted. */
    const readRecord = <A>(method: string, kvKey: string, decode: (bytes: Uint8Array) => Either.Either<A, string>) =>
      kv.get(kvKey).pipe(
        Effect.mapError(fromPortError(method)),
        Effect.flatMap((raw): Effect.Effect<Read<A>, BlobError> =>
          Option.match(raw, {
            onNone: () => Effect.succeed({ raw, record: Option.none() }),
            onSome: (bytes) =>
              Either.match(decode(bytes), {
                onLeft: (why) => Effect.fail(corrupt(method, kvKey, why)),
                onRight: (record) => Effect.succeed({ raw, record: Option.some(record) })
              })
          })
        )
      )

    const readBlob = (method: string, key: BinaryKey.BinaryKey) =>
      readRecord(method, BlobMeta.blobKey(key), (bytes) => BlobMeta.decodeBlob(key, bytes))

    const readBlock = (method: string, kvKey: string) => readRecord(method, kvKey, BlobMeta.decodeBlock)

    const cas = (method: string, kvKey: string, expected: Option.Option<Uint8Array>, next: Option.Option<Uint8Array>) =>
      Effect.mapError(kv.compareAndSet(kvKey, expected, next), fromPortError(method))

    /**
     * Runs a finalizing step as one transaction when the backend offers a
     * UnitOfWork, and as it is otherwise. In a transaction, `rolledBack`
     * runs after each failed attempt (the step's writes are undone, so
     * in-memory state must follow), and a transient failure is retried
     * whole, since the ports retry nothing inside a caller's transaction.
     */
    const atomically = <A, R>(method: string, step: Effect.Effect<A, BlobError, R>, rolledBack: Effect.Effect<void> = Effect.void) =>
      Option.match(unitOfWork, {
        onNone: () => step,
        onSome: (uow) =>
          uow.atomically(step).pipe(
            Effect.mapError((e) => (e instanceof BlobError ? e : fromPortError(method)(e))),
            Effect.onError(() => rolledBack),
            instrument.retry(method)
          )
      })

    const now = Clock.currentTimeMillis
    const isStale = (since: number, at: number) => at - since > leaseMillis

    // --- objects ------------------------------------------------------------

    const writeObject = (method: string, locator: BlobLocator.BlobLocator, bytes: Uint8Array) =>
      Effect.mapError(Stream.run(Stream.make(bytes), objects.put(locator, { size: bytes.length })), fromPortError(method))

    /** Removes an object when losing it only costs space: failures are logged, never raised. */
    const discard = (locator: BlobLocator.BlobLocator, why: string) =>
      objects.delete(locator).pipe(
        Effect.catchAll((e) => Effect.logWarning(`cas: could not remove ${BlobLocator.render(locator)} (${why}): ${e.message}`))
      )

    // --- blocks -------------------------------------------------------------

    /** References a put holds on blocks, by block record key; owned by the blob record once it is published. */
    type Held = Map<string, { readonly key: BinaryKey.BinaryKey; readonly locator: BlobLocator.BlobLocator }>

    /**
     * Takes one reference on the block `key` (whose bytes are `bytes`),
     * storing the bytes when no live copy exists, and records it in `held`.
     * Returns where the block lives and whether its bytes were written now.
     */
    const acquireBlock = (s: Settings, key: BinaryKey.BinaryKey, bytes: Uint8Array, held: Held) =>
      Effect.gen(function*() {
        const kvKey = BlobMeta.blockKey(key)
        while (true) {
          const { raw, record } = yield* readBlock("put", kvKey)
          const current = Option.getOrUndefined(record)
          // Taking the reference and noting it in `held` happen together, so an interrupted put releases exactly what it took.
          const take = (locator: BlobLocator.BlobLocator, next: BlobMeta.BlockRecord) =>
            Effect.tap(
              cas("put", kvKey, raw, Option.some(BlobMeta.encodeBlock(next))),
              (ok) => ok ? Effect.sync(() => held.set(kvKey, { key, locator })) : Effect.void
            )
          if (current?._tag === "Live") {
            const ok = yield* Effect.uninterruptible(take(current.locator, { ...current, refs: current.refs + 1 }))
            if (ok) return { locator: current.locator, written: false }
            continue
          }
          // No live copy: write the bytes first, then publish the record, so a live record always has its object.
          // After a Deleting record, a fresh address: the unfinished delete may still remove the usual one.
          // Uninterruptible as a whole: an interruption landing just after the object became visible would
          // otherwise leave it without a record (interruption waits for one block write at most).
          const target = yield* blockLocator(s, key, current !== undefined)
          const ok = yield* Effect.uninterruptible(
            Effect.zipRight(writeObject("put", target, bytes), take(target, { _tag: "Live", refs: 1, locator: target }))
          )
          if (!ok) {
            if (current !== undefined) yield* discard(target, "lost the race for a block")
            continue
          }
          // The record was absent when read, but a delete of an earlier copy may have removed the object after we
          // wrote it and before its record disappeared; we hold the record now, so rewriting is safe.
          if (Option.isNone(yield* Effect.mapError(objects.head(target), fromPortError("put")))) {
            yield* writeObject("put", target, bytes)
          }
          yield* Effect.mapError(replicas.add(key, target), fromPortError("put"))
          return { locator: target, written: true }
        }
      })

    /**
     * Like `acquireBlock`, for a block whose bytes are already an object at
     * `source` (a staged part, see `assemble`): when no live copy exists the
     * object is moved to the block's address, otherwise it is removed.
     */
    const adoptBlock = (s: Settings, key: BinaryKey.BinaryKey, source: BlobLocator.BlobLocator, held: Held) =>
      Effect.gen(function*() {
        const kvKey = BlobMeta.blockKey(key)
        while (true) {
          const { raw, record } = yield* readBlock("assemble", kvKey)
          const current = Option.getOrUndefined(record)
          const take = (locator: BlobLocator.BlobLocator, next: BlobMeta.BlockRecord) =>
            Effect.tap(
              cas("assemble", kvKey, raw, Option.some(BlobMeta.encodeBlock(next))),
              (ok) => ok ? Effect.sync(() => held.set(kvKey, { key, locator })) : Effect.void
            )
          if (current?._tag === "Live") {
            const ok = yield* Effect.uninterruptible(take(current.locator, { ...current, refs: current.refs + 1 }))
            if (!ok) continue
            yield* discard(source, "a live copy of the block exists")
            return current.locator
          }
          const target = yield* blockLocator(s, key, current !== undefined)
          const moved = Effect.mapError(objects.move(source, target), fromPortError("assemble"))
          const ok = yield* Effect.uninterruptible(
            Effect.zipRight(moved, take(target, { _tag: "Live", refs: 1, locator: target }))
          )
          if (!ok) {
            // Lost a race for the record. At a private (alternate) address the bytes go back to be tried again;
            // at the usual one they are valid bytes of this very block, which the next round finds or replaces.
            if (current !== undefined) yield* Effect.mapError(objects.move(target, source), fromPortError("assemble"))
            continue
          }
          if (Option.isNone(yield* Effect.mapError(objects.head(target), fromPortError("assemble")))) {
            // A delete of an earlier copy removed the object between our move and our record: the bytes are gone.
            return yield* fail("Conflict", "assemble", `block ${key} was removed by a concurrent delete; upload it again`)
          }
          yield* Effect.mapError(replicas.add(key, target), fromPortError("assemble"))
          return target
        }
      })

    /**
     * Drops one reference on each block, atomically, together with removing
     * the blob record `blob` when given (the delete of a chunked blob). Blocks
     * left without references are then removed. False when `blob` no longer
     * holds the expected value (someone else changed or removed it first).
     */
    const releaseBlocks = (
      method: string,
      blocks: ReadonlyArray<{ readonly key: BinaryKey.BinaryKey }>,
      blob?: { readonly kvKey: string; readonly raw: Uint8Array }
    ) =>
      Effect.gen(function*() {
        const token = randomUUID()
        while (true) {
          const current = yield* Effect.forEach(
            blocks,
            (b) => {
              const kvKey = BlobMeta.blockKey(b.key)
              return Effect.map(readBlock(method, kvKey), (read) => ({ ...read, kvKey, key: b.key }))
            },
            { concurrency: CONCURRENCY }
          )
          const since = yield* now
          const checks: Array<KvCheck> = []
          const writes: Array<KvWrite> = []
          const dropped: Array<{ kvKey: string; key: BinaryKey.BinaryKey; locator: BlobLocator.BlobLocator; tomb: Uint8Array }> = []
          if (blob !== undefined) {
            checks.push({ key: blob.kvKey, expected: Option.some(blob.raw) })
            writes.push(KV.del(blob.kvKey))
          }
          for (const c of current) {
            const record = Option.getOrUndefined(c.record)
            // A reference is only ever held on a live block; anything else has nothing to release.
            if (record?._tag !== "Live") continue
            checks.push({ key: c.kvKey, expected: c.raw })
            if (record.refs > 1) {
              writes.push(KV.put(c.kvKey, BlobMeta.encodeBlock({ ...record, refs: record.refs - 1 })))
            } else {
              const tomb = BlobMeta.encodeBlock({ _tag: "Deleting", token, since, locator: record.locator })
              writes.push(KV.put(c.kvKey, tomb))
              dropped.push({ kvKey: c.kvKey, key: c.key, locator: record.locator, tomb })
            }
          }
          const ok = yield* Effect.mapError(kv.commit(checks, writes), fromPortError(method))
          if (!ok) {
            if (blob !== undefined) {
              const again = yield* Effect.mapError(kv.get(blob.kvKey), fromPortError(method))
              if (!sameBytes(again, Option.some(blob.raw))) return false
            }
            continue
          }
          // The records now say Deleting: no put uses these addresses until the records are gone.
          yield* Effect.forEach(dropped, (d) =>
            Effect.gen(function*() {
              yield* Effect.mapError(objects.delete(d.locator), fromPortError(method))
              yield* Effect.mapError(replicas.remove(d.key, d.locator), fromPortError(method))
              // Fails harmlessly when a put has taken the record over meanwhile.
              yield* cas(method, d.kvKey, Option.some(d.tomb), Option.none())
            }), { concurrency: CONCURRENCY, discard: true })
          return true
        }
      })

    // --- put ----------------------------------------------------------------

    const checkExpected = (plan: CheckedPlan, key: BinaryKey.BinaryKey) =>
      plan.expectedKey === undefined || BinaryKey.render(plan.expectedKey) === BinaryKey.render(key)
        ? Effect.void
        : Effect.fail(
          fail("InvalidInput", "put", `the content hashes to ${key} but the expected key is ${plan.expectedKey}; nothing was stored`)
        )

    /** Hashes each input chunk and enforces the size limits before the chunk goes any further. */
    const guard = (plan: CheckedPlan, hasher: Hashing.Hasher) => {
      const limit = Math.min(plan.maxSize, plan.expectedKey?.size ?? Number.POSITIVE_INFINITY)
      return (chunks: Chunk.Chunk<Uint8Array>): Effect.Effect<Chunk.Chunk<Uint8Array>, BlobError> => {
        let incoming = 0
        for (const c of chunks) incoming += c.length
        if (hasher.size + incoming > limit) {
          return Effect.fail(
            hasher.size + incoming > plan.maxSize
              ? fail("InvalidInput", "put", `the content exceeds maxSize (${plan.maxSize} bytes); nothing was stored`)
              : fail("InvalidInput", "put", `the content is longer than the expected key ${plan.expectedKey} says; nothing was stored`)
          )
        }
        for (const c of chunks) hasher.update(c)
        // Empty arrays carry nothing, and some object stores reject a zero-length write.
        return Effect.succeed(incoming === 0 ? Chunk.empty() : Chunk.filter(chunks, (c) => c.length > 0))
      }
    }

    /** Waits a little longer each time, for a concurrent put to finish. */
    const backoff = (attempt: number) =>
      Effect.sleep(Duration.millis(Math.min(POLL_MAX_MILLIS, Duration.toMillis(POLL_START) * 2 ** attempt)))

    /**
     * Publishes a monolithic blob whose bytes are at `place.source` (the
     * staging object at first): the claim loop described at the top.
     */
    const storeMonolithic = (
      s: Settings,
      key: BinaryKey.BinaryKey,
      place: { source: BlobLocator.BlobLocator },
      contentType: string | undefined
    ) =>
      Effect.gen(function*() {
        const kvKey = BlobMeta.blobKey(key)
        const token = randomUUID()
        for (let attempt = 0;; attempt++) {
          const { raw, record } = yield* readBlob("put", key)
          const current = Option.getOrUndefined(record)
          const at = yield* now
          let target: BlobLocator.BlobLocator
          if (current === undefined) {
            target = yield* contentLocator(s, key)
          } else if (current._tag === "Live") {
            return { locator: reportedLocator(key, current), deduplicated: true } satisfies Stored
          } else if (current._tag === "Pending") {
            if (current.token !== token && !isStale(current.since, at)) {
              yield* backoff(attempt)
              continue
            }
            // Our own claim (a compareAndSet that succeeded but reported an error), or an abandoned one.
            target = current.locator
          } else {
            target = yield* alternateLocator(s, key)
          }
          const mine = current?._tag === "Pending" && current.token === token
          const claim = mine ? raw : Option.some(BlobMeta.encodeBlob(key, { _tag: "Pending", token, since: at, locator: target }))
          const claimed = mine ? Effect.succeed(true) : cas("put", kvKey, raw, claim)
          // Put the claim back as it was (e.g. a Deleting record, so that its address stays avoided).
          const release = Effect.ignore(cas("put", kvKey, claim, mine ? Option.none() : raw))
          const before = place.source
          const step = Effect.gen(function*() {
            if (!(yield* claimed)) return Option.none<Stored>()
            if (!sameLocator(place.source, target)) {
              yield* Effect.tapError(Effect.mapError(objects.move(place.source, target), fromPortError("put")), () => release)
              place.source = target
            } else if (Option.isNone(yield* Effect.mapError(objects.head(target), fromPortError("put")))) {
              // Moved here in an earlier round whose claim was lost; a delete has removed the bytes since.
              yield* release
              return yield* fail("Conflict", "put", `${key} was deleted while this put was storing it; put it again`)
            }
            const live = BlobMeta.encodeBlob(key, {
              _tag: "Live",
              id: token,
              createdAt: yield* now,
              contentType,
              storage: { _tag: "Monolithic", locator: target }
            })
            if (!(yield* cas("put", kvKey, claim, Option.some(live)))) return Option.none<Stored>()
            yield* Effect.mapError(replicas.add(key, target), fromPortError("put"))
            return Option.some<Stored>({ locator: target, deduplicated: false })
          })
          // A failed transaction has undone the move too: the bytes are back where they were.
          const published = yield* Effect.uninterruptible(
            atomically("put", step, Effect.sync(() => (place.source = before)))
          )
          if (Option.isSome(published)) return published.value
        }
      })

    /** Publishes a chunked blob whose block references are in `held`. */
    const storeChunked = (
      s: Settings,
      key: BinaryKey.BinaryKey,
      blocks: ReadonlyArray<BlobMeta.BlockRef>,
      contentType: string | undefined,
      onOwned: () => void
    ) =>
      Effect.gen(function*() {
        const kvKey = BlobMeta.blobKey(key)
        for (let attempt = 0;; attempt++) {
          const { raw, record } = yield* readBlob("put", key)
          const current = Option.getOrUndefined(record)
          const at = yield* now
          if (current?._tag === "Live") return { locator: reportedLocator(key, current), deduplicated: true } satisfies Stored
          if (current?._tag === "Pending" && !isStale(current.since, at)) {
            yield* backoff(attempt)
            continue
          }
          // Absent, an abandoned claim or a delete in progress: blocks need no address of the blob's own, so publish directly.
          const live: BlobMeta.Live = {
            _tag: "Live",
            id: randomUUID(),
            createdAt: at,
            contentType,
            storage: { _tag: "Chunked", blockBase: s.blockBase, blocks }
          }
          // The record owns the references only once it is committed.
          const ok = yield* Effect.uninterruptible(
            Effect.tap(
              atomically("put", cas("put", kvKey, raw, Option.some(BlobMeta.encodeBlob(key, live)))),
              (ok) => ok ? Effect.sync(onOwned) : Effect.void
            )
          )
          if (ok) return { locator: reportedLocator(key, live), deduplicated: false } satisfies Stored
        }
      })

    /** Metrics and the BlobStored event of a finished put. */
    const report = (key: BinaryKey.BinaryKey, stored: Stored, startedAt: bigint, blocks: number, newBytes: number) =>
      Effect.gen(function*() {
        const seconds = Number((yield* Clock.currentTimeNanos) - startedAt) / 1e9
        yield* instrument.counter(MetricKeys.bytesIngested, key.size)
        yield* instrument.counter(MetricKeys.blocksIngested, blocks)
        yield* instrument.histogram(MetricKeys.uploadDurationSeconds, seconds)
        if (stored.deduplicated) yield* instrument.counter(MetricKeys.dedupHitsTotal, 1)
        if (newBytes > 0) yield* instrument.counter(MetricKeys.bytesWrittenTotal, newBytes)
        yield* instrument.publish(
          new BlobStored({
            backend: BACKEND,
            at: yield* Events.now,
            key: BinaryKey.render(key),
            locator: BlobLocator.render(stored.locator),
            size: key.size,
            deduplicated: stored.deduplicated
          })
        )
        return { key, locator: stored.locator, size: key.size, deduplicated: stored.deduplicated } satisfies BlobWriteResult
      })

    const putMonolithic = (s: Settings, plan: CheckedPlan) =>
      Effect.gen(function*() {
        // A blob is one object here: refuse before the first byte what the store cannot hold.
        const largest = objects.capabilities.maxObjectSize
        if (largest !== undefined && plan.expectedKey !== undefined && plan.expectedKey.size > largest) {
          return yield* fail("InvalidInput", "put", `${plan.expectedKey} is larger than the object store's largest object (${largest} bytes); the chunked layout has no such limit`)
        }
        const startedAt = yield* Clock.currentTimeNanos
        const hasher = yield* Hashing.makeHasher(plan.algorithm)
        const staging = yield* locatorIn("put", s, `${s.stagingPrefix}/${randomUUID()}`)
        // Where our bytes are: the staging object until they are moved to their address.
        const place = { source: staging }
        return objects.put(staging, {
          ...(plan.contentType === undefined ? {} : { contentType: plan.contentType }),
          ...(plan.expectedKey === undefined ? {} : { size: plan.expectedKey.size })
        }).pipe(
          Sink.mapError(fromPortError("put")),
          Sink.mapInputChunksEffect(guard(plan, hasher)),
          Sink.mapEffect(() =>
            Effect.gen(function*() {
              const key = hasher.key()
              yield* checkExpected(plan, key)
              const stored = yield* storeMonolithic(s, key, place, plan.contentType)
              return yield* report(key, stored, startedAt, 1, stored.deduplicated ? 0 : key.size)
            })
          ),
          // Failed, interrupted or deduplicated: the staged bytes are not needed (a moved object is never removed here).
          Sink.ensuringWith(() => sameLocator(place.source, staging) ? discard(staging, "staging of a finished put") : Effect.void)
        )
      })

    const putChunked = (s: Settings, plan: CheckedPlan, sizes: Chunker.ChunkerOptions) =>
      Effect.gen(function*() {
        const startedAt = yield* Clock.currentTimeNanos
        const hasher = yield* Hashing.makeHasher(plan.algorithm)
        // Blocks are copied into pooled buffers, each given back once its block is stored, and the input
        // chunks once cut (see Lending): a chunked put makes no garbage of its bytes either.
        const blockPool = new Lending.Pool(sizes.max, { keep: PARALLEL_BLOCKS + 2 })
        const chunker = new Chunker.Chunker(sizes, {
          take: () => blockPool.take(),
          finish: (buffer, size) => blockPool.lend(buffer as Buffer, size)
        })
        const check = guard(plan, hasher)
        const held: Held = new Map()
        let owned = false
        let newBytes = 0
        // Blocks are stored by background fibers, a few at a time, while the input keeps flowing:
        // each holds its block's bytes until stored, so the permits also bound the memory in use.
        const permits = yield* Effect.makeSemaphore(PARALLEL_BLOCKS)
        const running = new Set<Fiber.RuntimeFiber<void>>()
        let failure: BlobError | undefined
        // One acquisition per distinct block, however often the blob repeats it.
        const slots = new Map<string, Deferred.Deferred<BlobLocator.BlobLocator, BlobError>>()
        const entries: Array<{ readonly key: BinaryKey.BinaryKey; readonly offset: number; readonly slot: Deferred.Deferred<BlobLocator.BlobLocator, BlobError> }> = []
        let offset = 0

        // `bytes` (a pooled block) is this put's to give back once nothing reads it.
        const storeBlock = (bytes: Uint8Array) =>
          Effect.gen(function*() {
            if (failure !== undefined) return yield* failure
            const blockHasher = yield* Hashing.makeHasher(plan.algorithm)
            blockHasher.update(bytes)
            const key = blockHasher.key()
            const kvKey = BlobMeta.blockKey(key)
            let slot = slots.get(kvKey)
            if (slot !== undefined) Lending.giveBack(bytes)
            if (slot === undefined) {
              const fresh = yield* Deferred.make<BlobLocator.BlobLocator, BlobError>()
              slot = fresh
              slots.set(kvKey, fresh)
              yield* permits.take(1)
              // The store gets a view of its own: its write must not give the buffer back, because the
              // block may be written again (see acquireBlock); this fiber gives it back when done.
              const fiber = yield* acquireBlock(s, key, bytes.subarray(0), held).pipe(
                Effect.ensuring(Effect.sync(() => Lending.giveBack(bytes))),
                Effect.map((taken) => {
                  if (taken.written) newBytes += bytes.length
                  return taken.locator
                }),
                Effect.tapError((e) => Effect.sync(() => (failure ??= e))),
                Effect.exit,
                Effect.flatMap((exit) => Deferred.done(fresh, exit)),
                Effect.asVoid,
                Effect.ensuring(permits.release(1)),
                Effect.forkDaemon
              )
              running.add(fiber)
              fiber.addObserver(() => running.delete(fiber))
            }
            entries.push({ key, offset, slot })
            offset += bytes.length
          })

        const consume = (chunks: Chunk.Chunk<Uint8Array>) =>
          Effect.flatMap(check(chunks), (checked) =>
            Effect.forEach(checked, (c) => {
              const blocks = chunker.push(c)
              // Hashed by `check` and copied by the chunker: the input chunk is free again.
              Lending.giveBack(c)
              return Effect.forEach(blocks, storeBlock, { discard: true })
            }, { discard: true }))

        return Sink.forEachChunk(consume).pipe(
          Sink.mapEffect(() =>
            Effect.gen(function*() {
              const last = chunker.flush()
              if (last !== undefined) yield* storeBlock(last)
              const manifest = yield* Effect.forEach(entries, (e) =>
                Effect.map(Deferred.await(e.slot), (locator): BlobMeta.BlockRef => ({ key: e.key, offset: e.offset, locator })))
              const key = hasher.key()
              yield* checkExpected(plan, key)
              const stored = yield* storeChunked(s, key, manifest, plan.contentType, () => {
                owned = true
              })
              return yield* report(key, stored, startedAt, manifest.length, newBytes)
            })
          ),
          // Stop the block writers first (each finishes or undoes its current step), then, unless the
          // blob record now owns them, give back the references this put took.
          Sink.ensuringWith(() =>
            Effect.zipRight(
              Fiber.interruptAll(Array.from(running)),
              // Suspended: `held` is read only once the writers have stopped.
              Effect.suspend(() =>
                owned || held.size === 0
                  ? Effect.void
                  : releaseBlocks("put", Array.from(held.values())).pipe(
                    Effect.catchAll((e) => Effect.logWarning(`cas: could not release the blocks of an unfinished put: ${e.message}`))
                  )
              )
            )
          )
        )
      })

    /** Keys trusted from the caller (see BlobAssembly), when they are complete and consistent. */
    const trustedKeys = (parts: ReadonlyArray<AssemblyPart>, known: BinaryKey.BinaryKey | undefined, algorithm: BinaryKey.HashAlgorithm) => {
      if (known === undefined || known.algorithm !== algorithm) return undefined
      let total = 0
      for (const p of parts) {
        if (p.key === undefined || p.key.algorithm !== algorithm) return undefined
        total += p.key.size
      }
      return total === known.size ? known : undefined
    }

    /**
     * The blob made of staged objects (BlobAssembly): each part is read once,
     * hashed on its own and into the whole; once the whole key is known and
     * verified, each part becomes a block of a chunked blob (moved to its
     * block address, or removed when that block is already stored), so no
     * byte is written twice. Works whatever the configured layout; in the
     * monolithic one, a single part becomes the blob's own object.
     */
    const assemble = (parts: ReadonlyArray<AssemblyPart>, plan?: BlobWritePlan, known?: BinaryKey.BinaryKey) =>
      Effect.gen(function*() {
        const s = yield* settings
        const checked = yield* checkPlan(plan, s.algorithm)
        const startedAt = yield* Clock.currentTimeNanos
        const limit = Math.min(checked.maxSize, checked.expectedKey?.size ?? Number.POSITIVE_INFINITY)
        const blocks: Array<{ readonly key: BinaryKey.BinaryKey; readonly offset: number; readonly source: BlobLocator.BlobLocator }> = []
        const empty: Array<BlobLocator.BlobLocator> = []
        const trusted = trustedKeys(parts, known, checked.algorithm)
        let key: BinaryKey.BinaryKey
        if (trusted !== undefined) {
          // Hashed by the caller as the bytes were written: nothing to read again.
          if (trusted.size > limit) {
            return yield* fail("InvalidInput", "assemble", `the parts are longer than the plan allows (${limit} bytes); nothing was stored`)
          }
          let offset = 0
          for (const part of parts) {
            if (part.key!.size === 0) empty.push(part.locator)
            else blocks.push({ key: part.key!, offset, source: part.locator })
            offset += part.key!.size
          }
          key = trusted
        } else {
          const whole = yield* Hashing.makeHasher(checked.algorithm)
          for (const { locator: part } of parts) {
            const hasher = yield* Hashing.makeHasher(checked.algorithm)
            yield* objects.get(part).pipe(
              Stream.mapError(fromPortError("assemble")),
              Stream.runForEachChunk((chunks) =>
                Effect.suspend(() => {
                  for (const c of chunks) {
                    hasher.update(c)
                    whole.update(c)
                  }
                  return whole.size > limit
                    ? Effect.fail(fail("InvalidInput", "assemble", `the parts are longer than the plan allows (${limit} bytes); nothing was stored`))
                    : Effect.void
                })
              )
            )
            if (hasher.size === 0) empty.push(part)
            else blocks.push({ key: hasher.key(), offset: whole.size - hasher.size, source: part })
          }
          key = whole.key()
        }
        yield* checkExpected(checked, key)
        const held: Held = new Map()
        let owned = false
        const adopt = Effect.gen(function*() {
          yield* Effect.forEach(empty, (p) => discard(p, "an empty part"), { discard: true })
          const existing = yield* readBlob("assemble", key)
          const live = Option.getOrUndefined(existing.record)
          if (live?._tag === "Live") {
            yield* Effect.forEach(blocks, (b) => discard(b.source, "the blob is already stored"), { concurrency: CONCURRENCY, discard: true })
            return yield* report(key, { locator: reportedLocator(key, live), deduplicated: true }, startedAt, 0, 0)
          }
          if (blocks.length === 1 && s.layout._tag === "Monolithic") {
            // The whole content in one object: it becomes the blob itself, as a monolithic put's staging does.
            const source = blocks[0]!.source
            const place = { source }
            const stored = yield* storeMonolithic(s, key, place, checked.contentType)
            if (sameLocator(place.source, source)) yield* discard(source, "the blob is already stored")
            return yield* report(key, stored, startedAt, 1, 0)
          }
          // A block repeated inside the blob is adopted once; its other parts are removed.
          const first = new Map<string, BlobLocator.BlobLocator>()
          const extra: Array<BlobLocator.BlobLocator> = []
          for (const b of blocks) {
            const k = BinaryKey.render(b.key)
            if (first.has(k)) extra.push(b.source)
            else first.set(k, b.source)
          }
          const placed = new Map<string, BlobLocator.BlobLocator>()
          yield* Effect.forEach(blocks, (b) => {
            const k = BinaryKey.render(b.key)
            return first.get(k) === b.source
              ? Effect.map(adoptBlock(s, b.key, b.source, held), (locator) => void placed.set(k, locator))
              : Effect.void
          }, { concurrency: PARALLEL_BLOCKS, discard: true })
          yield* Effect.forEach(extra, (p) => discard(p, "a repeated block"), { discard: true })
          const manifest = blocks.map((b): BlobMeta.BlockRef => ({ key: b.key, offset: b.offset, locator: placed.get(BinaryKey.render(b.key))! }))
          const stored = yield* storeChunked(s, key, manifest, checked.contentType, () => {
            owned = true
          })
          return yield* report(key, stored, startedAt, manifest.length, 0)
        })
        // Adoption is short (renames and records) and must not stop half-way: parts consumed by it are gone.
        return yield* Effect.uninterruptible(adopt).pipe(
          // Unless the blob record now owns them, give back the references taken (as a failed chunked put does).
          Effect.ensuring(Effect.suspend(() =>
            owned || held.size === 0
              ? Effect.void
              : releaseBlocks("assemble", Array.from(held.values())).pipe(
                Effect.catchAll((e) => Effect.logWarning(`cas: could not release the blocks of an unfinished assembly: ${e.message}`))
              )
          ))
        )
      }).pipe(instrument.observe("assemble"))

    const put = (plan?: BlobWritePlan): Sink.Sink<BlobWriteResult, Uint8Array, never, BlobError> =>
      Sink.unwrap(
        Effect.gen(function*() {
          const s = yield* settings
          const checked = yield* checkPlan(plan, s.algorithm)
          return s.layout._tag === "Chunked"
            ? yield* putChunked(s, checked, s.layout)
            : yield* putMonolithic(s, checked)
        })
      ).pipe(instrument.observeSink("put"))

    // --- get ----------------------------------------------------------------

    const corrupted = (method: string, key: BinaryKey.BinaryKey, why: string) =>
      fail("Corrupted", method, `the stored bytes of ${key} ${why}`)

    /** Re-hashes the whole stream; a mismatch fails it with Corrupted after its last chunk. */
    const verifyWhole = (key: BinaryKey.BinaryKey, bytes: Stream.Stream<Uint8Array, BlobError>) =>
      Stream.unwrap(Effect.map(Hashing.makeHasher(key.algorithm), (hasher) =>
        Stream.concat(
          Stream.mapChunks(bytes, (chunks) => {
            for (const c of chunks) hasher.update(c)
            return chunks
          }),
          Stream.execute(Effect.suspend(() => {
            if (hasher.size !== key.size) return Effect.fail(corrupted("get", key, `are ${hasher.size} bytes long`))
            const digest = hasher.digest()
            return digest === key.digest ? Effect.void : Effect.fail(corrupted("get", key, `hash to ${digest}`))
          }))
        )))

    /**
     * An object of a live blob read as missing: the blob was deleted during
     * the read (NotFound), or its bytes are lost (Corrupted) when the record
     * is still the one the read started from.
     */
    const whenMissing = (key: BinaryKey.BinaryKey, raw: Option.Option<Uint8Array>, ranged: boolean) => (e: ObjectStoreError) =>
      e.reason === "NotFound"
        ? Effect.flatMap(Effect.mapError(kv.get(BlobMeta.blobKey(key)), fromPortError("get")), (again) =>
          Effect.fail(
            sameBytes(again, raw)
              ? corrupted("get", key, `are missing: ${e.message}`)
              : fail("NotFound", "get", `${key} was deleted during the read`)
          ))
        : ranged && e.reason === "InvalidInput"
        // The range was checked against the recorded size, so the object is shorter than it should be.
        ? Effect.fail(corrupted("get", key, `are shorter than recorded: ${e.message}`))
        : Effect.fail(fromPortError("get")(e))

    /** Reads one whole block and checks it against its key before any byte of it is used. */
    const readVerifiedBlock = (key: BinaryKey.BinaryKey, raw: Option.Option<Uint8Array>, block: BlobMeta.BlockRef) =>
      Effect.gen(function*() {
        const hasher = yield* Hashing.makeHasher(block.key.algorithm)
        const parts = yield* Stream.runCollect(objects.get(block.locator)).pipe(Effect.catchAll(whenMissing(key, raw, false)))
        const bytes = new Uint8Array(Chunk.reduce(parts, 0, (n, p) => n + p.length))
        let at = 0
        for (const p of parts) {
          bytes.set(p, at)
          at += p.length
        }
        hasher.update(bytes)
        if (hasher.size !== block.key.size || hasher.digest() !== block.key.digest) {
          return yield* corrupted("get", key, `do not match block ${block.key} at offset ${block.offset}`)
        }
        return bytes
      })

    /** Index of the block holding byte `position` (blocks are sorted by offset and non-empty). */
    const blockAt = (blocks: ReadonlyArray<BlobMeta.BlockRef>, position: number): number => {
      let lo = 0
      let hi = blocks.length - 1
      while (lo < hi) {
        const mid = (lo + hi + 1) >>> 1
        if (blocks[mid]!.offset <= position) lo = mid
        else hi = mid - 1
      }
      return lo
    }

    const get = (key: BinaryKey.BinaryKey, range?: RangeSet.ByteRange): Stream.Stream<Uint8Array, BlobError> =>
      Stream.unwrap(
        Effect.gen(function*() {
          const k = yield* checkKey("get", key)
          const { raw, record } = yield* readBlob("get", k)
          const live = Option.getOrUndefined(record)
          if (live?._tag !== "Live") return yield* fail("NotFound", "get", `no blob ${k}`)
          const [start, end] = yield* Either.mapLeft(RangeSet.resolveRange(range, k.size), invalid("get"))
          const whole = start === 0 && end === k.size
          const storage = live.storage
          if (storage._tag === "Monolithic") {
            // Through getRange: a store without ranged reads serves the whole object, cut here.
            const bytes = getRange(objects, storage.locator, whole ? undefined : { start, end }).pipe(
              Stream.catchAll((e) => Stream.fromEffect(whenMissing(k, raw, !whole)(e)))
            )
            if (whole) return verifyWhole(k, bytes)
            // A short object would otherwise end the stream early without an error.
            let seen = 0
            return Stream.concat(
              Stream.mapChunks(bytes, (chunks) => {
                for (const c of chunks) seen += c.length
                return chunks
              }),
              Stream.execute(Effect.suspend(() =>
                seen === end - start ? Effect.void : Effect.fail(corrupted("get", k, `are shorter than recorded (${seen} of ${end - start} bytes in range)`))
              ))
            )
          }
          const blocks = storage.blocks
          if (whole) {
            return verifyWhole(
              k,
              Stream.flatMap(Stream.fromIterable(blocks), (b) =>
                objects.get(b.locator).pipe(Stream.catchAll((e) => Stream.fromEffect(whenMissing(k, raw, false)(e)))))
            )
          }
          if (start === end) return Stream.empty
          const first = blockAt(blocks, start)
          const last = blockAt(blocks, end - 1)
          return Stream.fromIterable(blocks.slice(first, last + 1)).pipe(
            // Two blocks in flight: the next one is fetched while the current one is consumed.
            Stream.mapEffect((b) =>
              Effect.map(readVerifiedBlock(k, raw, b), (bytes) =>
                bytes.subarray(Math.max(0, start - b.offset), Math.min(bytes.length, end - b.offset))), { concurrency: 2 })
          )
        })
      ).pipe(instrument.observeStream("get"))

    // --- stat, list, delete -------------------------------------------------

    const toStat = (key: BinaryKey.BinaryKey, live: BlobMeta.Live): BlobStat => ({
      key,
      size: key.size,
      locator: Option.some(reportedLocator(key, live)),
      createdAt: Option.some(new Date(live.createdAt))
    })

    const stat = (key: BinaryKey.BinaryKey) =>
      Effect.gen(function*() {
        const k = yield* checkKey("stat", key)
        const { record } = yield* readBlob("stat", k)
        return Option.flatMap(record, (r) => (r._tag === "Live" ? Option.some(toStat(k, r)) : Option.none()))
      }).pipe(instrument.observe("stat"))

    const list: Stream.Stream<BlobStat, BlobError> = kv.list(BlobMeta.BLOBS).pipe(
      Stream.mapError(fromPortError("list")),
      Stream.mapEffect(([kvKey, bytes]) =>
        Either.match(BinaryKey.parse(kvKey.slice(BlobMeta.BLOBS.length)), {
          onLeft: (e) => Effect.fail(corrupt("list", kvKey, e.message)),
          onRight: (key) =>
            Either.match(BlobMeta.decodeBlob(key, bytes), {
              onLeft: (why) => Effect.fail(corrupt("list", kvKey, why)),
              onRight: (record) => Effect.succeed(record._tag === "Live" ? Option.some(toStat(key, record)) : Option.none())
            })
        })
      ),
      Stream.filterMap((s) => s),
      instrument.observeStream("list")
    )

    /** Removes a hidden monolithic blob's object and replica entry, then its tombstone. */
    const removeMonolithic = (key: BinaryKey.BinaryKey, locator: BlobLocator.BlobLocator, tomb: Uint8Array) =>
      Effect.gen(function*() {
        yield* Effect.mapError(objects.delete(locator), fromPortError("delete"))
        yield* Effect.mapError(replicas.remove(key, locator), fromPortError("delete"))
        // Fails harmlessly when a put has taken the key over meanwhile.
        yield* cas("delete", BlobMeta.blobKey(key), Option.some(tomb), Option.none())
      })

    /** Deletes a blob; true when this call removed it (false: absent, or another call is removing it). */
    const remove = (key: BinaryKey.BinaryKey) =>
      Effect.gen(function*() {
        const kvKey = BlobMeta.blobKey(key)
        const token = randomUUID()
        while (true) {
          const { raw, record } = yield* readBlob("delete", key)
          const current = Option.getOrUndefined(record)
          const at = yield* now
          // A put that has not published yet: the blob does not exist yet.
          if (current === undefined || current._tag === "Pending") return false
          if (current._tag === "Deleting" && !isStale(current.since, at)) return false
          const live = current._tag === "Live" ? current : current.blob
          if (live.storage._tag === "Chunked") {
            // One commit removes the record and releases every block it referenced; then unreferenced blocks go.
            const distinct = new Map(live.storage.blocks.map((b) => [BinaryKey.render(b.key), b]))
            const released = releaseBlocks("delete", Array.from(distinct.values()), { kvKey, raw: Option.getOrThrow(raw) })
            if (yield* Effect.uninterruptible(released)) return true
            continue
          }
          const locator = live.storage.locator
          const hidden: BlobMeta.Deleting = { _tag: "Deleting", token, since: at, blob: live }
          const tomb = BlobMeta.encodeBlob(key, hidden)
          // On failure the tombstone is marked abandoned (time 0), so the next delete finishes the job at once.
          const abandon = Effect.ignore(cas("delete", kvKey, Option.some(tomb), Option.some(BlobMeta.encodeBlob(key, { ...hidden, since: 0 }))))
          // Hidden first, then removed: no put moves bytes to this address while the tombstone stands.
          const done = yield* Effect.uninterruptible(
            Effect.flatMap(cas("delete", kvKey, raw, Option.some(tomb)), (ok) =>
              ok
                ? Effect.as(Effect.tapError(removeMonolithic(key, locator, tomb), () => abandon), true)
                : Effect.succeed(false))
          )
          if (done) return true
        }
      })

    const del = (key: BinaryKey.BinaryKey) =>
      Effect.gen(function*() {
        const k = yield* checkKey("delete", key)
        if (yield* remove(k)) {
          yield* instrument.publish(new BlobDeleted({ backend: BACKEND, at: yield* Events.now, key: BinaryKey.render(k) }))
        }
      }).pipe(instrument.observe("delete"))

    const stagingPrefix = Either.getOrElse(
      Either.flatMap(settings, (st) => Either.mapLeft(BlobLocator.makePrefix(st.scheme, st.bucket, `${st.stagingPrefix}/uploads/`), invalid("assemble"))),
      () => new BlobLocator.LocatorPrefix({ scheme: defaults.scheme, bucket: defaults.bucket, path: `${defaults.stagingPrefix}/uploads/` }, true)
    )
    return {
      store: BlobStore.of({ put, get, stat, delete: del, list }),
      assembly: BlobAssembly.of({ stagingPrefix, assemble })
    }
  })

/**
 * Builds a CasBlobStore over the object store, key-value store and replica
 * index in the context, finalizing puts atomically when a UnitOfWork is there too.
 */
export const make = (
  options: Options = {}
): Effect.Effect<BlobStore["Type"], never, MutableObjectStore | KeyValueStore | ReplicaIndex> =>
  Effect.map(build(options), (built) => built.store)

/**
 * BlobStore over the MutableObjectStore, KeyValueStore and ReplicaIndex in
 * the context, with its BlobAssembly (staged parts adopted as blocks).
 */
export const layer = (
  options: Options = {}
): Layer.Layer<BlobStore | BlobAssembly, never, MutableObjectStore | KeyValueStore | ReplicaIndex> =>
  Layer.effectContext(
    Effect.map(build(options), (built) => Context.make(BlobStore, built.store).pipe(Context.add(BlobAssembly, built.assembly)))
  )
