/**
 * The S3 calls the ports are built from. Each one goes through `send`:
 * `Effect.tryPromise` with the fiber's abort signal (interrupting a fiber
 * cancels its HTTP request), the one error mapping (S3Error.classify), and
 * the runtime's retry of transient reasons with our Schedule (the SDK's own
 * retries are off). Every call here is safe to repeat.
 */
import * as S3 from "@aws-sdk/client-s3"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { createHash } from "node:crypto"
import type { Readable } from "node:stream"
import { ObjectStoreError } from "../../../core/Errors.js"
import { UploadAborted } from "../../../ports/BackendEvents.js"
import type { Instrument } from "../../../kit/Instrument.js"
import * as Retry from "../../../kit/Retry.js"
import * as Tracing from "../../../kit/Tracing.js"
import type { S3ClientShape } from "../S3Client.js"
import type { S3Settings } from "../S3Config.js"
import { classify, toObjectStoreError } from "../S3Error.js"
import * as S3Metrics from "../S3Metrics.js"
import { fromBody } from "./body.js"

export const BACKEND = "s3"

/** What a HEAD (or a GET's headers) says about an object. */
export interface ObjectInfo {
  /** Total size of the object (not of a ranged response). */
  readonly size: number
  readonly etag: Option.Option<string>
  readonly lastModified: Option.Option<Date>
  readonly contentType: Option.Option<string>
  readonly metadata: Readonly<Record<string, string>>
}

/** An open GET: the object's info and its (possibly ranged) body as a stream. */
export interface Opened {
  readonly info: ObjectInfo
  /** Bytes this response carries. */
  readonly length: number
  /**
   * Exactly `length` bytes: a body that ends short of them without an error
   * from the connection (a proxy or server cutting it) fails with Corrupted,
   * never ends cleanly.
   */
  readonly body: Stream.Stream<Uint8Array, ObjectStoreError>
}

/** Content type and user metadata of an object being written. */
export interface WriteHeaders {
  readonly contentType?: string | undefined
  readonly metadata?: Readonly<Record<string, string>> | undefined
}

/**
 * How a completed upload is recognized at its key when the answer to its
 * CompleteMultipartUpload was lost. Always: the object's ETag is the
 * multipart ETag of the parts (MD5 of their MD5s, `-<count>`), where the
 * parts' ETags are MD5s (not under SSE-KMS or SSE-C). With `keyIsOurs`, an
 * object of `size` bytes is enough: nobody else writes that key (a staging
 * key of a random name), or any object of that size there holds the same
 * content (a content address, verified on read).
 */
export interface Completion {
  readonly size: number
  readonly keyIsOurs: boolean
}

