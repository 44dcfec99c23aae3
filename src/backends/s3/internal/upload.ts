/**
 * Streamed uploads: a stream that ends within the first part becomes one
 * PutObject, a longer one a multipart upload with at most `concurrency` parts
 * in flight. A part holds memory from its first byte until S3 has answered
 * it, and writing waits before it starts a new part while `concurrency` parts
 * (two when that is one, so the next part still fills meanwhile) are held:
 * the parts take at most maxPartSize × max(2, concurrency), whatever the
 * object size (partSize × max(2, concurrency) for the first 1,000 parts of a
 * stream of unknown length; see parts.ts for how parts grow). A stream longer
 * than the plan can hold (about maxParts × maxPartSize) fails with
 * InvalidInput: at its first byte beyond it, or at `start` when its declared
 * size is already too long.
 *
 * The first part is gathered by reference to the incoming chunks (small ones
 * are copied together): a put within one part costs no copy of its own, and
 * no part buffer is allocated before the upload is known to be multipart.
 * Chunks are kept as given, so a caller must not reuse a chunk's memory after
 * handing it over (a stream never does). Later parts are copied into
 * part-sized buffers that are reused once S3 has acknowledged their part (a
 * new buffer per part would leave its predecessors to the GC, which frees
 * them only in a full collection).
 *
 * The first part is sent once the next byte arrives, so a stream of exactly
 * one part is a single PutObject; the multipart upload is created then. Later
 * parts are sent as soon as they are full; a part is only started for a byte,
 * so the last part is never empty. A part that fails transiently is retried
 * on its own (ops.uploadPart retries); one that fails for good fails the
 * upload. The multipart upload is aborted by a finalizer when the scope
 * closes without completing it (failure, interruption, a failing input
 * stream), after the part fibers have stopped.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as FiberSet from "effect/FiberSet"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import { ObjectStoreError } from "../../../core/Errors.js"
import { abortReason, BACKEND, type Completion, type Ops, type WriteHeaders, type WriteOutcome } from "./ops.js"
import { plan } from "./parts.js"

/** Chunks shorter than this are copied together while the first part gathers, instead of being kept one by one. */
const SMALL_CHUNK = 16 * 1024
/** Size of the buffers small chunks are copied into. */
const SMALL_BUFFER = 64 * 1024

/** A multipart upload created on first use and aborted at scope close unless completed or abandoned. */
export interface MultipartSession {
  /** The upload id, creating the upload on first call. */
  readonly id: Effect.Effect<string, ObjectStoreError>
  /** Completes the upload with the parts' ETags (in part order); `completion` recognizes it if the answer is lost. */
  readonly complete: (
    etags: ReadonlyArray<string>,
    ifNoneMatch: boolean,
    completion?: Completion
  ) => Effect.Effect<WriteOutcome, ObjectStoreError>
  /** Aborts now (e.g. the content turned out to be stored already). */
  readonly abandon: (why: string) => Effect.Effect<void>
}

/** Opens a lazily created multipart upload of `key`, tied to the current scope. */
export const session = (
  ops: Ops,
  key: string,
  target: string,
  headers: WriteHeaders
): Effect.Effect<MultipartSession, never, Scope.Scope> =>
  Effect.gen(function*() {
    let uploadId: string | undefined
    let settled = false
    yield* Effect.addFinalizer((exit) =>
      uploadId !== undefined && !settled ? ops.abortMultipart(key, target, uploadId, abortReason(exit)) : Effect.void
    )
    // Creation cannot be interrupted half way: an upload created but unknown to us could never be aborted.
    const id = Effect.suspend(() =>
      uploadId !== undefined
        ? Effect.succeed(uploadId)
        : Effect.uninterruptible(Effect.tap(ops.createMultipart(key, target, headers), (created) => {
          uploadId = created
        }))
    )
    const complete = (etags: ReadonlyArray<string>, ifNoneMatch: boolean, completion?: Completion) =>
      Effect.suspend(() =>
        uploadId === undefined
          ? Effect.die(new Error("complete called before the multipart upload was created"))
          // Once S3 has the request the object may be visible: do not abort it half way.
          : Effect.uninterruptible(ops.completeMultipart(key, target, uploadId, etags, ifNoneMatch, completion)).pipe(
            Effect.tap((outcome) => {
              // A refused completion (the key exists) leaves the upload open: the finalizer aborts it.
              if (outcome._tag === "Written") settled = true
            })
          )
      )
    const abandon = (why: string) =>
      Effect.suspend(() => {
        if (uploadId === undefined || settled) return Effect.void
        settled = true
        return ops.abortMultipart(key, target, uploadId, why)
      })
    return { id, complete, abandon }
  })

