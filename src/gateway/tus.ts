/**
 * tus 1.0.0 (https://tus.io/protocols/resumable-upload) at `/files/`, on
 * the resumable `Uploads`: core, creation, creation-with-upload,
 * creation-defer-length, termination, checksum (sha256) and expiration.
 *
 *   OPTIONS /files            what the server supports (no token needed)
 *   POST    /files            creates an upload → 201, Location /files/<id>
 *   HEAD    /files/<id>       Upload-Offset, Upload-Length, Upload-Metadata, Upload-Expires
 *   PATCH   /files/<id>       bytes at Upload-Offset → 204 with the new offset
 *   DELETE  /files/<id>       terminates the upload and removes its bytes
 *
 * The offset is the landed prefix of the upload as `Uploads.status` knows
 * it (the RangeTracker plus what the staging proves), so it survives a
 * server restart: a client's HEAD after one says where to resume. A PATCH
 * cut short (client gone, server killed) keeps the segments that landed.
 *
 * When the last byte lands the upload becomes a blob (`Uploads.complete`),
 * and the response carries its key in `Graviton-Key` (also answered by a
 * HEAD afterwards, until the upload's expiry).
 *
 * Beside the Uploads record, the gateway keeps what tus needs and Uploads
 * does not: the length declared later (creation-defer-length), the
 * `Upload-Metadata`, and the key once completed. It lives in the store's
 * KeyValueStore at `uploads/<id>/tus` (Uploads' own listing ignores it).
 *
 * Checksum: a PATCH with `Upload-Checksum: sha256 <base64>` is spooled to a
 * temporary file while it is hashed, and given to Uploads only when it
 * matches; otherwise 460 and nothing of the chunk is kept.
 */
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { createHash, randomUUID } from "node:crypto"
import * as NFS from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as BinaryKey from "../core/BinaryKey.js"
import type * as RangeSet from "../core/RangeSet.js"
import { KeyValueStore } from "../ports/KeyValueStore.js"
import { Uploads } from "../uploads/Uploads.js"
import * as Auth from "./auth.js"
import { boundedBody, contentLength, type GatewayContext } from "./context.js"
import * as Headers from "./headers.js"
import * as Lease from "./lease.js"
import { fail, fromReason, HttpFailure } from "./responses.js"

/** The response header naming the blob a completed upload became. */
export const KEY_HEADER = "graviton-key"

/** The tus version spoken. */
export const VERSION = "1.0.0"

/** Extensions advertised by OPTIONS. */
export const EXTENSIONS = [
  "creation",
  "creation-with-upload",
  "creation-defer-length",
  "termination",
  "checksum",
  "expiration"
] as const

const OFFSET_TYPE = "application/offset+octet-stream"
const ID = /^[0-9a-f]{32}$/

/** Where the tus side of an upload is recorded. */
export const recordKey = (id: string) => `uploads/${id}/tus`

const TusRecord = Schema.Struct({
  v: Schema.Literal(1),
  length: Schema.optional(Schema.NonNegativeInt),
  metadata: Schema.optional(Schema.String),
  expiresAt: Schema.NonNegativeInt,
  key: Schema.optional(Schema.String)
})
type TusRecord = typeof TusRecord.Type
const decodeRecord = Schema.decodeUnknownEither(Schema.parseJson(TusRecord))
const encodeRecord = (r: TusRecord) => new TextEncoder().encode(JSON.stringify(r))

const tusHeaders = { "tus-resumable": VERSION }

const respond = (status: number, headers: Record<string, string>) =>
  HttpServerResponse.empty({ status, headers: { ...tusHeaders, "cache-control": "no-store", ...headers } })

/** The bytes from 0 with no gap: where a tus client continues. */
export const offsetOf = (landed: RangeSet.RangeSet): number =>
  landed.length > 0 && landed[0]!.start === 0 ? landed[0]!.end : 0

const expiresHeader = (at: number) => ({ "upload-expires": new Date(at).toUTCString() })

/** The ports tus runs on, optional in the context: without them the routes answer 501. */
const services = Effect.gen(function*() {
  const uploads = yield* Effect.serviceOption(Uploads)
  const kv = yield* Effect.serviceOption(KeyValueStore)
  if (Option.isNone(uploads) || Option.isNone(kv)) {
    return yield* fail(501, "this store keeps no resumable uploads", tusHeaders)
  }
  return { uploads: uploads.value, kv: kv.value }
})

/** OPTIONS /files[/<id>] */
export const options = (ctx: GatewayContext) =>
  Effect.succeed(respond(204, {
    "tus-version": VERSION,
    "tus-extension": EXTENSIONS.join(","),
    "tus-max-size": String(ctx.settings.maxBodySize),
    "tus-checksum-algorithm": "sha256"
  }))