/** The ETag S3 gives an object completed from parts with these ETags, when they are MD5s. */
export const multipartEtag = (etags: ReadonlyArray<string>): Option.Option<string> => {
  const digests = etags.map((e) => e.replace(/"/g, "").toLowerCase())
  if (digests.length === 0 || !digests.every((d) => /^[0-9a-f]{32}$/.test(d))) return Option.none()
  const md5 = createHash("md5")
  for (const d of digests) md5.update(Buffer.from(d, "hex"))
  return Option.some(`${md5.digest("hex")}-${digests.length}`)
}

/** The result of a conditional write: stored, or refused because the key exists (`If-None-Match: *`). */
export type WriteOutcome =
  | { readonly _tag: "Written"; readonly etag: Option.Option<string> }
  | { readonly _tag: "Exists" }

/** The S3 calls of one port instance (one Instrument). */
export interface Ops {
  readonly settings: S3Settings
  readonly instrument: Instrument
  /**
   * Runs one SDK call with abort, error mapping and retries; `op` names it in metrics and events,
   * and `call` says what its span shows (see `callSpan`).
   */
  readonly send: <A>(
    op: string,
    target: string,
    run: (signal: AbortSignal) => Promise<A>,
    call?: Call
  ) => Effect.Effect<A, ObjectStoreError>
  readonly head: (key: string, target: string) => Effect.Effect<Option.Option<ObjectInfo>, ObjectStoreError>
  /** GETs `[start, end)` (or everything); the body is released when the scope closes. */
  readonly open: (
    key: string,
    target: string,
    range?: readonly [number, number]
  ) => Effect.Effect<Opened, ObjectStoreError, Scope.Scope>
  readonly putObject: (
    key: string,
    target: string,
    body: Uint8Array,
    headers: WriteHeaders,
    ifNoneMatch: boolean
  ) => Effect.Effect<WriteOutcome, ObjectStoreError>
  readonly createMultipart: (key: string, target: string, headers: WriteHeaders) => Effect.Effect<string, ObjectStoreError>
  readonly uploadPart: (
    key: string,
    target: string,
    uploadId: string,
    partNumber: number,
    body: Uint8Array
  ) => Effect.Effect<string, ObjectStoreError>
  readonly uploadPartCopy: (
    key: string,
    target: string,
    uploadId: string,
    partNumber: number,
    sourceKey: string,
    range: readonly [number, number]
  ) => Effect.Effect<string, ObjectStoreError>
  /**
   * Completes an upload. When the answer to an attempt was lost (a reset
   * after the server got the request) and a retry is refused (the upload is
   * gone: NoSuchUpload, or an error where the server does not repeat a
   * completion) or finds the key taken (`If-None-Match`), the object at the
   * key is checked: if it is this upload (see `Completion`), the completion
   * succeeded and is reported so.
   */
  readonly completeMultipart: (
    key: string,
    target: string,
    uploadId: string,
    etags: ReadonlyArray<string>,
    ifNoneMatch: boolean,
    completion?: Completion
  ) => Effect.Effect<WriteOutcome, ObjectStoreError>
  /** Aborts an upload; never fails (a failure is logged, counted and published). */
  readonly abortMultipart: (key: string, target: string, uploadId: string, why: string) => Effect.Effect<void>
  /** Server-side CopyObject; `replace` swaps content type and metadata instead of keeping the source's. */
  readonly copyObject: (
    sourceKey: string,
    key: string,
    target: string,
    replace: WriteHeaders | undefined
  ) => Effect.Effect<{ readonly etag: Option.Option<string>; readonly lastModified: Option.Option<Date> }, ObjectStoreError>
  /** Deletes; a missing key is not an error. */
  readonly deleteObject: (key: string, target: string) => Effect.Effect<void, ObjectStoreError>
  /** One ListObjectsV2 page under `prefix`. */
  readonly listPage: (
    prefix: string,
    target: string,
    token: string | undefined
  ) => Effect.Effect<{ readonly objects: ReadonlyArray<S3._Object>; readonly next: Option.Option<string> }, ObjectStoreError>
}

/** What a call's span says besides its operation: the object key, the multipart upload and part, the bytes sent. */
export interface Call {
  readonly key?: string | undefined
  readonly uploadId?: string | undefined
  readonly partNumber?: number | undefined
  readonly bytes?: number | undefined
}

/**
 * One SDK call (all its retries) in a span named as OpenTelemetry's AWS SDK
 * instrumentation names it, `S3.<Operation>`, with its attributes (rpc.*,
 * aws.s3.*). Request headers (the SSE-C key among them) never go in it.
 */
export const callSpan = <A, E, R>(bucket: string, op: string, call: Call | undefined, self: Effect.Effect<A, E, R>) =>
  Tracing.effect(self, `S3.${op}`, {
    kind: "client",
    attributes: () => ({
      [Tracing.attr.backend]: BACKEND,
      "rpc.system": "aws-api",
      "rpc.service": "S3",
      "rpc.method": op,
      "aws.s3.bucket": bucket,
      ...(call?.key === undefined ? {} : { "aws.s3.key": call.key }),
      ...(call?.uploadId === undefined ? {} : { "aws.s3.upload_id": call.uploadId }),
      ...(call?.partNumber === undefined ? {} : { "aws.s3.part_number": call.partNumber }),
      ...(call?.bytes === undefined ? {} : { [Tracing.attr.bytes]: call.bytes })
    })
  })

/** `bucket/key` for x-amz-copy-source, each segment URL-encoded as S3 requires. */
export const copySource = (bucket: string, key: string): string =>
  `${bucket}/${key.split("/").map(encodeURIComponent).join("/")}`

/** `Content-Range: bytes a-b/total` as numbers. */
const parseContentRange = (header: string | undefined): { readonly start: number; readonly total: number } | undefined => {
  const m = header === undefined ? null : /^bytes (\d+)-\d+\/(\d+)\s*$/.exec(header)
  return m === null ? undefined : { start: Number(m[1]), total: Number(m[2]) }
}

/** Drops the first `skip` bytes of a byte stream and ends it after `keep` more. */
const slice = <E>(bytes: Stream.Stream<Uint8Array, E>, skip: number, keep: number): Stream.Stream<Uint8Array, E> =>
  Stream.suspend(() => {
    let toSkip = skip
    let toKeep = keep
    return bytes.pipe(
      Stream.takeWhile(() => toKeep > 0),
      Stream.map((c) => {
        const from = Math.min(toSkip, c.length)
        toSkip -= from
        const piece = c.subarray(from, from + Math.min(toKeep, c.length - from))
        toKeep -= piece.length
        return piece
      }),
      Stream.filter((c) => c.length > 0)
    )
  })

/** The S3 code and HTTP status behind a mapped error (its cause is the SDK's error). */
const nativeOf = (e: ObjectStoreError) => classify(e.cause)

const isPreconditionFailed = (e: ObjectStoreError) => {
  const native = nativeOf(e)
  return native.code === "PreconditionFailed" || native.status === 412
}

const destroyBody = (body: unknown) => {
  const readable = body as Partial<Readable> | undefined
  if (readable !== undefined && typeof readable.destroy === "function" && readable.destroyed !== true) readable.destroy()
}

/** Why an upload is being aborted, from the exit of its scope. */
export const abortReason = (exit: Exit.Exit<unknown, unknown>): string =>
  Exit.isSuccess(exit)
    ? "not completed"
    : Cause.isInterruptedOnly(exit.cause)
    ? "interrupted"
    : Option.match(Cause.failureOption(exit.cause), {
      onNone: () => "failed",
      onSome: (e) =>
        typeof e === "object" && e !== null && "message" in e && typeof e.message === "string" ? `failed: ${e.message}` : "failed"
    })

/** Options of `make`. */
export interface OpsOptions {
  /**
   * Count the bytes sent and received (bytes written / read). Off under a
   * BlobStore, whose protocol counts content bytes itself (counted here too,
   * they would land twice in the same series).
   */
  readonly countBytes?: boolean | undefined
}

/** The calls of one port instance over `shape`'s client, recorded by `instrument`. */
export const make = (shape: S3ClientShape, instrument: Instrument, options: OpsOptions = {}): Ops => {
  const { client, settings, sse } = shape
  const countBytes = (name: string, n: number) => options.countBytes === false ? Effect.void : instrument.counter(name, n)
  const Bucket = settings.bucket
  const schedule = Option.getOrElse(settings.retrySchedule, () => Retry.defaultSchedule)

  const send: Ops["send"] = (op, target, run, call) =>
    callSpan(
      Bucket,
      op,
      call,
      Effect.tryPromise({ try: run, catch: (e) => toObjectStoreError(op, target, e) }).pipe(instrument.retry(op, schedule))
    )

  const infoOf = (out: {
    readonly ContentLength?: number | undefined
    readonly ETag?: string | undefined
    readonly LastModified?: Date | undefined
    readonly ContentType?: string | undefined
    readonly Metadata?: Record<string, string> | undefined
  }, size: number): ObjectInfo => ({
    size,
    etag: Option.fromNullable(out.ETag),
    lastModified: Option.fromNullable(out.LastModified),
    contentType: Option.fromNullable(out.ContentType),
    metadata: { ...out.Metadata }
  })

  const head: Ops["head"] = (key, target) =>
    send("HeadObject", target, (signal) =>
      client.send(new S3.HeadObjectCommand({ Bucket, Key: key, ...sse.customer() }), { abortSignal: signal }), { key }).pipe(
        Effect.map((out) => Option.some(infoOf(out, out.ContentLength ?? 0))),
        // A HEAD has no body, so S3 can only say 404: the object (or the bucket) is not there.
        Effect.catchIf((e) => e.reason === "NotFound", () => Effect.succeedNone)
      )

  const open: Ops["open"] = (key, target, range) =>
    Effect.uninterruptibleMask((restore) =>
      restore(send("GetObject", target, (signal) =>
        client.send(
          new S3.GetObjectCommand({
            Bucket,
            Key: key,
            ...(range === undefined ? {} : { Range: `bytes=${range[0]}-${range[1] - 1}` }),
            ...sse.customer()
          }),
          { abortSignal: signal }
        ), { key })).pipe(
          // Registered before anything can interrupt us: the socket is released however the stream ends.
          Effect.tap((out) => Effect.addFinalizer(() => Effect.sync(() => destroyBody(out.Body))))
        )
    ).pipe(Effect.flatMap((out) => {
      const length = out.ContentLength ?? 0
      const served = parseContentRange(out.ContentRange)
      const size = range === undefined ? length : served?.total ?? length
      // What to drop and keep of the body: servers that ignore a range (200) or
      // overshoot it (s3rver serves everything for "bytes=0-0") are trimmed here.
      let skip = 0
      let keep = length
      /** What the body must carry: the whole range asked for (a range never runs past the object's size, checked by callers). */
      let expected = length
      if (range !== undefined) {
        const offset = served?.start ?? 0
        if (offset > range[0]) {
          return Effect.fail(toObjectStoreError("GetObject", target, new Error(
            `the server answered bytes ${out.ContentRange ?? "(whole object)"} for bytes=${range[0]}-${range[1] - 1}`
          )))
        }
        skip = range[0] - offset
        keep = range[1] - range[0]
        expected = keep
        if (served !== undefined && served.total < range[1]) {
          // The object is shorter than the range the caller resolved against its size: it changed meanwhile.
          return Effect.fail(new ObjectStoreError({
            reason: "Conflict",
            backend: BACKEND,
            method: "GetObject",
            description: `GetObject ${target}: the object has ${served.total} bytes now, less than the range bytes=${range[0]}-${
              range[1] - 1
            } asked for`
          }))
        }
      }
      let received = 0
      const body = out.Body === undefined || keep === 0
        ? Stream.empty
        : fromBody(out.Body as unknown as Readable, (e) => toObjectStoreError("GetObject", target, e)).pipe(
          (bytes) => (skip === 0 && keep >= length ? bytes : slice(bytes, skip, keep)),
          Stream.mapChunks((chunk) => {
            for (const c of chunk) received += c.length
            return chunk
          }),
          Stream.ensuring(Effect.suspend(() => countBytes(S3Metrics.bytesIn, received)))
        )
      // Checked once the body ends: Node ends a body whose framing says it is complete, even when
      // a proxy cut it to a shorter Content-Length than the range needs.
      const checked = expected === 0 ? body : Stream.concat(
        body,
        Stream.execute(Effect.suspend(() =>
          received >= expected ? Effect.void : Effect.fail(
            new ObjectStoreError({
              reason: "Corrupted",
              backend: BACKEND,
              method: "GetObject",
              description: `GetObject ${target}: the response body ended after ${received} of the ${expected} bytes ${
                range === undefined ? "of the object" : `in bytes=${range[0]}-${range[1] - 1}`
              }`
            })
          )
        ))
      )
      return Effect.succeed<Opened>({ info: infoOf(out, size), length: expected, body: checked })
    }))

  const conditional = (ifNoneMatch: boolean) => (ifNoneMatch && settings.conditionalWrites ? { IfNoneMatch: "*" } : {})

  const written = <A extends { readonly ETag?: string | undefined }>(
    effect: Effect.Effect<A, ObjectStoreError>
  ): Effect.Effect<WriteOutcome, ObjectStoreError> =>
    effect.pipe(
      Effect.map((out): WriteOutcome => ({ _tag: "Written", etag: Option.fromNullable(out.ETag) })),
      Effect.catchIf(isPreconditionFailed, () => Effect.succeed<WriteOutcome>({ _tag: "Exists" }))
    )

  const headersOf = (headers: WriteHeaders) => ({
    ...(headers.contentType === undefined ? {} : { ContentType: headers.contentType }),
    ...(headers.metadata === undefined ? {} : { Metadata: { ...headers.metadata } })
  })

  const putObject: Ops["putObject"] = (key, target, body, headers, ifNoneMatch) =>
    written(send("PutObject", target, (signal) =>
      client.send(
        new S3.PutObjectCommand({
          Bucket,
          Key: key,
          Body: body,
          ContentLength: body.length,
          ...headersOf(headers),
          ...conditional(ifNoneMatch),
          ...sse.write()
        }),
        { abortSignal: signal }
      ), { key, bytes: body.length })).pipe(
        Effect.tap((outcome) => outcome._tag === "Written" ? countBytes(S3Metrics.bytesOut, body.length) : Effect.void)
      )

  const createMultipart: Ops["createMultipart"] = (key, target, headers) =>
    send("CreateMultipartUpload", target, (signal) =>
      client.send(
        new S3.CreateMultipartUploadCommand({ Bucket, Key: key, ...headersOf(headers), ...sse.write() }),
        { abortSignal: signal }
      ), { key }).pipe(
        Effect.flatMap((out) =>
          out.UploadId === undefined
            ? Effect.fail(toObjectStoreError("CreateMultipartUpload", target, new Error("the server returned no UploadId")))
            : Effect.as(instrument.counter(S3Metrics.multipartUploads), out.UploadId)
        )
      )

  const uploadPart: Ops["uploadPart"] = (key, target, uploadId, partNumber, body) =>
    send("UploadPart", target, (signal) =>
      client.send(
        new S3.UploadPartCommand({
          Bucket,
          Key: key,
          UploadId: uploadId,
          PartNumber: partNumber,
          Body: body,
          ContentLength: body.length,
          ...sse.customer()
        }),
        { abortSignal: signal }
      ), { key, uploadId, partNumber, bytes: body.length }).pipe(
        Effect.tap(() =>
          Effect.all([
            countBytes(S3Metrics.bytesOut, body.length),
            instrument.counter(S3Metrics.multipartParts, 1, { kind: "upload" }),
            instrument.histogram(S3Metrics.partBytes, body.length)
          ], { discard: true })
        ),
        Effect.map((out) => out.ETag ?? "")
      )

  const uploadPartCopy: Ops["uploadPartCopy"] = (key, target, uploadId, partNumber, sourceKey, [start, end]) =>
    send("UploadPartCopy", target, (signal) =>
      client.send(
        new S3.UploadPartCopyCommand({
          Bucket,
          Key: key,
          UploadId: uploadId,
          PartNumber: partNumber,
          CopySource: copySource(Bucket, sourceKey),
          CopySourceRange: `bytes=${start}-${end - 1}`,
          ...sse.customer(),
          ...sse.copySource()
        }),
        { abortSignal: signal }
      ), { key, uploadId, partNumber }).pipe(
        Effect.tap(() => instrument.counter(S3Metrics.multipartParts, 1, { kind: "copy" })),
        Effect.map((out) => out.CopyPartResult?.ETag ?? "")
      )

  const completeMultipart: Ops["completeMultipart"] = (key, target, uploadId, etags, ifNoneMatch, completion) =>
    Effect.suspend(() => {
      let attempts = 0
      const expected = multipartEtag(etags)
      /** Whether the object now at the key is this upload, completed by an attempt whose answer was lost. */
      const landed = head(key, target).pipe(
        Effect.map(Option.filter((info) =>
          Option.exists(expected, (etag) => Option.exists(info.etag, (e) => e.replace(/"/g, "").toLowerCase() === etag)) ||
          (completion?.keyIsOurs === true && info.size === completion.size)
        )),
        // The check is a second chance: if it cannot be made, the completion's own outcome stands.
        Effect.orElseSucceed(() => Option.none<ObjectInfo>()),
        Effect.tap((found) =>
          Option.isSome(found)
            ? Effect.logInfo(`s3: the answer to CompleteMultipartUpload of ${target} was lost; the object is there: completed`)
            : Effect.void
        )
      )
      const asWritten = (info: ObjectInfo): WriteOutcome => ({ _tag: "Written", etag: info.etag })
      return written(send("CompleteMultipartUpload", target, (signal) => {
        attempts++
        return client.send(
          new S3.CompleteMultipartUploadCommand({
            Bucket,
            Key: key,
            UploadId: uploadId,
            MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
            ...conditional(ifNoneMatch),
            ...sse.customer()
          }),
          { abortSignal: signal }
        )
      }, { key, uploadId })).pipe(
        // A retry that finds the key taken may have found our own completed upload.
        Effect.flatMap((outcome) =>
          outcome._tag === "Exists" && attempts > 1
            ? Effect.map(landed, Option.match({ onNone: () => outcome, onSome: asWritten }))
            : Effect.succeed(outcome)
        ),
        // Refused after an attempt the server may have carried out (or every attempt lost): was it done?
        Effect.catchAll((e) =>
          attempts > 1 || e.isTransient
            ? Effect.flatMap(landed, Option.match({ onNone: () => Effect.fail(e), onSome: (info) => Effect.succeed(asWritten(info)) }))
            : Effect.fail(e)
        )
      )
    })

  const abortMultipart: Ops["abortMultipart"] = (key, target, uploadId, why) =>
    send("AbortMultipartUpload", target, (signal) =>
      client.send(new S3.AbortMultipartUploadCommand({ Bucket, Key: key, UploadId: uploadId }), { abortSignal: signal }), { key, uploadId }).pipe(
        // Already gone (completed by a retried request, or aborted before) is what we wanted.
        Effect.catchIf((e) => e.reason === "NotFound", () => Effect.void),
        instrument.observe("AbortMultipartUpload"),
        Effect.matchEffect({
          onSuccess: () =>
            Effect.zipRight(
              instrument.counter(S3Metrics.multipartAborts, 1, { outcome: "success" }),
              Effect.flatMap(Clock.currentTimeMillis, (ms) =>
                instrument.publish(new UploadAborted({ backend: BACKEND, at: new Date(ms), locator: target, uploadId, why })))
            ),
          onFailure: (e) =>
            Effect.zipRight(
              instrument.counter(S3Metrics.multipartAborts, 1, { outcome: "failure" }),
              Effect.logWarning(`s3: could not abort multipart upload of ${target}; parts stay until a lifecycle rule removes them`, e.message)
            )
        })
      )

  const copyObject: Ops["copyObject"] = (sourceKey, key, target, replace) =>
    send("CopyObject", target, (signal) =>
      client.send(
        new S3.CopyObjectCommand({
          Bucket,
          Key: key,
          CopySource: copySource(Bucket, sourceKey),
          MetadataDirective: replace === undefined ? "COPY" : "REPLACE",
          ...(replace === undefined ? {} : headersOf(replace)),
          ...sse.write(),
          ...sse.copySource()
        }),
        { abortSignal: signal }
      ), { key }).pipe(Effect.map((out) => ({
        etag: Option.fromNullable(out.CopyObjectResult?.ETag),
        lastModified: Option.fromNullable(out.CopyObjectResult?.LastModified)
      })))

  const deleteObject: Ops["deleteObject"] = (key, target) =>
    send("DeleteObject", target, (signal) =>
      client.send(new S3.DeleteObjectCommand({ Bucket, Key: key }), { abortSignal: signal }), { key }).pipe(
        Effect.catchIf((e) => e.reason === "NotFound" && nativeOf(e).code !== "NoSuchBucket", () => Effect.void),
        Effect.asVoid
      )

  const listPage: Ops["listPage"] = (prefix, target, token) =>
    send("ListObjectsV2", target, (signal) =>
      client.send(
        new S3.ListObjectsV2Command({
          Bucket,
          Prefix: prefix,
          MaxKeys: 1000,
          ...(token === undefined ? {} : { ContinuationToken: token })
        }),
        { abortSignal: signal }
      ), { key: prefix }).pipe(Effect.map((out) => ({
        objects: out.Contents ?? [],
        next: out.IsTruncated === true ? Option.fromNullable(out.NextContinuationToken) : Option.none()
      })))

  return {
    settings,
    instrument,
    send,
    head,
    open,
    putObject,
    createMultipart,
    uploadPart,
    uploadPartCopy,
    completeMultipart,
    abortMultipart,
    copyObject,
    deleteObject,
    listPage
  }
}
