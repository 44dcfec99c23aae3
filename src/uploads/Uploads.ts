/**
 * Resumable uploads in the spirit of tus: bytes arrive as spans, in any
 * order, from any number of writers and processes, and become one blob.
 *
 *   begin({ size?, expectedKey?, ttl? })  → id
 *   write(id, offset, bytes)              spans, out of order and in parallel;
 *                                         re-sending a span is harmless
 *   status(id)                            landed ranges and the missing ones
 *   complete(id)                          → BlobWriteResult (or IncompleteUpload,
 *                                         naming the gaps)
 *   abort(id), expire                     remove staged data
 *
 * Nothing lives in process memory. The upload record is `uploads/<id>` in
 * the KeyValueStore, landed spans are in the RangeTracker (under the id),
 * and the bytes are in an UploadStaging: the S3 backend provides one that
 * keeps native multipart parts; otherwise segments are objects in the
 * MutableObjectStore (see ObjectStaging). A new process resumes an upload a
 * killed one started: `status` tells it what to send.
 *
 * Writes are cut at absolute multiples of the staging's segment size and
 * each segment is made durable, then merged into the RangeTracker, before
 * the next one starts. A writer killed mid-way therefore loses at most the
 * segment it was writing. `status` is the union of the RangeTracker and
 * what the staging itself proves (a listing, or ListParts), so a segment
 * stored just before a crash, whose range was never merged, still counts.
 *
 * `complete` claims the record (a compareAndSet, so two completes never run
 * at once), hands the content to the staging, which verifies the key while
 * moving it into the BlobStore, then clears the ranges and the record. When
 * the content does not match `expectedKey`, nothing is stored and the upload
 * is aborted (its bytes can never make that blob). Any other failure gives
 * the claim back, so `complete` can be called again. A staging that knows
 * the key before it moves anything has it recorded first: a complete killed
 * after the move (the bytes gone from the staging, the blob stored) is then
 * finished by the next one, past the claim's lease.
 *
 * The process that began an upload hashes the segments as they are written
 * (UploadHashes), so that `complete` can skip reading the content back; any
 * other process, or one that lost track, reads it back instead.
 *
 * Same source: `begin` may record a fingerprint of the source (`source`:
 * any text the caller derives from it; the CLI uses a file's size,
 * modification and change times, device and inode), and `resume(id, {
 * source })` refuses another one with SourceChanged before a byte is sent.
 * Whatever the caller says, each landed segment's digest is recorded
 * (`uploads/<id>/segments/<start>`, hashed as its bytes go by: XXH3-128, or
 * sha256 where that is the segment's key anyway; see SegmentDigest), and a
 * write that re-sends a landed segment is
 * compared with it before anything is staged: the same bytes are skipped
 * (re-sending stays harmless), other bytes fail with SourceChanged, and a
 * write covering only part of a landed segment is refused (InvalidInput), as
 * it could not be checked. So an upload never mixes two sources' bytes in
 * what it has already received.
 *
 * Size: no upload may go past `maxUploadSize` (default 5 TiB, S3's largest
 * object): a declared size or a write offset beyond it fails with
 * InvalidInput (an unknown-size upload would otherwise accept any offset).
 *
 * Expiry: every upload has a deadline (`ttl` after `begin`, default 24 h).
 * Past it, calls fail with NotFound and `expire` (the `graviton uploads gc`
 * command) removes it with its staged bytes.
 */
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { createXXHash128 } from "hash-wasm"
import { createHash, randomUUID } from "node:crypto"
import * as BinaryKey from "../core/BinaryKey.js"
import type * as BlobLocator from "../core/BlobLocator.js"
import { BlobError, type MetadataError, toPortError } from "../core/Errors.js"
import * as Hashing from "../core/Hashing.js"
import * as Lending from "../core/Lending.js"
import type { BlobWritePlan, BlobWriteResult } from "../core/Models.js"
import * as RangeSet from "../core/RangeSet.js"
import { UploadAborted } from "../ports/BackendEvents.js"
import { BlobAssembly } from "../ports/BlobAssembly.js"
import { BlobStore } from "../ports/BlobStore.js"
import { KeyValueStore } from "../ports/KeyValueStore.js"
import { MutableObjectStore } from "../ports/ObjectStore.js"
import { RangeTracker } from "../ports/RangeTracker.js"
import { UploadStaging } from "../ports/UploadStaging.js"
import * as Events from "../kit/Events.js"
import * as Instrument from "../kit/Instrument.js"
import * as MetricKeys from "../kit/MetricKeys.js"
import * as Tracing from "../kit/Tracing.js"
import * as TracingPorts from "../kit/TracingPorts.js"
import * as ObjectStaging from "./ObjectStaging.js"
import * as UploadHashes from "./UploadHashes.js"

/** Backend name in errors, events and metrics. */
export const BACKEND = "uploads"

/** Key namespace of upload records in the KeyValueStore. */
export const NAMESPACE = "uploads/"

/** Default time an upload may take before it expires. */
export const DEFAULT_TTL = Duration.hours(24)

/** How long a `complete` in progress is respected before another may take over (a crashed one). */
const COMPLETE_LEASE = Duration.minutes(10)

/** Metric names of this module. */
export const metrics = {
  begun: MetricKeys.uploadsBegunTotal,
  completed: MetricKeys.uploadsCompletedTotal,
  aborted: MetricKeys.uploadsAbortedTotal,
  bytesReceived: MetricKeys.uploadBytesReceivedTotal
} as const