/** What `finish` does with the bytes once the input has ended. */
export interface Commit {
  /** Key of a single PutObject (default: the upload's key). A multipart upload always completes under its own key. */
  readonly key?: string | undefined
  /** Headers of a single PutObject (default: the upload's). */
  readonly headers?: WriteHeaders | undefined
  /** Refuse to replace an existing object (`If-None-Match: *`). */
  readonly ifNoneMatch: boolean
}

/** How an upload ended. */
export type Finished =
  | { readonly _tag: "Written"; readonly key: string; readonly size: number; readonly etag: Option.Option<string> }
  /** `decide` said not to store (or a conditional write found the key taken). */
  | { readonly _tag: "Skipped"; readonly size: number; readonly exists: boolean }

/** A put in progress. */
export interface Upload {
  /** Adds bytes; waits while the most parts are held (see the module comment). */
  readonly write: (chunk: Uint8Array) => Effect.Effect<void, ObjectStoreError>
  /** Bytes written so far. */
  readonly written: () => number
  /**
   * Ends the input: `decide` sees the total (and whether it went multipart)
   * and returns how to commit, or None to store nothing; then the object is
   * made visible in one step (PutObject or CompleteMultipartUpload).
   */
  readonly finish: <E>(
    decide: (size: number, multipart: boolean) => Effect.Effect<Option.Option<Commit>, E>
  ) => Effect.Effect<Finished, ObjectStoreError | E>
}

/** Options of `start`. */
export interface UploadOptions {
  /** Key of a multipart upload, and default key of a single PutObject. */
  readonly key: string
  /** Locator text, for messages and events. */
  readonly target: string
  readonly headers: WriteHeaders
  /** Declared total length: sizes the parts, and a stream that disagrees fails with InvalidInput. */
  readonly size?: number | undefined
  /**
   * Nobody else writes `key` (a staging key of a random name), or any object
   * of the upload's size there holds the same content (a content address):
   * after a lost CompleteMultipartUpload answer, such an object is taken as
   * this upload (see ops `Completion`). Default false: the ETag decides.
   */
  readonly keyIsOurs?: boolean | undefined
}

const invalid = (method: string, description: string) =>
  new ObjectStoreError({ reason: "InvalidInput", backend: BACKEND, method, description })

