/**
 * UploadStaging natively on S3: the bytes of a resumable upload are the
 * parts of ONE multipart upload, so S3 itself keeps them and proves them
 * (ListParts) to any process, and completing costs no second write of the
 * bytes through the client.
 *
 *   <prefix><uploadPrefix><id>                       the multipart upload's key, and
 *                                                    the completed object before adoption
 *   <prefix><uploadPrefix><id>.pieces/<start>-<end>  a piece: bytes that are not a whole
 *                                                    part (16-digit zero-padded offsets)
 *
 * Part n holds `[(n-1)·partSize, n·partSize)`; the part size is fixed by
 * `begin` and recorded in the state string with the key and UploadId, so
 * every later call, in any process, numbers parts the same way. A segment
 * that starts on a part boundary and fills the part (or ends exactly at the
 * declared size: the last part) becomes that part (UploadPart; re-sending it
 * replaces it). Anything else (an unaligned start, a short piece before the
 * end) is kept as a piece object and turned into parts at `complete`:
 * UploadPartCopy with a byte range when one piece covers a part, else the
 * covering pieces are read into one part buffer and uploaded.
 *
 * A segment is buffered in memory before it is sent (UploadPart and
 * PutObject need its length, and only its length says whether it is a whole
 * part): memory is one part per segment in flight.
 *
 * `complete` makes sure every part of `[0, size)` exists, completes the
 * multipart upload (ETags from ListParts), removes the pieces (the object
 * now holds every byte), and hands the object to the blob store's
 * `adoptStaged` (read once to be hashed, verified against the plan, copied
 * server-side to its content address unless there already, then deleted).
 * Each step can be repeated after a crash or a failure: a completed
 * multipart upload is found as the object at the staging key.
 *
 * Servers without ListParts (s3rver): `landed` reports the pieces only and
 * `complete` fails with Unsupported; use the object staging there (do not
 * provide this layer). A lifecycle rule that aborts incomplete multipart
 * uploads and expires `<uploadPrefix>` objects removes what a crashed
 * process leaves behind (docs/backends/s3.md).
 */
import * as S3 from "@aws-sdk/client-s3"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type * as BinaryKey from "../../core/BinaryKey.js"
import * as BlobLocator from "../../core/BlobLocator.js"
import { BlobError, ObjectStoreError } from "../../core/Errors.js"
import type { BlobWritePlan } from "../../core/Models.js"
import * as RangeSet from "../../core/RangeSet.js"
import { UploadAborted } from "../../ports/BackendEvents.js"
import { type CompleteHint, UploadStaging } from "../../ports/UploadStaging.js"
import * as Instrument from "../../kit/Instrument.js"
import * as TracingPorts from "../../kit/TracingPorts.js"
import { BACKEND, make as makeOps, type Ops } from "./internal/ops.js"
import * as S3BlobStore from "./S3BlobStore.js"
import * as S3Client from "./S3Client.js"
import { MAX_PART_SIZE, MIN_PART_SIZE, normalizePrefix } from "./S3Config.js"
import { toBlobError } from "./S3Error.js"
import * as S3Metrics from "./S3Metrics.js"
import { SCHEME } from "./S3ObjectStore.js"

/** Options of the S3 upload staging. */
export interface S3UploadStagingOptions {
  /** Where staged uploads live under the client's key prefix. Default "uploads/". */
  readonly uploadPrefix?: string | undefined
  /** Part size of new uploads (the segment size Uploads cuts at); default the client's `partSize`, at least 5 MiB. */
  readonly uploadPartSize?: number | undefined
  /** The blob namespace completed uploads go to; must match the S3BlobStore's. Default "blobs/". */
  readonly blobPrefix?: string | undefined
}

/** The staging's name in upload records and status output. */
export const NAME = "s3-multipart"

/** Digits of the zero-padded offsets in piece names (enough for 2^53). */
const DIGITS = 16

/** What `begin` records: the multipart upload and how its parts are numbered. */
const StateSchema = Schema.Struct({
  v: Schema.Literal(1),
  /** Full object key of the multipart upload (client prefix included). */
  key: Schema.String.pipe(Schema.minLength(1)),
  uploadId: Schema.String.pipe(Schema.minLength(1)),
  partSize: Schema.Int.pipe(Schema.between(1, MAX_PART_SIZE))
})
type State = typeof StateSchema.Type

const decodeState = Schema.decodeUnknownEither(Schema.parseJson(StateSchema))