/** `complete` found bytes missing: `missing` lists the gaps of `[0, size)`. */
export class IncompleteUpload extends Schema.TaggedError<IncompleteUpload>("graviton/IncompleteUpload")("IncompleteUpload", {
  id: Schema.String,
  size: Schema.Number,
  missing: Schema.Array(RangeSet.Span)
}) {
  /** Same reason as a conflicting change: the upload is fine, it just is not finished. */
  readonly reason = "Conflict" as const
  override get message(): string {
    const bytes = RangeSet.coveredBytes(this.missing)
    return `upload ${this.id} is incomplete: ${bytes} of ${this.size} bytes missing, in ${RangeSet.format(this.missing)}`
  }
}

/**
 * A resume or a re-sent segment from another source than the upload's: the
 * recorded fingerprint differs, or re-sent bytes differ from the landed ones.
 * Nothing was sent or staged by the call that failed.
 */
export class SourceChanged extends Schema.TaggedError<SourceChanged>("graviton/SourceChanged")("SourceChanged", {
  id: Schema.String,
  detail: Schema.String
}) {
  readonly reason = "InvalidInput" as const
  override get message(): string {
    return `upload ${this.id} was begun from another source, or its source changed since: ${this.detail}`
  }
}

/** Options of `resume`. */
export interface ResumeOptions {
  /** The fingerprint of the source now (see BeginOptions.source); refused when it differs from the recorded one. */
  readonly source?: string | undefined
}

/** Options of `begin`. */
export interface BeginOptions {
  /** Total size, when known (writes past it fail; complete needs exactly it). */
  readonly size?: number | undefined
  /** The key the content must have; complete verifies it and stores nothing on a mismatch. */
  readonly expectedKey?: BinaryKey.BinaryKey | undefined
  /** How long the upload may take (default 24 hours). */
  readonly ttl?: Duration.DurationInput | undefined
  /** Content type recorded with the blob. */
  readonly contentType?: string | undefined
  /** A fingerprint of the source (opaque text, at most 1024 characters), checked by `resume`. */
  readonly source?: string | undefined
}

/** What is known about one upload. */
export interface UploadStatus {
  readonly id: string
  readonly size: Option.Option<number>
  readonly expectedKey: Option.Option<BinaryKey.BinaryKey>
  /** Spans landed so far (normalized). */
  readonly landed: RangeSet.RangeSet
  /** Gaps of `[0, size)`; with an unknown size, the gaps before the last landed byte. */
  readonly missing: RangeSet.RangeSet
  /** Bytes landed. */
  readonly received: number
  readonly createdAt: Date
  readonly expiresAt: Date
  /** Which staging holds the bytes ("objects", "s3-multipart"). */
  readonly staging: string
  /** Writes are cut at multiples of this: senders that split their spans there avoid partial segments. */
  readonly segmentSize: number
  /** True while a `complete` holds the upload. */
  readonly completing: boolean
  /** The source fingerprint recorded by `begin`, if any. */
  readonly source: Option.Option<string>
}

/** Outcome of one `write`. */
export interface WriteResult {
  /** Bytes this call stored. */
  readonly written: number
  readonly status: UploadStatus
}

/** Resumable uploads; see the module comment. */
export class Uploads extends Context.Tag("graviton/Uploads")<Uploads, {
  /** Starts an upload; the id names it from any process. */
  readonly begin: (options?: BeginOptions) => Effect.Effect<string, BlobError>
  /** Stores `bytes` at `offset` (any order, in parallel; re-sending the same bytes is harmless, other bytes are refused). */
  readonly write: <E, R>(
    id: string,
    offset: number,
    bytes: Stream.Stream<Uint8Array, E, R>
  ) => Effect.Effect<WriteResult, BlobError | SourceChanged | E, R>
  /** Landed and missing ranges. */
  readonly status: (id: string) => Effect.Effect<UploadStatus, BlobError>
  /** `status`, first checking that `source` is the fingerprint `begin` recorded (when both are known). */
  readonly resume: (id: string, options?: ResumeOptions) => Effect.Effect<UploadStatus, BlobError | SourceChanged>
  /** Turns the landed bytes into a blob; fails with IncompleteUpload while a gap remains. */
  readonly complete: (id: string) => Effect.Effect<BlobWriteResult, BlobError | IncompleteUpload>
  /** Removes the upload and its staged bytes; aborting an unknown upload succeeds. */
  readonly abort: (id: string) => Effect.Effect<void, BlobError>
  /** Every upload in progress (expired ones too, until `expire` removes them). */
  readonly list: Stream.Stream<UploadStatus, BlobError>
  /** Aborts every upload past its deadline; returns their ids. */
  readonly expire: Effect.Effect<ReadonlyArray<string>, BlobError>
}>() {}

/** Options of the Uploads layer. */
export interface Options {
  /** Segment size of the default object staging (default 8 MiB); a native staging has its own. */
  readonly segmentSize?: number | undefined
  /** Where the default staging keeps segments (default: the BlobAssembly's staging prefix). */
  readonly stagingPrefix?: BlobLocator.LocatorPrefix | undefined
  /** Default time to live of new uploads (default 24 hours). */
  readonly ttl?: Duration.DurationInput | undefined
  /** Largest upload accepted, declared or written (default `DEFAULT_MAX_UPLOAD_SIZE`). */
  readonly maxUploadSize?: number | undefined
}

/** Default largest upload: 5 TiB, the largest S3 object. */
export const DEFAULT_MAX_UPLOAD_SIZE = 5 * 1024 ** 4

/** Longest source fingerprint `begin` records. */
const MAX_SOURCE_LENGTH = 1024

// --- the upload record ------------------------------------------------------

const Completing = Schema.Struct({ token: Schema.String, since: Schema.NonNegativeInt })