/** Checks the protocol version and the token every tus request but OPTIONS carries. */
const preamble = (ctx: GatewayContext) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    if (request.headers["tus-resumable"] !== VERSION) {
      return yield* fail(412, `Tus-Resumable must be ${VERSION}`, { "tus-version": VERSION, ...tusHeaders })
    }
    yield* Auth.require(ctx.auth, request, "write")
    return request
  })

const readRecord = (id: string) =>
  Effect.gen(function*() {
    if (!ID.test(id)) return yield* fail(404, `no upload ${id}`, tusHeaders)
    const { kv } = yield* services
    const raw = yield* Effect.mapError(kv.get(recordKey(id)), fromReason)
    if (Option.isNone(raw)) return yield* fail(404, `no upload ${id}`, tusHeaders)
    const record = Either.getOrUndefined(decodeRecord(new TextDecoder().decode(raw.value)))
    if (record === undefined) return yield* fail(500, `the record of upload ${id} is unreadable`, tusHeaders)
    if ((yield* Clock.currentTimeMillis) > record.expiresAt) return yield* fail(410, `upload ${id} has expired`, tusHeaders)
    return record
  })

const writeRecord = (id: string, record: TusRecord) =>
  Effect.flatMap(services, ({ kv }) => Effect.mapError(kv.put(recordKey(id), encodeRecord(record)), fromReason))

const parseLength = (name: string, text: string | undefined) =>
  text === undefined
    ? Effect.succeed(undefined)
    : /^[0-9]+$/.test(text) && Number.isSafeInteger(Number(text))
    ? Effect.succeed(Number(text))
    : fail(400, `${name} must be a non-negative integer`, tusHeaders)

/** Turns the landed upload into a blob and records its key. */
const finish = (id: string, record: TusRecord) =>
  Effect.gen(function*() {
    const { uploads } = yield* services
    const result = yield* uploads.complete(id).pipe(
      Effect.mapError(fromReason),
      // Completed meanwhile by another request (a HEAD elsewhere finishing a crashed PATCH's upload).
      Effect.catchAll((e) =>
        Effect.flatMap(readRecord(id), (now) => (now.key === undefined ? Effect.fail(e) : Effect.succeed(now.key)))
      )
    )
    if (typeof result === "string") return result
    const key = BinaryKey.render(result.key)
    yield* writeRecord(id, { ...record, key })
    return key
  })

/**
 * Writes the PATCH body at `offset` (checked against the landed prefix),
 * completing the upload when its last byte has landed. Returns the new
 * offset and, when complete, the key.
 */
const patchBody = (ctx: GatewayContext, id: string, offset: number) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const { uploads } = yield* services
    // Read under the lease: another process may have completed the upload meanwhile.
    const record = yield* readRecord(id)
    if (record.key !== undefined) {
      // Completed earlier: only the final offset is consistent.
      if (offset !== record.length) return yield* fail(409, `upload ${id} is complete; its offset is ${record.length}`, tusHeaders)
      return { offset, key: record.key }
    }
    const status = yield* Effect.mapError(uploads.status(id), fromReason)
    const current = offsetOf(status.landed)
    if (offset !== current) {
      return yield* fail(409, `Upload-Offset ${offset} is not the upload's offset ${current}`, { ...tusHeaders, "upload-offset": String(current) })
    }
    const room = (record.length ?? ctx.settings.maxBodySize) - offset
    const declared = yield* contentLength(request)
    if (declared !== undefined && declared > room) {
      return yield* fail(413, `the body goes past the upload's length (${room} bytes left)`, tusHeaders)
    }
    const body = boundedBody(request, room).pipe(
      Stream.mapError((e) => (e._tag === "HttpFailure" ? e : new HttpFailure({ status: 400, message: "the request body could not be read" })))
    )
    const checksum = request.headers["upload-checksum"]
    const written = yield* ctx.withUploadPermit(
      checksum === undefined
        ? Effect.mapError(uploads.write(id, offset, body), (e) => (e._tag === "HttpFailure" ? e : fromReason(e)))
        : Effect.scoped(Effect.flatMap(spoolChecked(body, checksum), (spooled) =>
          Effect.mapError(uploads.write(id, offset, spooled), (e) => (e._tag === "HttpFailure" ? e : fromReason(e)))))
    )
    const next = offsetOf(written.status.landed)
    if (record.length !== undefined && next === record.length) {
      return { offset: next, key: yield* finish(id, record) }
    }
    return { offset: next, key: undefined }
  })

/**
 * The body written to a temporary file while it is hashed; the file's
 * bytes once the sha256 matches the `Upload-Checksum`, 460 otherwise.
 */