/** Starts an upload in the current scope (closing it without `finish` aborts any multipart upload). */
export const start = (ops: Ops, options: UploadOptions): Effect.Effect<Upload, ObjectStoreError, Scope.Scope> =>
  Effect.gen(function*() {
    const { concurrency, equalParts, maxPartSize, maxParts, partSize } = ops.settings
    const parts = plan({ partSize, maxPartSize, maxParts, equalParts, size: options.size })
    if (options.size !== undefined && options.size > parts.capacity) {
      return yield* invalid(
        "put",
        `the declared size ${options.size} is more than ${parts.maxParts} parts of at most ${maxPartSize} bytes can hold; raise maxPartSize (GRAVITON_S3_MAX_PART_SIZE)`
      )
    }
    const multipart = yield* session(ops, options.key, options.target, options.headers)
    // Made after the session, so closed before it: part requests stop before the abort is sent.
    const inFlight = yield* FiberSet.make<void, never>()
    /**
     * One permit per part held in memory, from its first byte until S3 has
     * acknowledged it. `concurrency` of them: the input waits while that many
     * parts are being sent, and a part is filled as soon as one of them is
     * answered (filling takes far less time than sending). Two at least, so
     * that with one request at a time the next part still fills meanwhile.
     */
    const most = Math.max(2, concurrency)
    const held = yield* Effect.makeSemaphore(most)
    /** One permit per request in flight. */
    const slots = yield* Effect.makeSemaphore(concurrency)
    const failure = yield* Deferred.make<never, ObjectStoreError>()
    const etags: Array<string> = []
    /**
     * Buffers of parts S3 has acknowledged, reused for the next parts instead
     * of new ones per part (the old ones would wait for a full GC). A part
     * fully sent and answered is no longer read.
     */
    const spare: Array<Buffer> = []

    /** Known to need more than one part: a byte beyond the first part arrived, or the declared size says so. */
    let isMultipart = options.size !== undefined && options.size > parts.sizeOf(1)
    /** The first part while it may still be a single PutObject: the chunks as given, small ones copied together. */
    let gathered: Array<Uint8Array> = []
    let gatheredBytes = 0
    /** Where small chunks are copied, and whether the last gathered entry is a run of them in it. */
    let small: Buffer | undefined
    let smallUsed = 0
    let smallRun = false

    /** The part being filled once multipart (a pooled buffer) and its length so far. */
    let buffer: Buffer | undefined
    let used = 0
    /** A `held` permit taken for the next part, before its buffer. */
    let claimed = false
    /** Number of the part being filled (1-based). */
    let partNumber = 1
    let written = 0
    /** Size the current part will have once full. */
    let partTarget = parts.sizeOf(1)

    const firstFailure = Effect.flatMap(Deferred.poll(failure), Option.match({ onNone: () => Effect.void, onSome: (e) => e }))

    /** Waits until a part may be held in memory; fails if a part has failed meanwhile. */
    const claim = Effect.zipRight(
      held.take(1),
      Effect.tapError(firstFailure, () => held.release(1))
    ).pipe(Effect.tap(() => {
      claimed = true
    }))

    /** A part-sized buffer: a spare one when there is one of the right size. */
    const take = (size: number): Buffer => {
      const reused = spare.pop()
      if (reused !== undefined && reused.length === size) return reused
      // After the part size grew, the spares are the old size: let them go.
      spare.length = 0
      return Buffer.allocUnsafeSlow(size)
    }

    /** Keeps `n` bytes of `chunk` from `from` for the first part. */
    const gather = (chunk: Uint8Array, from: number, n: number) => {
      if (n >= SMALL_CHUNK) {
        gathered.push(n === chunk.length ? chunk : chunk.subarray(from, from + n))
        smallRun = false
      } else {
        if (small === undefined || small.length - smallUsed < n) {
          small = Buffer.allocUnsafeSlow(SMALL_BUFFER)
          smallUsed = 0
          smallRun = false
        }
        small.set(chunk.subarray(from, from + n), smallUsed)
        if (smallRun) {
          const last = gathered[gathered.length - 1]!
          gathered[gathered.length - 1] = small.subarray(smallUsed - last.length, smallUsed + n)
        } else {
          gathered.push(small.subarray(smallUsed, smallUsed + n))
          smallRun = true
        }
        smallUsed += n
      }
      gatheredBytes += n
    }

    /** The gathered first part as one array (the only chunk itself when there is one). */
    const gatheredBody = (): Uint8Array => (gathered.length === 1 ? gathered[0]! : Buffer.concat(gathered, gatheredBytes))

    /**
     * Sends `body` as the next part in the background; the claimed permit goes
     * with it. `pooled` is the buffer to reuse once S3 has acknowledged the
     * part (none when the body is the caller's own chunk).
     */
    const send = (body: Uint8Array, pooled: Buffer | undefined) =>
      Effect.suspend(() => {
        const n = partNumber
        partNumber++
        partTarget = parts.sizeOf(partNumber)
        claimed = false
        return Effect.gen(function*() {
          const uploadId = yield* multipart.id
          yield* slots.take(1)
          const failed = yield* Effect.exit(firstFailure)
          if (failed._tag === "Failure") {
            yield* slots.release(1)
            return yield* failed
          }
          yield* FiberSet.run(
            inFlight,
            ops.uploadPart(options.key, options.target, uploadId, n, body).pipe(
              Effect.matchEffect({
                onSuccess: (etag) =>
                  Effect.sync(() => {
                    etags[n - 1] = etag
                    if (pooled !== undefined && spare.length < most) spare.push(pooled)
                  }),
                onFailure: (e) => Deferred.fail(failure, e)
              }),
              Effect.ensuring(Effect.zipRight(slots.release(1), held.release(1)))
            )
          )
        }).pipe(Effect.onError(() => held.release(1)))
      })

    /** Sends the current buffer. */
    const dispatch = Effect.suspend(() => {
      const full = buffer!
      const body = full.subarray(0, used)
      buffer = undefined
      used = 0
      return send(body, full)
    })

    /** Sends the gathered first part: a byte beyond it arrived, so this is a multipart upload. */
    const dispatchFirst = Effect.suspend(() => {
      isMultipart = true
      const pieces = gathered
      gathered = []
      gatheredBytes = 0
      small = undefined
      smallRun = false
      if (pieces.length === 1) return send(pieces[0]!, undefined)
      const full = take(partTarget)
      let at = 0
      for (const piece of pieces) {
        full.set(piece, at)
        at += piece.length
      }
      return send(full.subarray(0, at), full)
    })

    const write = (chunk: Uint8Array): Effect.Effect<void, ObjectStoreError> =>
      Effect.suspend(() => {
        if (options.size !== undefined && written + chunk.length > options.size) {
          return Effect.fail(invalid("put", `the stream is longer than the declared size (${options.size} bytes)`))
        }
        let offset = 0
        const loop = (): Effect.Effect<void, ObjectStoreError> => {
          while (offset < chunk.length) {
            if (!isMultipart) {
              const room = partTarget - gatheredBytes
              if (room === 0) return claimed ? Effect.flatMap(dispatchFirst, loop) : Effect.flatMap(claim, loop)
              const n = Math.min(room, chunk.length - offset)
              gather(chunk, offset, n)
              offset += n
              written += n
              continue
            }
            if (buffer === undefined) {
              if (partNumber > parts.maxParts) {
                return Effect.fail(invalid(
                  "put",
                  `the stream is longer than ${parts.capacity} bytes (${parts.maxParts} parts of at most ${maxPartSize} bytes); raise maxPartSize (GRAVITON_S3_MAX_PART_SIZE) or declare the size`
                ))
              }
              if (!claimed) return Effect.flatMap(claim, loop)
              buffer = take(partTarget)
              used = 0
            }
            const n = Math.min(chunk.length - offset, partTarget - used)
            buffer.set(chunk.subarray(offset, offset + n), used)
            used += n
            offset += n
            written += n
            // Past the first part, a full part goes at once: the stream's end cannot make it the first.
            if (used === partTarget) return Effect.flatMap(dispatch, loop)
          }
          return Effect.void
        }
        return loop()
      })

    const finish = <E>(decide: (size: number, multipart: boolean) => Effect.Effect<Option.Option<Commit>, E>) =>
      Effect.gen(function*() {
        if (options.size !== undefined && written !== options.size) {
          return yield* invalid("put", `the stream had ${written} bytes but ${options.size} were declared`)
        }
        if (!isMultipart) {
          const decision = yield* decide(written, false)
          if (Option.isNone(decision)) return { _tag: "Skipped", size: written, exists: false } satisfies Finished
          const key = decision.value.key ?? options.key
          const outcome = yield* ops.putObject(
            key,
            options.target,
            gatheredBody(),
            decision.value.headers ?? options.headers,
            decision.value.ifNoneMatch
          )
          return outcome._tag === "Written"
            ? { _tag: "Written", key, size: written, etag: outcome.etag } satisfies Finished
            : { _tag: "Skipped", size: written, exists: true } satisfies Finished
        }
        if (buffer !== undefined) yield* dispatch
        // Every slot free = every part settled.
        yield* slots.withPermits(concurrency)(Effect.void)
        yield* firstFailure
        const decision = yield* decide(written, true)
        if (Option.isNone(decision)) {
          yield* multipart.abandon("not stored: decided after the upload")
          return { _tag: "Skipped", size: written, exists: false } satisfies Finished
        }
        const outcome = yield* multipart.complete(etags, decision.value.ifNoneMatch, {
          size: written,
          keyIsOurs: options.keyIsOurs === true
        })
        if (outcome._tag === "Exists") {
          yield* multipart.abandon("the key already holds an object")
          return { _tag: "Skipped", size: written, exists: true } satisfies Finished
        }
        return { _tag: "Written", key: options.key, size: written, etag: outcome.etag } satisfies Finished
      })

    return { write, written: () => written, finish }
  })