const RecordWire = Schema.Struct({
  v: Schema.Literal(1),
  size: Schema.optional(Schema.NonNegativeInt),
  expectedKey: Schema.optional(Schema.String),
  contentType: Schema.optional(Schema.String),
  source: Schema.optional(Schema.String),
  createdAt: Schema.NonNegativeInt,
  expiresAt: Schema.NonNegativeInt,
  staging: Schema.String,
  state: Schema.String,
  completing: Schema.optional(Completing),
  /** The content's key, once a complete learned it before adopting the bytes (see UploadStaging.complete). */
  key: Schema.optional(Schema.String)
})
type UploadRecord = typeof RecordWire.Type

const decodeRecord = Schema.decodeUnknownEither(Schema.parseJson(RecordWire))
const encoder = new TextEncoder()
const decoder = new TextDecoder("utf-8", { fatal: true })
const encodeRecord = (r: UploadRecord): Uint8Array => encoder.encode(JSON.stringify(r))

const ID = /^[0-9a-f]{32}$/

/** Where the digests of an upload's landed segments are recorded: `uploads/<id>/segments/<start, 16 hex digits>`. */
const segmentsPrefix = (id: string) => `${NAMESPACE}${id}/segments/`
const segmentKey = (id: string, start: number) => segmentsPrefix(id) + start.toString(16).padStart(16, "0")

/**
 * A landed segment's record: its end and digest. `<end>:xxh128:<32 hex>` (XXH3-128) for segments
 * written since this digest was taken as the bytes go by; `<end>:<64 hex>` (sha256) when the segment's
 * sha256 is computed anyway (its key, for a staging that adopts segments as blocks) and from older
 * versions. The digest only decides whether re-sent bytes are those that landed: a collision could
 * at worst skip a re-send and keep the landed bytes, never mix two sources (`complete` still checks
 * the whole content's key), so a fast non-cryptographic hash is enough where no sha256 is at hand.
 */
interface SegmentDigest {
  readonly end: number
  readonly algorithm: "sha256" | "xxh128"
  readonly hex: string
}
const encodeDigest = (d: SegmentDigest): Uint8Array =>
  encoder.encode(d.algorithm === "sha256" ? `${d.end}:${d.hex}` : `${d.end}:${d.algorithm}:${d.hex}`)
const decodeDigest = (bytes: Uint8Array): SegmentDigest | undefined => {
  const m = /^(\d+):(?:([0-9a-f]{64})|xxh128:([0-9a-f]{32}))$/.exec(Either.getOrElse(Either.try(() => decoder.decode(bytes)), () => ""))
  if (m === null) return undefined
  return m[2] !== undefined ? { end: Number(m[1]), algorithm: "sha256", hex: m[2] } : { end: Number(m[1]), algorithm: "xxh128", hex: m[3]! }
}

/** The digest of bytes in memory, with the algorithm of a recorded one. */
const digestOf = (algorithm: SegmentDigest["algorithm"], chunks: ReadonlyArray<Uint8Array>): Effect.Effect<string> =>
  algorithm === "sha256"
    ? Effect.map(Hashing.hashChunks("sha256", chunks), (key) => key.digest)
    : Effect.map(Effect.promise(() => createXXHash128()), (h) => {
      h.init()
      for (const c of chunks) h.update(c)
      return h.digest("hex")
    })

const fail = (reason: BlobError["reason"], method: string, description: string) =>
  new BlobError({ reason, backend: BACKEND, method, description })

/** The one error mapping of this module: a metadata port's error keeps its reason. */
const fromMetadataError = (method: string) => (e: MetadataError): BlobError =>
  new BlobError({ reason: e.reason, backend: BACKEND, method, description: e.message, cause: e })

/** Checks an upload id; ids are what `begin` returns (32 lower-case hex digits). */
export const checkId = (method: string, id: string): Either.Either<string, BlobError> =>
  typeof id === "string" && ID.test(id)
    ? Either.right(id)
    : Either.left(fail("InvalidInput", method, `${JSON.stringify(String(id)).slice(0, 80)} is not an upload id (32 hex digits)`))

/**
 * Builds the service from the ports in the context: the backend's
 * UploadStaging when there is one, else object staging over the
 * MutableObjectStore and BlobStore (with its BlobAssembly when offered).
 */