const spoolChecked = <R>(body: Stream.Stream<Uint8Array, HttpFailure, R>, header: string) =>
  Effect.gen(function*() {
    const parsed = Headers.parseUploadChecksum(header)
    if (parsed === undefined) return yield* fail(400, "Upload-Checksum must be <algorithm> <base64>", tusHeaders)
    if (parsed.algorithm !== "sha256") {
      return yield* fail(400, `checksum algorithm ${parsed.algorithm} is not supported (sha256 is)`, tusHeaders)
    }
    const dir = yield* Effect.acquireRelease(
      Effect.promise(() => NFS.promises.mkdtemp(path.join(os.tmpdir(), "graviton-tus-"))),
      (d) => Effect.promise(() => NFS.promises.rm(d, { recursive: true, force: true }))
    )
    const file = path.join(dir, randomUUID())
    const handle = yield* Effect.acquireRelease(
      Effect.promise(() => NFS.promises.open(file, "w")),
      (h) => Effect.promise(() => h.close())
    )
    const hash = createHash("sha256")
    yield* Stream.runForEach(body, (c) =>
      Effect.promise(() => {
        hash.update(c)
        return handle.write(c)
      }))
    if (hash.digest("hex") !== parsed.hex) {
      return yield* fail(460, "the chunk does not match its Upload-Checksum; nothing of it was kept", tusHeaders)
    }
    return Stream.fromAsyncIterable(
      NFS.createReadStream(file, { highWaterMark: 1024 * 1024 }) as AsyncIterable<Uint8Array>,
      () => new HttpFailure({ status: 500, message: "the spooled chunk could not be read back" })
    )
  })

/** Runs `body` holding the upload's lease (see lease.ts): 423 while another request, in any process, holds it. */
const exclusive = <A, E, R>(ctx: GatewayContext, id: string, body: Effect.Effect<A, E, R>) =>
  Effect.flatMap(services, ({ kv }) => Lease.withLease(kv, id, ctx.settings.uploadLease, body))

/** POST /files */
export const create = (ctx: GatewayContext) =>
  Effect.gen(function*() {
    const request = yield* preamble(ctx)
    const { uploads } = yield* services
    const length = yield* parseLength("Upload-Length", request.headers["upload-length"])
    const defer = request.headers["upload-defer-length"]
    if (length === undefined && defer !== "1") {
      return yield* fail(400, "Upload-Length or Upload-Defer-Length: 1 is required", tusHeaders)
    }
    if (length !== undefined && defer !== undefined) {
      return yield* fail(400, "Upload-Length and Upload-Defer-Length exclude each other", tusHeaders)
    }
    if (length !== undefined && length > ctx.settings.maxBodySize) {
      return yield* fail(413, `Upload-Length is over the largest upload (${ctx.settings.maxBodySize} bytes)`, tusHeaders)
    }
    const metadata = request.headers["upload-metadata"]
    if (metadata !== undefined && Headers.parseUploadMetadata(metadata) === undefined) {
      return yield* fail(400, "Upload-Metadata is not a list of <key> <base64> pairs", tusHeaders)
    }
    const id = yield* Effect.mapError(uploads.begin({ size: length, ttl: ctx.settings.uploadTtl }), fromReason)
    const expiresAt = (yield* Clock.currentTimeMillis) + Duration.toMillis(ctx.settings.uploadTtl)
    const record: TusRecord = {
      v: 1,
      ...(length === undefined ? {} : { length }),
      ...(metadata === undefined ? {} : { metadata }),
      expiresAt
    }
    yield* writeRecord(id, record)
    const base = request.originalUrl.split("?")[0]!.replace(/\/+$/, "")
    const headers: Record<string, string> = { location: `${base}/${id}`, ...expiresHeader(expiresAt) }
    const withBody = request.headers["content-type"] === OFFSET_TYPE
    if (withBody) {
      const done = yield* exclusive(ctx, id, patchBody(ctx, id, 0))
      headers["upload-offset"] = String(done.offset)
      if (done.key !== undefined) headers[KEY_HEADER] = done.key
    } else if (length === 0) {
      headers["upload-offset"] = "0"
      headers[KEY_HEADER] = yield* finish(id, record)
    }
    return respond(201, headers)
  })

/** The state of an upload, completing it when every byte landed but no complete has run (a crash between). */
const state = (id: string) =>
  Effect.gen(function*() {
    const record = yield* readRecord(id)
    if (record.key !== undefined) return { record, offset: record.length ?? 0, key: record.key as string | undefined }
    const { uploads } = yield* services
    const status = yield* Effect.mapError(uploads.status(id), fromReason)
    const offset = offsetOf(status.landed)
    if (record.length !== undefined && offset === record.length) {
      return { record, offset, key: yield* finish(id, record) }
    }
    return { record, offset, key: undefined }
  })