/** A landed piece object. */
interface Piece {
  readonly span: RangeSet.Span
  readonly key: string
}

/** A part as ListParts reports it. */
interface ListedPart {
  readonly number: number
  readonly size: number
  readonly etag: string
}

const ID = /^[A-Za-z0-9_-]{1,200}$/
const PIECE = /^(\d{16})-(\d{16})$/

const pad = (n: number): string => String(n).padStart(DIGITS, "0")

const fail = (reason: BlobError["reason"], method: string, description: string) =>
  new BlobError({ reason, backend: BACKEND, method, description })

/** The one mapping of this module: an S3 call's error keeps its reason, named after the port method. */
const fromS3 = (method: string) => (e: ObjectStoreError | BlobError): BlobError =>
  e._tag === "BlobError" ? e : toBlobError(e, method)

/** Environment options: GRAVITON_S3_UPLOAD_PREFIX, GRAVITON_S3_UPLOAD_PART_SIZE. */
export const config: Config.Config<S3UploadStagingOptions> = Config.all({
  uploadPrefix: Config.string("GRAVITON_S3_UPLOAD_PREFIX").pipe(
    Config.withDescription("Key prefix of staged resumable uploads (default uploads/)"),
    Config.option,
    Config.map(Option.getOrUndefined)
  ),
  uploadPartSize: Config.integer("GRAVITON_S3_UPLOAD_PART_SIZE").pipe(
    Config.withDescription("Part size of resumable uploads in bytes (default GRAVITON_S3_PART_SIZE)"),
    Config.option,
    Config.map(Option.getOrUndefined)
  )
})