export const make = (
  options: Options = {}
): Effect.Effect<Uploads["Type"], never, KeyValueStore | RangeTracker> =>
  Effect.gen(function*() {
    const kv = yield* KeyValueStore
    const ranges = yield* RangeTracker
    const native = yield* Effect.serviceOption(UploadStaging)
    const blobStore = yield* Effect.serviceOption(BlobStore)
    const instrument = yield* Instrument.make(BACKEND, "Uploads")
    const staging: UploadStaging["Type"] | BlobError = yield* Option.match(native, {
      onSome: (s) => Effect.succeed<UploadStaging["Type"] | BlobError>(s),
      onNone: () =>
        Effect.gen(function*() {
          const objects = yield* Effect.serviceOption(MutableObjectStore)
          const blobs = blobStore
          const assembly = yield* Effect.serviceOption(BlobAssembly)
          const prefix = options.stagingPrefix ?? Option.getOrUndefined(Option.map(assembly, (a) => a.stagingPrefix))
          if (Option.isNone(objects) || Option.isNone(blobs)) {
            return fail("Unsupported", "begin", "uploads need a BlobStore and a MutableObjectStore (or a backend UploadStaging)")
          }
          if (prefix === undefined) {
            return fail("InvalidInput", "begin", "no staging location: give Uploads a stagingPrefix (the BlobStore offers none)")
          }
          return TracingPorts.uploadStaging(
            BACKEND,
            ObjectStaging.make({ objects: objects.value, blobs: blobs.value, assembly, prefix, segmentSize: options.segmentSize })
          )
        })
    })
    const defaultTtl = Duration.decode(options.ttl ?? DEFAULT_TTL)
    const maxUploadSize = options.maxUploadSize ?? DEFAULT_MAX_UPLOAD_SIZE
    const hashes = UploadHashes.make()

    const recordKey = (id: string) => NAMESPACE + id
    const useStaging = (method: string) =>
      staging instanceof BlobError ? Effect.fail(new BlobError({ ...staging, method })) : Effect.succeed(staging)

    /** The record with its raw bytes (for compareAndSet); NotFound when absent, Corrupted when unreadable. */
    const read = (method: string, id: string) =>
      Effect.gen(function*() {
        yield* checkId(method, id)
        const raw = yield* Effect.mapError(kv.get(recordKey(id)), fromMetadataError(method))
        if (Option.isNone(raw)) return yield* fail("NotFound", method, `no upload ${id} (never begun, completed or aborted)`)
        const text = Either.try(() => decoder.decode(raw.value))
        const record = Either.flatMap(text, (t) => decodeRecord(t))
        if (Either.isLeft(record)) return yield* fail("Corrupted", method, `the record of upload ${id} is unreadable`)
        return { raw: raw.value, record: record.right }
      })

    /** Like `read`, refusing an expired upload. */
    const readLive = (method: string, id: string) =>
      Effect.flatMap(read(method, id), (r) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) =>
          now > r.record.expiresAt
            ? Effect.fail(fail("NotFound", method, `upload ${id} expired at ${new Date(r.record.expiresAt).toISOString()}; \`expire\` (graviton uploads gc) removes it`))
            : Effect.succeed(r)))

    /** The staging, when it is the one that began the upload (another one cannot read its bytes). */
    const stagingOf = (method: string, id: string, record: UploadRecord) =>
      Effect.filterOrFail(
        useStaging(method),
        (s) => s.name === record.staging,
        (s) =>
          fail(
            "Unsupported",
            method,
            `upload ${id} was begun with staging "${record.staging}" and this store stages with "${s.name}"; abort it and upload again`
          )
      )

    const landedOf = (method: string, id: string, record: UploadRecord) =>
      Effect.gen(function*() {
        const s = yield* useStaging(method)
        const [tracked, proven] = yield* Effect.all([
          Effect.mapError(ranges.current(id), fromMetadataError(method)),
          // Another staging's upload (listed, or about to be aborted): what the RangeTracker says.
          s.name === record.staging ? s.landed(id, record.state) : Effect.succeed(RangeSet.empty)
        ], { concurrency: 2 })
        return RangeSet.union(tracked, proven)
      })

    const segmentSize = staging instanceof BlobError ? 0 : staging.segmentSize
    const statusOf = (id: string, record: UploadRecord, landed: RangeSet.RangeSet, now: number): UploadStatus => {
      const last = landed.length === 0 ? 0 : landed[landed.length - 1]!.end
      const size = record.size ?? last
      return {
        id,
        size: Option.fromNullable(record.size),
        expectedKey: Option.fromNullable(record.expectedKey).pipe(Option.flatMap((k) => Option.getRight(BinaryKey.parse(k)))),
        landed,
        missing: RangeSet.missing(landed, size),
        received: RangeSet.coveredBytes(landed),
        createdAt: new Date(record.createdAt),
        expiresAt: new Date(record.expiresAt),
        staging: record.staging,
        segmentSize,
        completing: record.completing !== undefined && now - record.completing.since <= Duration.toMillis(COMPLETE_LEASE),
        source: Option.fromNullable(record.source)
      }
    }

    // --- segment digests --------------------------------------------------------

    /** The digest recorded for the segment starting at `start`, if it landed with one. */
    const landedDigest = (id: string, start: number) =>
      Effect.map(
        Effect.mapError(kv.get(segmentKey(id, start)), fromMetadataError("write")),
        (raw) => Option.isSome(raw) ? decodeDigest(raw.value) : undefined
      )

    /** Records the digest of a landed segment. */
    const recordDigest = (id: string, span: RangeSet.Span, algorithm: SegmentDigest["algorithm"], hex: string) =>
      Effect.mapError(kv.put(segmentKey(id, span.start), encodeDigest({ end: span.end, algorithm, hex })), fromMetadataError("write"))

    /** Removes the digests of an upload's segments. */
    const clearDigests = (method: string, id: string) =>
      kv.list(segmentsPrefix(id)).pipe(
        Stream.mapEffect(([key]) => kv.delete(key), { concurrency: 8 }),
        Stream.runDrain,
        Effect.mapError(fromMetadataError(method))
      )

    // --- begin ----------------------------------------------------------------

    const begin = (opts: BeginOptions = {}) =>
      Effect.gen(function*() {
        const s = yield* useStaging("begin")
        const size = opts.size
        if (size !== undefined && (!Number.isSafeInteger(size) || size < 0)) {
          return yield* fail("InvalidInput", "begin", `size must be a non-negative integer, got ${size}`)
        }
        if ((size ?? opts.expectedKey?.size ?? 0) > maxUploadSize) {
          return yield* fail("InvalidInput", "begin", `size ${size ?? opts.expectedKey?.size} is over the largest upload allowed (${maxUploadSize} bytes)`)
        }
        if (opts.source !== undefined && (typeof opts.source !== "string" || opts.source.length > MAX_SOURCE_LENGTH)) {
          return yield* fail("InvalidInput", "begin", `the source fingerprint must be a string of at most ${MAX_SOURCE_LENGTH} characters`)
        }
        let expected: BinaryKey.BinaryKey | undefined
        if (opts.expectedKey !== undefined) {
          expected = yield* Either.mapLeft(
            BinaryKey.make(opts.expectedKey.algorithm, opts.expectedKey.digest, opts.expectedKey.size),
            toPortError(BlobError, BACKEND, "begin")
          )
          if (size !== undefined && size !== expected.size) {
            return yield* fail("InvalidInput", "begin", `size ${size} differs from the expected key's size ${expected.size}`)
          }
        }
        const ttl = opts.ttl === undefined ? Option.some(defaultTtl) : Duration.decodeUnknown(opts.ttl)
        if (Option.isNone(ttl) || !Duration.isFinite(ttl.value) || Duration.toMillis(ttl.value) <= 0) {
          return yield* fail("InvalidInput", "begin", "ttl must be a positive, finite duration")
        }
        if (opts.contentType !== undefined && typeof opts.contentType !== "string") {
          return yield* fail("InvalidInput", "begin", "the content type must be a string")
        }
        const id = randomUUID().replaceAll("-", "")
        const state = yield* s.begin(id, size ?? expected?.size)
        const now = yield* Clock.currentTimeMillis
        const record: UploadRecord = {
          v: 1,
          ...(size ?? expected?.size) === undefined ? {} : { size: (size ?? expected?.size)! },
          ...(expected === undefined ? {} : { expectedKey: BinaryKey.render(expected) }),
          ...(opts.contentType === undefined ? {} : { contentType: opts.contentType }),
          ...(opts.source === undefined ? {} : { source: opts.source }),
          createdAt: now,
          expiresAt: now + Duration.toMillis(ttl.value),
          staging: s.name,
          state
        }
        const created = yield* Effect.mapError(
          kv.compareAndSet(recordKey(id), Option.none(), Option.some(encodeRecord(record))),
          fromMetadataError("begin")
        )
        if (!created) return yield* fail("Conflict", "begin", `upload id ${id} is already in use`)
        yield* instrument.counter(metrics.begun)
        // This process writes it from the start: hash as the bytes go by (see UploadHashes).
        const algorithm = expected?.algorithm ?? "sha256"
        hashes.start(id, algorithm, yield* Hashing.makeHasher(algorithm), s.segmentSize)
        return id
      }).pipe(instrument.observe("begin"))

    // --- write ----------------------------------------------------------------

    const write = <E, R>(id: string, offset: number, bytes: Stream.Stream<Uint8Array, E, R>) =>
      Effect.scoped(Effect.gen(function*() {
        const { record } = yield* readLive("write", id)
        const s = yield* stagingOf("write", id, record)
        if (record.completing !== undefined) {
          return yield* fail("Conflict", "write", `upload ${id} is being completed`)
        }
        if (!Number.isSafeInteger(offset) || offset < 0) {
          return yield* fail("InvalidInput", "write", `offset must be a non-negative integer, got ${offset}`)
        }
        const size = record.size
        if (size !== undefined && offset > size) {
          return yield* fail("InvalidInput", "write", `offset ${offset} is past the upload's size ${size}`)
        }
        if (offset > maxUploadSize) {
          return yield* fail("InvalidInput", "write", `offset ${offset} is past the largest upload allowed (${maxUploadSize} bytes)`)
        }
        // Pull-based cutting: each segment is a stream that pulls from the input until its boundary,
        // so the input is never buffered beyond one chunk.
        const pull = yield* Stream.toPull(bytes)
        const pending: Array<Uint8Array> = []
        let ended = false
        /** Fills `pending` with at least one chunk unless the input has ended. */
        const fill: Effect.Effect<void, E, R> = Effect.suspend(() =>
          pending.length > 0 || ended
            ? Effect.void
            : pull.pipe(
              Effect.map((chunk) => {
                for (const c of chunk) if (c.length > 0) pending.push(c)
              }),
              Effect.catchAll((e) =>
                Option.match(e, {
                  onNone: () => Effect.sync(() => void (ended = true)),
                  onSome: (err) => Effect.fail(err)
                })
              ),
              Effect.zipRight(fill)
            )
        )
        // The caller's own stream error is kept aside while a segment is being written, and raised by `write`.
        let failure: Option.Option<E> = Option.none()
        const context = yield* Effect.context<R>()
        const segmentBytes = (limit: number): Stream.Stream<Uint8Array, BlobError> => {
          let remaining = limit
          const next: Effect.Effect<Uint8Array, Option.Option<BlobError>> = Effect.suspend(() => {
            if (remaining === 0) return Effect.fail(Option.none())
            return fill.pipe(
              Effect.provide(context),
              Effect.mapError((e) => {
                failure = Option.some(e)
                return Option.some(fail("InvalidInput", "write", "the input stream failed"))
              }),
              Effect.flatMap(() => {
                const c = pending.shift()
                if (c === undefined) return Effect.fail(Option.none())
                if (c.length > remaining) {
                  pending.unshift(c.subarray(remaining))
                  const head = c.subarray(0, remaining)
                  remaining = 0
                  return Effect.succeed(head)
                }
                remaining -= c.length
                return Effect.succeed(c)
              })
            )
          })
          return Stream.repeatEffectOption(next)
        }
        // One per write: its segments are written one after the other.
        const xxh128 = yield* Effect.promise(() => createXXHash128())
        let position = offset
        let written = 0
        const digests: Array<Fiber.RuntimeFiber<void, BlobError>> = []
        let landed: RangeSet.RangeSet = RangeSet.empty
        while (true) {
          yield* fill
          if (pending.length === 0) break
          if (size !== undefined && position >= size) {
            return yield* fail("InvalidInput", "write", `the bytes go past the upload's size ${size} (at offset ${position})`)
          }
          if (position >= maxUploadSize) {
            return yield* fail("InvalidInput", "write", `the bytes go past the largest upload allowed (${maxUploadSize} bytes)`)
          }
          const cell = Math.floor(position / s.segmentSize) * s.segmentSize
          const boundary = cell + s.segmentSize
          const limit = Math.min(boundary, size ?? Number.POSITIVE_INFINITY, maxUploadSize) - position
          const announced = new RangeSet.Span({ start: position, end: position + limit })
          // A segment that landed before: compare, never overwrite (see the module comment).
          const prior = yield* landedDigest(id, cell)
          if (prior !== undefined && prior.end > position) {
            if (position !== cell) {
              return yield* fail("InvalidInput", "write", `the bytes at ${position} re-send part of the landed segment [${cell}, ${prior.end}); re-send whole segments`)
            }
            const again = yield* Stream.runCollect(segmentBytes(prior.end - cell))
            const got = Chunk.reduce(again, 0, (n, c) => n + c.length)
            if (got !== prior.end - cell) {
              return yield* fail("InvalidInput", "write", `the bytes at ${position} re-send part of the landed segment [${cell}, ${prior.end}); re-send whole segments`)
            }
            const digest = yield* digestOf(prior.algorithm, Chunk.toReadonlyArray(again)).pipe(
              Effect.ensuring(Effect.sync(() => Chunk.forEach(again, Lending.giveBack)))
            )
            if (digest !== prior.hex) {
              return yield* new SourceChanged({ id, detail: `the bytes re-sent for [${cell}, ${prior.end}) differ from those that landed` })
            }
            // A digest is recorded only once its segment landed, but a writer killed before merging the range
            // leaves a segment the RangeTracker calls missing (the file staging proves nothing by itself).
            landed = yield* Effect.mapError(ranges.merge(id, new RangeSet.Span({ start: cell, end: prior.end })), fromMetadataError("write"))
            position = prior.end
            continue
          }
          const algorithm = hashes.writing(id, announced)
          // At the hashed frontier (and without per-segment keys), the whole-content hash takes the bytes as
          // they go by. Otherwise they are kept for it (and for the segment's own key, computed once it has
          // landed).
          const feed = algorithm === undefined || s.segmentKeys ? undefined : hashes.stream(id, announced)
          let fed = 0
          // For UploadHashes when it asked for them (it gives them back once hashed).
          const forHashes = algorithm !== undefined && feed === undefined
          const kept: Array<Uint8Array> = []
          // The segment's digest, recorded once it lands (see the module comment), taken as the bytes go by: no
          // copy, no buffer held. sha256 in the thread pool afterwards copied each segment twice, held its read
          // buffers until a pool thread was free and queued the reads and writes behind it (uploads ran at a
          // third of a put on a loaded 2-core machine, bench:uploads); sha256 here would double the main
          // thread's hashing. XXH3-128 costs a third of sha256, unless the segment's sha256 is its key anyway.
          const sha256Key = s.segmentKeys && algorithm === "sha256"
          const digestAlgorithm: SegmentDigest["algorithm"] = sha256Key ? "sha256" : "xxh128"
          const digest: { update(c: Uint8Array): unknown; digest(encoding: "hex"): string } = sha256Key
            ? createHash("sha256")
            : xxh128.init()
          const segment = Stream.mapChunks(segmentBytes(limit), (chunks) => {
            for (const c of chunks) {
              if (feed !== undefined) feed(c)
              digest.update(c)
              fed += c.length
              if (forHashes) {
                // Kept past the write, which gives a lent chunk back: UploadHashes gives it back once hashed (see Lending).
                Lending.retain(c)
                kept.push(c)
              }
            }
            return chunks
          })
          const span = yield* s.writeSegment(id, record.state, position, segment, size).pipe(
            Effect.onExit((exit) =>
              Effect.sync(() => {
                const actual = Exit.isSuccess(exit) ? Option.getOrUndefined(exit.value) : undefined
                hashes.settle(id, announced, actual)
                if (feed === undefined) return
                // Hashed as they went: exactly those bytes must have landed, or the whole hash is wrong.
                if (actual !== undefined && fed === actual.length) hashes.landed(id, actual, undefined, [], true)
                else hashes.forget(id)
              })
            ),
            Effect.catchAll((e): Effect.Effect<never, BlobError | E> => Option.isSome(failure) ? Effect.fail(failure.value) : Effect.fail(e))
          )
          if (Option.isNone(span) || fed !== span.value.length) {
            if (forHashes) for (const c of kept) Lending.giveBack(c)
            if (Option.isNone(span)) break
          } else {
            const at = span.value
            const hex = digest.digest("hex")
            // Beside the range's merge; recorded before this write returns.
            digests.push(yield* Effect.fork(recordDigest(id, at, digestAlgorithm, hex)))
            if (forHashes) {
              if (!s.segmentKeys) hashes.landed(id, at, undefined, kept)
              else if (sha256Key) hashes.landed(id, at, new BinaryKey.BinaryKey({ algorithm: "sha256", digest: hex, size: at.length }), kept)
              // In the background: the next segment streams while this one is hashed.
              else digests.push(yield* Effect.fork(Effect.map(Hashing.hashChunks(algorithm, kept), (key) => hashes.landed(id, at, key, kept))))
            }
          }
          landed = yield* Effect.mapError(ranges.merge(id, span.value), fromMetadataError("write"))
          written += span.value.length
          position = span.value.end
          yield* instrument.counter(metrics.bytesReceived, span.value.length)
        }
        yield* Fiber.joinAll(digests)
        // What the RangeTracker says after our merges: asking the staging too (a listing, ListParts) on every
        // write would cost a round trip per segment; `status` and `complete` do ask it.
        if (written === 0) landed = yield* Effect.mapError(ranges.current(id), fromMetadataError("write"))
        const now = yield* Clock.currentTimeMillis
        return { written, status: statusOf(id, record, landed, now) } satisfies WriteResult
      })).pipe(instrument.observe("write"))

    // --- status, list ---------------------------------------------------------

    const status = (id: string) =>
      Effect.gen(function*() {
        const { record } = yield* readLive("status", id)
        const landed = yield* landedOf("status", id, record)
        return statusOf(id, record, landed, yield* Clock.currentTimeMillis)
      }).pipe(instrument.observe("status"))

    const resume = (id: string, opts: ResumeOptions = {}) =>
      Effect.gen(function*() {
        const { record } = yield* readLive("resume", id)
        if (opts.source !== undefined && record.source !== undefined && opts.source !== record.source) {
          return yield* new SourceChanged({ id, detail: `recorded ${record.source}, now ${opts.source}` })
        }
        const landed = yield* landedOf("resume", id, record)
        return statusOf(id, record, landed, yield* Clock.currentTimeMillis)
      }).pipe(instrument.observe("resume"))

    const list: Stream.Stream<UploadStatus, BlobError> = kv.list(NAMESPACE).pipe(
      Stream.mapError(fromMetadataError("list")),
      // Segment digests live under the same namespace (uploads/<id>/segments/...).
      Stream.filter(([key]) => ID.test(key.slice(NAMESPACE.length))),
      Stream.mapEffect(([key]) =>
        read("list", key.slice(NAMESPACE.length)).pipe(
          Effect.flatMap(({ record }) =>
            Effect.map(
              Effect.zip(landedOf("list", key.slice(NAMESPACE.length), record), Clock.currentTimeMillis),
              ([landed, now]) => Option.some(statusOf(key.slice(NAMESPACE.length), record, landed, now))
            )
          ),
          // Gone since the listing saw it (completed or aborted meanwhile).
          Effect.catchIf((e) => e.reason === "NotFound", () => Effect.succeed(Option.none<UploadStatus>()))
        )
      ),
      Stream.filterMap((s) => s)
    )

    // --- abort, expire --------------------------------------------------------

    const removeUpload = (method: string, id: string, record: UploadRecord, why: string) =>
      Effect.gen(function*() {
        const s = yield* useStaging(method)
        hashes.forget(id)
        yield* s.abort(id, record.state)
        yield* clearDigests(method, id)
        yield* Effect.mapError(ranges.clear(id), fromMetadataError(method))
        yield* Effect.mapError(kv.delete(recordKey(id)), fromMetadataError(method))
        yield* instrument.counter(metrics.aborted, 1, { why })
        yield* instrument.publish(
          new UploadAborted({ backend: BACKEND, at: yield* Events.now, locator: `upload:${id}`, uploadId: id, why })
        )
      })

    const abort = (id: string) =>
      Effect.gen(function*() {
        yield* checkId("abort", id)
        const found = yield* read("abort", id).pipe(
          Effect.map(Option.some),
          Effect.catchIf((e) => e.reason === "NotFound", () => Effect.succeed(Option.none()))
        )
        if (Option.isSome(found)) yield* removeUpload("abort", id, found.value.record, "aborted")
      }).pipe(instrument.observe("abort"))

    const expire = Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      const expired = yield* kv.list(NAMESPACE).pipe(
        Stream.mapError(fromMetadataError("expire")),
        Stream.filter(([key]) => ID.test(key.slice(NAMESPACE.length))),
        Stream.filterMap(([key, bytes]) => {
          const record = Either.flatMap(Either.try(() => decoder.decode(bytes)), (t) => decodeRecord(t))
          return Either.isRight(record) && now > record.right.expiresAt
            ? Option.some({ id: key.slice(NAMESPACE.length), record: record.right })
            : Option.none()
        }),
        Stream.runCollect
      )
      yield* Effect.forEach(expired, (e) => removeUpload("expire", e.id, e.record, "expired"), { concurrency: 4, discard: true })
      return Array.from(expired, (e) => e.id)
    }).pipe(instrument.observe("expire"))

    // --- complete -------------------------------------------------------------

    /**
     * A complete that failed because an earlier one (killed before it removed
     * the record) already adopted the bytes: the staged data is gone, but the
     * key it recorded names a stored blob of this size. Anything left staged
     * is removed. Otherwise the failure stands.
     */
    const finishedEarlier = (id: string, record: UploadRecord, size: number, error: BlobError) =>
      Effect.gen(function*() {
        const key = record.key === undefined ? undefined : Either.getOrUndefined(BinaryKey.parse(record.key))
        if (key === undefined || key.size !== size || Option.isNone(blobStore)) return yield* Effect.fail(error)
        const stat = yield* Effect.orElseSucceed(blobStore.value.stat(key), () => Option.none())
        const locator = Option.flatMap(stat, (st) => st.locator)
        if (Option.isNone(locator)) return yield* Effect.fail(error)
        const s = yield* useStaging("complete")
        yield* s.abort(id, record.state)
        return { key, locator: locator.value, size, deduplicated: true } satisfies BlobWriteResult
      })

    const complete = (id: string) =>
      Effect.gen(function*() {
        const { raw, record } = yield* readLive("complete", id)
        const s = yield* stagingOf("complete", id, record)
        const now = yield* Clock.currentTimeMillis
        if (record.completing !== undefined && now - record.completing.since <= Duration.toMillis(COMPLETE_LEASE)) {
          return yield* fail("Conflict", "complete", `upload ${id} is already being completed`)
        }
        const landed = yield* landedOf("complete", id, record)
        const current = statusOf(id, record, landed, now)
        const size = Option.getOrElse(current.size, () => (landed.length === 0 ? 0 : landed[landed.length - 1]!.end))
        if (current.missing.length > 0) {
          return yield* new IncompleteUpload({ id, size, missing: current.missing })
        }
        const claimed: UploadRecord = { ...record, completing: { token: randomUUID(), since: now } }
        const claimedRaw = encodeRecord(claimed)
        const ok = yield* Effect.mapError(
          kv.compareAndSet(recordKey(id), Option.some(raw), Option.some(claimedRaw)),
          fromMetadataError("complete")
        )
        if (!ok) return yield* fail("Conflict", "complete", `upload ${id} changed while completing; try again`)
        const expectedKey = Option.getOrUndefined(current.expectedKey)
        const plan: BlobWritePlan = {
          ...(expectedKey === undefined ? {} : { expectedKey }),
          ...(record.contentType === undefined ? {} : { contentType: record.contentType })
        }
        // The record as stored now: the claim, then the claim with the key once the staging tells it.
        let stored = claimedRaw
        let learned = record.key
        const onKey = (key: BinaryKey.BinaryKey) =>
          Effect.gen(function*() {
            const next = encodeRecord({ ...claimed, key: BinaryKey.render(key) })
            const ok = yield* Effect.mapError(
              kv.compareAndSet(recordKey(id), Option.some(stored), Option.some(next)),
              fromMetadataError("complete")
            )
            if (!ok) return yield* fail("Conflict", "complete", `upload ${id} changed while completing; try again`)
            stored = next
            learned = BinaryKey.render(key)
          })
        // The claim goes back; a key learned stays, for the next complete.
        const giveBack = Effect.suspend(() =>
          Effect.ignore(kv.compareAndSet(
            recordKey(id),
            Option.some(stored),
            Option.some(learned === record.key ? raw : encodeRecord({ ...record, key: learned! }))
          ))
        )
        const hint = hashes.finish(id, size)
        const result = yield* s.complete(id, record.state, size, plan, hint, onKey).pipe(
          Effect.catchAll((e) => finishedEarlier(id, record, size, e)),
          Effect.onExit((exit) => {
            if (Exit.isSuccess(exit)) return Effect.void
            const e = Option.getOrUndefined(Cause.failureOption(exit.cause))
            return e?.reason === "InvalidInput" && expectedKey !== undefined
              // The bytes can never make the expected blob: nothing was stored, and the upload goes.
              ? Effect.ignore(removeUpload("complete", id, claimed, "content does not match the expected key"))
              // Anything else (interruption too): give the claim back so that complete can be called again.
              : giveBack
          })
        )
        yield* clearDigests("complete", id)
        yield* Effect.mapError(ranges.clear(id), fromMetadataError("complete"))
        yield* Effect.mapError(kv.delete(recordKey(id)), fromMetadataError("complete"))
        yield* instrument.counter(metrics.completed)
        return result
      }).pipe(instrument.observe("complete"))

    return traced(Uploads.of({ begin, write, status, resume, complete, abort, list, expire }))
  })

