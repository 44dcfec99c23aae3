/**
 * Streamed uploads: the bytes of a put are copied into part buffers; a
 * stream that ends within the first part becomes one PutObject, a longer one
 * a multipart upload with at most `concurrency` parts in flight. Writing
 * waits for a free slot before it starts a new buffer, so memory stays at
 * about partSize × (concurrency + 1), whatever the object size.
 *
 * A part is sent only once the next byte arrives, so the last part is never
 * empty and a stream of exactly one part is a single PutObject. A part that
 * fails transiently is retried on its own (ops.uploadPart retries); one that
 * fails for good fails the upload. The multipart upload is aborted by a
 * finalizer when the scope closes without completing it (failure,
 * interruption, a failing input stream), after the part fibers have stopped.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as FiberSet from "effect/FiberSet"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import { ObjectStoreError } from "../../../core/Errors.js"
import { abortReason, BACKEND, type Ops, type WriteHeaders, type WriteOutcome } from "./ops.js"
import { plan } from "./parts.js"

/** First buffer size; it doubles up to the part size while the first part fills, so small puts stay small. */
const FIRST_BUFFER = 64 * 1024

/** A multipart upload created on first use and aborted at scope close unless completed or abandoned. */
export interface MultipartSession {
  /** The upload id, creating the upload on first call. */
  readonly id: Effect.Effect<string, ObjectStoreError>
  readonly started: () => boolean
  /** Completes the upload with the parts' ETags (in part order). */
  readonly complete: (etags: ReadonlyArray<string>, ifNoneMatch: boolean) => Effect.Effect<WriteOutcome, ObjectStoreError>
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
    const complete = (etags: ReadonlyArray<string>, ifNoneMatch: boolean) =>
      Effect.suspend(() =>
        uploadId === undefined
          ? Effect.die(new Error("complete called before the multipart upload was created"))
          // Once S3 has the request the object may be visible: do not abort it half way.
          : Effect.uninterruptible(ops.completeMultipart(key, target, uploadId, etags, ifNoneMatch)).pipe(
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
    return { id, started: () => uploadId !== undefined, complete, abandon }
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
  /** Adds bytes; waits while `concurrency` parts are in flight. */
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
}

const invalid = (method: string, description: string) =>
  new ObjectStoreError({ reason: "InvalidInput", backend: BACKEND, method, description })

/** Starts an upload in the current scope (closing it without `finish` aborts any multipart upload). */
export const start = (ops: Ops, options: UploadOptions): Effect.Effect<Upload, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { concurrency, equalParts, maxParts, partSize } = ops.settings
    const parts = plan({ partSize, maxParts, equalParts, size: options.size })
    const multipart = yield* session(ops, options.key, options.target, options.headers)
    // Made after the session, so closed before it: part requests stop before the abort is sent.
    const inFlight = yield* FiberSet.make<void, never>()
    const slots = yield* Effect.makeSemaphore(concurrency)
    const failure = yield* Deferred.make<never, ObjectStoreError>()
    const etags: Array<string> = []
    /**
     * Buffers of parts S3 has acknowledged, reused for the next parts: memory
     * stays at (concurrency + 1) part buffers instead of waiting for the GC to
     * find the old ones (a part fully sent and answered is no longer read).
     */
    const spare: Array<Buffer> = []

    let buffer: Buffer | undefined
    let used = 0
    /** Number of the part being filled (1-based). */
    let partNumber = 1
    let written = 0
    /** Size the current part will have once full. */
    let partTarget = parts.sizeOf(1)

    const firstFailure = Effect.flatMap(Deferred.poll(failure), Option.match({ onNone: () => Effect.void, onSome: (e) => e }))

    /** Sends the full current buffer as part `partNumber` in the background. */
    const dispatch = Effect.gen(function*() {
      const full = buffer!
      const body = full.subarray(0, used)
      const n = partNumber
      buffer = undefined
      used = 0
      partNumber++
      partTarget = parts.sizeOf(partNumber)
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
                if (spare.length < concurrency) spare.push(full)
              }),
            onFailure: (e) => Deferred.fail(failure, e)
          }),
          Effect.ensuring(slots.release(1))
        )
      )
    })

    const write = (chunk: Uint8Array): Effect.Effect<void, ObjectStoreError> =>
      Effect.suspend(() => {
        if (options.size !== undefined && written + chunk.length > options.size) {
          return Effect.fail(invalid("put", `the stream is longer than the declared size (${options.size} bytes)`))
        }
        let offset = 0
        const loop = (): Effect.Effect<void, ObjectStoreError> => {
          while (offset < chunk.length) {
            if (buffer !== undefined && used === partTarget) return Effect.flatMap(dispatch, loop)
            if (buffer === undefined) {
              if (partNumber > parts.maxParts) {
                return Effect.fail(invalid(
                  "put",
                  `the stream is longer than ${parts.capacity} bytes (${parts.maxParts} parts); raise partSize or declare the size`
                ))
              }
              // Later parts are known to fill up: take them whole. The first grows as it fills.
              const reused = partNumber === 1 ? undefined : spare.pop()
              // After the part size grew, the spares are the old size: let them go.
              if (reused !== undefined && reused.length !== partTarget) spare.length = 0
              buffer = reused !== undefined && reused.length === partTarget
                ? reused
                : Buffer.allocUnsafeSlow(partNumber === 1 ? Math.min(partTarget, FIRST_BUFFER) : partTarget)
              used = 0
            } else if (used === buffer.length) {
              const grown = Buffer.allocUnsafeSlow(Math.min(partTarget, buffer.length * 2))
              buffer.copy(grown, 0, 0, used)
              buffer = grown
            }
            const n = Math.min(chunk.length - offset, buffer.length - used)
            buffer.set(chunk.subarray(offset, offset + n), used)
            used += n
            offset += n
            written += n
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
        if (!multipart.started()) {
          const decision = yield* decide(written, false)
          if (Option.isNone(decision)) return { _tag: "Skipped", size: written, exists: false } satisfies Finished
          const key = decision.value.key ?? options.key
          const body = buffer === undefined ? new Uint8Array(0) : buffer.subarray(0, used)
          const outcome = yield* ops.putObject(
            key,
            options.target,
            body,
            decision.value.headers ?? options.headers,
            decision.value.ifNoneMatch
          )
          return outcome._tag === "Written"
            ? { _tag: "Written", key, size: written, etag: outcome.etag } satisfies Finished
            : { _tag: "Skipped", size: written, exists: true } satisfies Finished
        }
        if (used > 0) yield* dispatch
        // Every slot free = every part settled.
        yield* slots.withPermits(concurrency)(Effect.void)
        yield* firstFailure
        const decision = yield* decide(written, true)
        if (Option.isNone(decision)) {
          yield* multipart.abandon("not stored: decided after the upload")
          return { _tag: "Skipped", size: written, exists: false } satisfies Finished
        }
        const outcome = yield* multipart.complete(etags, decision.value.ifNoneMatch)
        if (outcome._tag === "Exists") {
          yield* multipart.abandon("the key already holds an object")
          return { _tag: "Skipped", size: written, exists: true } satisfies Finished
        }
        return { _tag: "Written", key: options.key, size: written, etag: outcome.etag } satisfies Finished
      })

    return { write, written: () => written, finish }
  })