/** The staging over `ops` (see the module comment); `uploadPrefix` and `blobPrefix` are normalized and relative to the client's prefix. */
const fromOps = (
  ops: Ops,
  client: S3.S3Client,
  sse: S3Client.SseFields,
  options: { readonly uploadPrefix: string; readonly blobPrefix: string; readonly partSize: number }
): UploadStaging["Type"] => {
  const { instrument, settings } = ops
  const Bucket = settings.bucket
  const adopt = S3BlobStore.adoptStaged(ops, options.blobPrefix)
  const segmentSize = options.partSize

  const textOf = (key: string) => `${SCHEME}://${Bucket}/${key.slice(settings.prefix.length)}`
  const piecesPrefix = (state: State) => `${state.key}.pieces/`

  const parseState = (method: string, id: string, state: string) =>
    Effect.gen(function*() {
      if (typeof id !== "string" || !ID.test(id)) {
        return yield* fail("InvalidInput", method, `${JSON.stringify(String(id)).slice(0, 80)} is not a valid upload id`)
      }
      const parsed = decodeState(state)
      if (Either.isLeft(parsed)) return yield* fail("InvalidInput", method, `the staging state of upload ${id} is not an S3 multipart state`)
      if (!parsed.right.key.startsWith(settings.prefix) || parsed.right.key.length === settings.prefix.length) {
        return yield* fail("InvalidInput", method, `the staging state of upload ${id} names a key outside this store's prefix`)
      }
      return parsed.right
    })

  // --- listings ---------------------------------------------------------------

  /** Every part of the upload (ListParts, all pages); None when the multipart upload no longer exists. */
  const listParts = (method: string, state: State): Effect.Effect<Option.Option<ReadonlyArray<ListedPart>>, BlobError> =>
    Stream.paginateChunkEffect(undefined as string | undefined, (marker) =>
      ops.send("ListParts", textOf(state.key), (signal) =>
        client.send(
          new S3.ListPartsCommand({
            Bucket,
            Key: state.key,
            UploadId: state.uploadId,
            MaxParts: 1000,
            ...(marker === undefined ? {} : { PartNumberMarker: marker }),
            ...sse.customer()
          }),
          { abortSignal: signal }
        ), { key: state.key, uploadId: state.uploadId }).pipe(Effect.map((out) => {
          const parts: Array<ListedPart> = []
          for (const p of out.Parts ?? []) {
            if (p.PartNumber !== undefined && p.ETag !== undefined) {
              parts.push({ number: p.PartNumber, size: p.Size ?? 0, etag: p.ETag })
            }
          }
          const next = out.IsTruncated === true && out.NextPartNumberMarker !== undefined
            ? Option.some(out.NextPartNumberMarker as string | undefined)
            : Option.none()
          return [Chunk.unsafeFromArray(parts), next] as const
        }))).pipe(
      Stream.runCollect,
      Effect.map((chunk) => Option.some(Array.from(chunk))),
      Effect.catchIf((e) => e.reason === "NotFound", () => Effect.succeedNone),
      Effect.mapError(fromS3(method))
    )

  /** Piece objects whose length matches their name (anything else was never written by us). */
  const listPieces = (method: string, state: State): Effect.Effect<ReadonlyArray<Piece>, BlobError> => {
    const prefix = piecesPrefix(state)
    return Stream.paginateChunkEffect(undefined as string | undefined, (token) =>
      Effect.map(ops.listPage(prefix, textOf(prefix), token), ({ next, objects }) => {
        const pieces: Array<Piece> = []
        for (const o of objects) {
          const m = o.Key === undefined ? null : PIECE.exec(o.Key.slice(prefix.length))
          if (m === null) continue
          const span = RangeSet.span(Number(m[1]), Number(m[2]))
          if (Either.isRight(span) && span.right.length === o.Size) pieces.push({ span: span.right, key: o.Key! })
        }
        return [Chunk.unsafeFromArray(pieces), next as Option.Option<string | undefined>] as const
      })).pipe(Stream.runCollect, Effect.map((c) => Array.from(c)), Effect.mapError(fromS3(method)))
  }

  /** The span part `n` (1-based) holds when it is `size` bytes long. */
  const partSpan = (state: State, n: number, size: number) =>
    new RangeSet.Span({ start: (n - 1) * state.partSize, end: (n - 1) * state.partSize + size })

  // --- begin ------------------------------------------------------------------

  const begin: UploadStaging["Type"]["begin"] = (id, size) =>
    Effect.gen(function*() {
      if (typeof id !== "string" || !ID.test(id)) {
        return yield* fail("InvalidInput", "begin", `${JSON.stringify(String(id)).slice(0, 80)} is not a valid upload id`)
      }
      const capacity = segmentSize * settings.maxParts
      if (size !== undefined && (!Number.isSafeInteger(size) || size < 0 || size > capacity)) {
        return yield* fail(
          "InvalidInput",
          "begin",
          `a multipart upload of ${settings.maxParts} parts of ${segmentSize} bytes holds at most ${capacity} bytes, got size ${size}; raise uploadPartSize`
        )
      }
      const key = `${settings.prefix}${options.uploadPrefix}${id}`
      // Not interruptible half way: an upload created but never recorded could not be aborted by anyone.
      const uploadId = yield* Effect.uninterruptible(ops.createMultipart(key, textOf(key), {}))
      return JSON.stringify({ v: 1, key, uploadId, partSize: segmentSize } satisfies State)
    }).pipe(Effect.mapError(fromS3("begin")), instrument.observe("begin"))

  // --- writeSegment -----------------------------------------------------------

  /** Reads the segment into one buffer, refusing more than `limit` bytes (a segment never crosses a part boundary). */
  /**
   * Buffers of parts S3 has acknowledged, reused for the next parts: a fresh
   * buffer per part would wait for a full GC to be freed, and the GC's work
   * competes with the server for the CPU when both share a machine.
   */
  const spare: Array<Buffer> = []

  /** The segment's bytes as one array; `pooled` when they were copied into a part buffer (see `spare`). */
  const gather = (bytes: Stream.Stream<Uint8Array, BlobError>, limit: number, partSize: number) =>
    Effect.map(
      Stream.runFoldEffect(bytes, { chunks: [] as Array<Uint8Array>, total: 0 }, (acc, c) => {
        if (c.length === 0) return Effect.succeed(acc)
        if (acc.total + c.length > limit) {
          return Effect.fail(fail("InvalidInput", "writeSegment", `a segment may not cross a multiple of the segment size (${limit} bytes)`))
        }
        acc.chunks.push(c)
        acc.total += c.length
        return Effect.succeed(acc)
      }),
      ({ chunks, total }): { readonly body: Uint8Array; readonly pooled?: Buffer } => {
        if (chunks.length === 1) return { body: chunks[0]! }
        if (total !== partSize) return { body: Buffer.concat(chunks, total) }
        let buffer = spare.pop()
        if (buffer === undefined || buffer.length !== partSize) buffer = Buffer.allocUnsafeSlow(partSize)
        let at = 0
        for (const c of chunks) {
          buffer.set(c, at)
          at += c.length
        }
        return { body: buffer, pooled: buffer }
      }
    )

  const writeSegment: UploadStaging["Type"]["writeSegment"] = (id, stateText, start, bytes, size) =>
    Effect.gen(function*() {
      const state = yield* parseState("writeSegment", id, stateText)
      if (!Number.isSafeInteger(start) || start < 0) {
        return yield* fail("InvalidInput", "writeSegment", `start must be a non-negative integer, got ${start}`)
      }
      const { body, pooled } = yield* gather(bytes, Math.max(state.partSize, segmentSize), state.partSize)
      if (body.length === 0) return Option.none()
      const span = new RangeSet.Span({ start, end: start + body.length })
      if (span.end > state.partSize * settings.maxParts) {
        return yield* fail("InvalidInput", "writeSegment", `the upload would exceed ${settings.maxParts} parts of ${state.partSize} bytes`)
      }
      const aligned = start % state.partSize === 0 &&
        (body.length === state.partSize || (size !== undefined && span.end === size && body.length < state.partSize))
      if (aligned) {
        yield* ops.uploadPart(state.key, textOf(state.key), state.uploadId, start / state.partSize + 1, body)
        // Only once S3 has answered: a failed or interrupted request may still be reading it.
        if (pooled !== undefined && spare.length < settings.concurrency + 1) spare.push(pooled)
      } else {
        const key = `${piecesPrefix(state)}${pad(span.start)}-${pad(span.end)}`
        yield* ops.putObject(key, textOf(key), body, {}, false)
      }
      return Option.some(span)
    }).pipe(Effect.mapError(fromS3("writeSegment")), instrument.observe("writeSegment"))

  // --- landed -----------------------------------------------------------------

  /** Size of the completed object at the staging key, when a complete got that far. */
  const completedSize = (state: State) =>
    Effect.map(ops.head(state.key, textOf(state.key)), Option.map((info) => info.size))

  const landed: UploadStaging["Type"]["landed"] = (id, stateText) =>
    Effect.gen(function*() {
      const state = yield* parseState("landed", id, stateText)
      const [parts, pieces] = yield* Effect.all([
        listParts("landed", state).pipe(
          // Without ListParts only the pieces can be proven; Uploads' RangeTracker knows the parts.
          Effect.catchIf((e) => e.reason === "Unsupported", () => Effect.succeed(Option.some<ReadonlyArray<ListedPart>>([])))
        ),
        listPieces("landed", state)
      ], { concurrency: 2 })
      const spans = pieces.map((p) => p.span)
      if (Option.isSome(parts)) {
        for (const p of parts.value) if (p.size > 0) spans.push(partSpan(state, p.number, p.size))
      } else {
        // The multipart upload was completed (a complete crashed before adopting it): the object holds everything.
        const size = yield* completedSize(state)
        if (Option.isSome(size) && size.value > 0) spans.push(new RangeSet.Span({ start: 0, end: size.value }))
      }
      return RangeSet.normalize(spans)
    }).pipe(Effect.mapError(fromS3("landed")), instrument.observe("landed"))

  // --- complete ---------------------------------------------------------------

  /** The pieces covering `[from, to)`, each with the sub-span it contributes; None when a byte is missing. */
  const coverRange = (pieces: ReadonlyArray<Piece>, from: number, to: number) => {
    const out: Array<{ readonly piece: Piece; readonly start: number; readonly end: number }> = []
    let cursor = from
    while (cursor < to) {
      let best: Piece | undefined
      for (const p of pieces) {
        if (p.span.start <= cursor && p.span.end > cursor && (best === undefined || p.span.end > best.span.end)) best = p
      }
      if (best === undefined) return Option.none()
      const end = Math.min(best.span.end, to)
      out.push({ piece: best, start: cursor, end })
      cursor = end
    }
    return Option.some(out)
  }

  /** Builds part `n` (span `[from, to)`) from pieces; returns its ETag. */
  const fillPart = (state: State, pieces: ReadonlyArray<Piece>, n: number, from: number, to: number) =>
    Effect.gen(function*() {
      const cover = coverRange(pieces, from, to)
      if (Option.isNone(cover)) {
        return yield* fail("Conflict", "complete", `bytes of [${from}, ${to}) have not landed in the staging of ${textOf(state.key)}`)
      }
      const target = textOf(state.key)
      if (cover.value.length === 1) {
        // One piece holds the whole part: S3 copies the range, no byte passes through us.
        const { end, piece, start } = cover.value[0]!
        return yield* ops.uploadPartCopy(state.key, target, state.uploadId, n, piece.key, [start - piece.span.start, end - piece.span.start])
      }
      const buffer = Buffer.allocUnsafe(to - from)
      for (const { end, piece, start } of cover.value) {
        let offset = start - from
        yield* Effect.scoped(Effect.flatMap(
          ops.open(piece.key, textOf(piece.key), [start - piece.span.start, end - piece.span.start]),
          (opened) =>
            Stream.runForEach(opened.body, (c) =>
              Effect.sync(() => {
                buffer.set(c, offset)
                offset += c.length
              }))
        ))
        if (offset !== end - from) {
          return yield* fail("Conflict", "complete", `the piece ${textOf(piece.key)} changed while it was read`)
        }
      }
      return yield* ops.uploadPart(state.key, target, state.uploadId, n, buffer)
    })

  /** The hinted key when the parts are exactly the segments this process hashed (see CompleteHint). */
  const trustedKey = (
    state: State,
    size: number,
    used: ReadonlyArray<ListedPart>,
    plan: BlobWritePlan,
    hint: CompleteHint | undefined
  ): BinaryKey.BinaryKey | undefined => {
    if (hint === undefined || hint.key.size !== size || hint.segments.length !== used.length) return undefined
    const algorithm = plan.expectedKey?.algorithm ?? plan.algorithm ?? "sha256"
    if (hint.key.algorithm !== algorithm) return undefined
    for (let i = 0; i < used.length; i++) {
      const expected = partSpan(state, used[i]!.number, used[i]!.size)
      const segment = hint.segments[i]!
      if (segment.span.start !== expected.start || segment.span.end !== expected.end) return undefined
    }
    return hint.key
  }

  const complete: UploadStaging["Type"]["complete"] = (id, stateText, size, plan, hint) =>
    Effect.gen(function*() {
      const state = yield* parseState("complete", id, stateText)
      if (!Number.isSafeInteger(size) || size < 0 || size > state.partSize * settings.maxParts) {
        return yield* fail("InvalidInput", "complete", `size ${size} does not fit the upload (${settings.maxParts} parts of ${state.partSize} bytes)`)
      }
      const target = textOf(state.key)
      const listed = yield* listParts("complete", state)
      let known: BinaryKey.BinaryKey | undefined
      if (Option.isSome(listed) && size === 0) {
        // S3 completes no upload without parts: the empty content is one empty PutObject.
        yield* ops.abortMultipart(state.key, target, state.uploadId, "empty upload: stored as one PutObject")
        yield* ops.putObject(state.key, target, new Uint8Array(0), {}, false)
      } else if (Option.isSome(listed)) {
        const byNumber = new Map(listed.value.map((p) => [p.number, p]))
        const pieces = yield* listPieces("complete", state)
        const count = Math.ceil(size / state.partSize)
        const numbers = Array.from({ length: count }, (_, i) => i + 1)
        const lengthOf = (n: number) => Math.min(size, n * state.partSize) - (n - 1) * state.partSize
        const present = numbers.flatMap((n) => {
          const part = byNumber.get(n)
          return part !== undefined && part.size === lengthOf(n) ? [part] : []
        })
        const etags = yield* Effect.forEach(numbers, (n) => {
          const part = byNumber.get(n)
          return part !== undefined && part.size === lengthOf(n)
            ? Effect.succeed(part.etag)
            : fillPart(state, pieces, n, (n - 1) * state.partSize, (n - 1) * state.partSize + lengthOf(n))
        }, { concurrency: settings.concurrency })
        // The hint describes the bytes only if every part is one this process wrote (none rebuilt from pieces).
        known = present.length === count ? trustedKey(state, size, present, plan, hint) : undefined
        // Once S3 has the request the object may exist: not interrupted half way.
        yield* Effect.uninterruptible(ops.completeMultipart(state.key, target, state.uploadId, etags, false))
      } else {
        // No multipart upload: an earlier complete got as far as completing it, or it is gone.
        const done = yield* completedSize(state)
        if (Option.isNone(done)) {
          return yield* fail("NotFound", "complete", `the multipart upload of ${target} no longer exists (aborted or expired)`)
        }
        if (done.value !== size) {
          return yield* fail("Conflict", "complete", `${target} holds ${done.value} bytes, not ${size}`)
        }
      }
      const staged = yield* Either.mapLeft(
        BlobLocator.make(SCHEME, Bucket, state.key.slice(settings.prefix.length)),
        (e) => fail("InvalidInput", "complete", e.message)
      )
      // The completed object holds every byte: pieces are no longer needed (and a repeated complete finds the object).
      yield* removePieces("complete", state)
      return yield* adopt(staged, plan, known)
    }).pipe(Effect.mapError(fromS3("complete")), instrument.observe("complete"))

  // --- abort ------------------------------------------------------------------

  const removePieces = (method: string, state: State) =>
    Effect.flatMap(listPieces(method, state), (pieces) =>
      Effect.forEach(pieces, (p) => Effect.mapError(ops.deleteObject(p.key, textOf(p.key)), fromS3(method)), {
        concurrency: 8,
        discard: true
      }))

  /** AbortMultipartUpload; unlike ops.abortMultipart a failure fails (the caller keeps its record and may retry). */
  const abortUpload = (state: State, why: string) =>
    ops.send("AbortMultipartUpload", textOf(state.key), (signal) =>
      client.send(new S3.AbortMultipartUploadCommand({ Bucket, Key: state.key, UploadId: state.uploadId }), { abortSignal: signal }), { key: state.key, uploadId: state.uploadId }).pipe(
        Effect.zipRight(instrument.counter(S3Metrics.multipartAborts, 1, { outcome: "success" })),
        Effect.zipRight(Effect.flatMap(Clock.currentTimeMillis, (ms) =>
          instrument.publish(
            new UploadAborted({ backend: BACKEND, at: new Date(ms), locator: textOf(state.key), uploadId: state.uploadId, why })
          ))),
        // Already gone (completed, aborted before, or expired by a lifecycle rule) is what we wanted.
        Effect.catchIf((e) => e.reason === "NotFound", () => Effect.void),
        Effect.catchIf((e) => e.reason === "Unsupported", (e) =>
          Effect.logWarning(
            `s3: this server cannot abort multipart uploads; the parts of ${textOf(state.key)} stay until a lifecycle rule removes them`,
            e.message
          )),
        Effect.mapError(fromS3("abort"))
      )

  const abort: UploadStaging["Type"]["abort"] = (id, stateText) =>
    Effect.gen(function*() {
      const state = yield* parseState("abort", id, stateText)
      yield* abortUpload(state, "upload aborted")
      yield* removePieces("abort", state)
      // Left by a complete that finished the multipart upload but not the adoption.
      yield* Effect.mapError(ops.deleteObject(state.key, textOf(state.key)), fromS3("abort"))
    }).pipe(instrument.observe("abort"))

  // Parts are checked by their spans only: no key per segment is needed.
  return TracingPorts.uploadStaging(BACKEND, UploadStaging.of({ name: NAME, segmentSize, segmentKeys: false, begin, writeSegment, landed, complete, abort }))
}