/** Every method in a span `graviton.Uploads.<method>` (docs/observability.md). */
const traced = (uploads: Uploads["Type"]): Uploads["Type"] => {
  const { attr } = Tracing
  const span = <A, E, R>(method: string, self: Effect.Effect<A, E, R>, id?: unknown, more?: Tracing.Attributes) =>
    Tracing.effect(self, TracingPorts.spanName("Uploads", method), {
      attributes: () => ({ [attr.backend]: BACKEND, ...(id === undefined ? {} : { [attr.uploadId]: TracingPorts.text(id) }), ...more })
    })
  return {
    begin: (options) =>
      Tracing.effect(uploads.begin(options), TracingPorts.spanName("Uploads", "begin"), {
        attributes: () => ({ [attr.backend]: BACKEND }),
        onSuccess: (id) => ({ [attr.uploadId]: id })
      }),
    write: (id, offset, bytes) =>
      Tracing.effect(uploads.write(id, offset, bytes), TracingPorts.spanName("Uploads", "write"), {
        attributes: () => ({ [attr.backend]: BACKEND, [attr.uploadId]: TracingPorts.text(id), [attr.offset]: offset }),
        onSuccess: (result) => ({ [attr.bytes]: result.written })
      }),
    status: (id) => span("status", uploads.status(id), id),
    resume: (id, options) => span("resume", uploads.resume(id, options), id),
    complete: (id) =>
      Tracing.effect(uploads.complete(id), TracingPorts.spanName("Uploads", "complete"), {
        attributes: () => ({ [attr.backend]: BACKEND, [attr.uploadId]: TracingPorts.text(id) }),
        onSuccess: (result) => ({ [attr.blobKey]: TracingPorts.text(result.key), [attr.deduplicated]: result.deduplicated })
      }),
    abort: (id) => span("abort", uploads.abort(id), id),
    list: Tracing.stream(uploads.list, TracingPorts.spanName("Uploads", "list"), { attributes: () => ({ [attr.backend]: BACKEND }) }),
    expire: span("expire", uploads.expire)
  }
}

/** Uploads over the ports in the context (see `make`). */
export const layer = (
  options: Options = {}
): Layer.Layer<Uploads, never, KeyValueStore | RangeTracker> =>
  Layer.effect(Uploads, make(options))