/** HEAD /files/<id> */
export const head = (ctx: GatewayContext, id: string) =>
  Effect.gen(function*() {
    yield* preamble(ctx)
    const { key, offset, record } = yield* state(id)
    return respond(200, {
      "upload-offset": String(offset),
      ...(record.length === undefined ? { "upload-defer-length": "1" } : { "upload-length": String(record.length) }),
      ...(record.metadata === undefined ? {} : { "upload-metadata": record.metadata }),
      ...expiresHeader(record.expiresAt),
      ...(key === undefined ? {} : { [KEY_HEADER]: key })
    })
  })

/** PATCH /files/<id> */
export const patch = (ctx: GatewayContext, id: string) =>
  Effect.gen(function*() {
    const request = yield* preamble(ctx)
    if (request.headers["content-type"] !== OFFSET_TYPE) {
      return yield* fail(415, `a PATCH body must be ${OFFSET_TYPE}`, tusHeaders)
    }
    const offset = yield* parseLength("Upload-Offset", request.headers["upload-offset"])
    if (offset === undefined) return yield* fail(400, "Upload-Offset is required", tusHeaders)
    let record = yield* readRecord(id)
    const length = yield* parseLength("Upload-Length", request.headers["upload-length"])
    if (length !== undefined) {
      if (record.length === undefined) {
        if (length > ctx.settings.maxBodySize) {
          return yield* fail(413, `Upload-Length is over the largest upload (${ctx.settings.maxBodySize} bytes)`, tusHeaders)
        }
        if (length < offset) return yield* fail(400, `Upload-Length ${length} is below the offset ${offset}`, tusHeaders)
        record = { ...record, length }
        yield* writeRecord(id, record)
      } else if (record.length !== length) {
        return yield* fail(400, `the upload's length is already ${record.length}`, tusHeaders)
      }
    }
    const done = yield* exclusive(ctx, id, patchBody(ctx, id, offset))
    return respond(204, {
      "upload-offset": String(done.offset),
      ...expiresHeader(record.expiresAt),
      ...(done.key === undefined ? {} : { [KEY_HEADER]: done.key })
    })
  })

/** DELETE /files/<id> (termination) */
export const terminate = (ctx: GatewayContext, id: string) =>
  Effect.gen(function*() {
    yield* preamble(ctx)
    yield* readRecord(id)
    const { kv, uploads } = yield* services
    yield* exclusive(ctx, id, Effect.mapError(uploads.abort(id), fromReason))
    yield* Effect.mapError(kv.delete(recordKey(id)), fromReason)
    return respond(204, {})
  })

/**
 * Removes every upload lease. Only for a store that one process holds at a
 * time (LevelDB metadata is locked by its process): a lease found there when
 * the server starts was left by a process that died mid-request, and keeping
 * it would answer 423 to the client's resume until it ran out.
 */
export const clearLeases = Effect.gen(function*() {
  const kv = yield* Effect.serviceOption(KeyValueStore)
  if (Option.isNone(kv)) return 0
  let cleared = 0
  yield* kv.value.list("uploads/").pipe(
    Stream.filter(([key]) => key.endsWith("/lease")),
    Stream.runForEach(([key]) => Effect.tap(kv.value.delete(key), () => cleared++))
  )
  return cleared
})

/** Removes expired uploads (Uploads.expire) and the tus records past their expiry. */
export const sweep = Effect.gen(function*() {
  const uploads = yield* Effect.serviceOption(Uploads)
  const kv = yield* Effect.serviceOption(KeyValueStore)
  if (Option.isNone(uploads) || Option.isNone(kv)) return
  yield* sweepWith(uploads.value, kv.value)
})

const sweepWith = (uploads: Uploads["Type"], kv: KeyValueStore["Type"]) => Effect.gen(function*() {
  yield* uploads.expire
  const now = yield* Clock.currentTimeMillis
  yield* kv.list("uploads/").pipe(
    Stream.filter(([key]) => key.endsWith("/tus") || key.endsWith("/lease")),
    Stream.runForEach(([key, raw]) => {
      if (key.endsWith("/lease")) {
        // Left by a crashed holder; compared, so that a lease taken meanwhile stays.
        const lease = Lease.parse(raw)
        return lease === undefined || now > lease.until ? kv.compareAndSet(key, Option.some(raw), Option.none()) : Effect.void
      }
      const record = Either.getOrUndefined(decodeRecord(new TextDecoder().decode(raw)))
      return record === undefined || now > record.expiresAt ? kv.delete(key) : Effect.void
    })
  )
})