/** Builds the staging on the S3ClientInstance in context. */
export const make = (
  options: S3UploadStagingOptions = {}
): Effect.Effect<UploadStaging["Type"], ObjectStoreError, S3Client.S3ClientInstance> =>
  Effect.gen(function*() {
    const shape = yield* S3Client.S3ClientInstance
    const uploadPrefix = yield* normalizePrefix(options.uploadPrefix ?? "uploads")
    const blobPrefix = yield* normalizePrefix(options.blobPrefix ?? "blobs")
    const partSize = options.uploadPartSize ?? shape.settings.partSize
    if (!Number.isSafeInteger(partSize) || partSize < MIN_PART_SIZE || partSize > MAX_PART_SIZE) {
      return yield* new ObjectStoreError({
        reason: "InvalidInput",
        backend: BACKEND,
        method: "config",
        description: `uploadPartSize must be an integer between ${MIN_PART_SIZE} and ${MAX_PART_SIZE}, got ${partSize}`
      })
    }
    const instrument = yield* Instrument.make(BACKEND, "UploadStaging")
    return fromOps(makeOps(shape, instrument), shape.client, shape.sse, { uploadPrefix, blobPrefix, partSize })
  })

/** UploadStaging over the S3ClientInstance in context. */
export const layer = (
  options: S3UploadStagingOptions = {}
): Layer.Layer<UploadStaging, ObjectStoreError, S3Client.S3ClientInstance> => Layer.effect(UploadStaging, make(options))

/** Like `layer`, with options from `Config` (by default `config`, i.e. GRAVITON_S3_UPLOAD_*). */
export const layerConfig = (
  options: Config.Config.Wrap<S3UploadStagingOptions> = config
): Layer.Layer<UploadStaging, ObjectStoreError | ConfigError.ConfigError, S3Client.S3ClientInstance> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(options), layer))
