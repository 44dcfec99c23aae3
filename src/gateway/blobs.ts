/**
 * The blob routes:
 *
 *   POST|PUT /blobs[?key=K]   body streamed into BlobStore.put → 201, Location, {key, size, deduplicated}
 *   GET|HEAD /blobs/<key>     streamed and verified; ETag, immutable caching, If-None-Match, one Range
 *   DELETE   /blobs/<key>     204 (also when absent)
 *   GET      /blobs?after=K&limit=N   a page of stored blobs ordered by key text
 *
 * An expected content (`?key=`, or a sha-256 in `Repr-Digest` /
 * `Content-Digest`) is checked before the blob is published: a mismatch
 * stores nothing. The body limit is enforced as the bytes arrive.
 *
 * A full read is verified by the store after its last byte; the gateway
 * holds that last chunk back until the store has said the bytes are right,
 * and cuts the connection when it says they are not. So a client never
 * receives a complete response with bad bytes.
 */
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { createHash } from "node:crypto"
import * as BinaryKey from "../core/BinaryKey.js"
import type { BlobStat, BlobWritePlan } from "../core/Models.js"
import { BlobStore } from "../ports/BlobStore.js"
import * as Auth from "./auth.js"
import { abortConnection, boundedBody, contentLength, count, type GatewayContext } from "./context.js"
import * as Headers from "./headers.js"
import { fail, fromReason, HttpFailure } from "./responses.js"

/** Counter of reads cut because the stored bytes did not match their key. */
export const CORRUPTED_READS = "graviton_gateway_corrupted_reads_total"

/** Cache-Control of a blob: its bytes never change under its key. */
export const IMMUTABLE = "public, max-age=31536000, immutable"

/** The path of a blob, relative to where the gateway is mounted. */
export const blobPath = (key: BinaryKey.BinaryKey | string) => `/blobs/${String(key)}`

const decoded = (text: string): string => {
  try {
    return decodeURIComponent(text)
  } catch {
    return text
  }
}

const parseKey = (text: string | undefined): Effect.Effect<BinaryKey.BinaryKey, HttpFailure> =>
  Either.match(BinaryKey.parse(decoded(text ?? "")), {
    onLeft: (e) => fail(400, e.message),
    onRight: Effect.succeed
  })

/** The key the body must have: from `?key=`, or from a sha-256 digest field and the Content-Length. */
const expectedKeyOf = (request: HttpServerRequest.HttpServerRequest, length: number | undefined, query: URLSearchParams) =>
  Effect.gen(function*() {
    const keyText = query.get("key")
    const fromQuery = keyText === null ? undefined : yield* parseKey(keyText)
    const digests = [request.headers["repr-digest"], request.headers["content-digest"]].map(Headers.sha256FromDigestField)
    const bad = digests.find((d) => d instanceof Error)
    if (bad instanceof Error) return yield* fail(400, bad.message)
    const hex = digests.find((d): d is string => typeof d === "string")
    if (fromQuery !== undefined && length !== undefined && fromQuery.size !== length) {
      return yield* fail(400, `the body is ${length} bytes and the key ${fromQuery} says ${fromQuery.size}; nothing was stored`)
    }
    if (fromQuery !== undefined && hex !== undefined && (fromQuery.algorithm !== "sha256" || fromQuery.digest !== hex)) {
      return yield* fail(400, "the digest header and ?key= name different contents; nothing was stored")
    }
    if (fromQuery !== undefined) return { key: fromQuery, digest: undefined }
    if (hex === undefined) return { key: undefined, digest: undefined }
    if (length !== undefined) {
      return { key: Either.getOrUndefined(BinaryKey.make("sha256", hex, length)), digest: undefined }
    }
    // No length to make a key with: the digest is checked here as the body ends (see checkDigest).
    return { key: undefined, digest: hex }
  })

/** Fails the body at its end (before the store sees the end, so nothing is published) when its sha-256 differs. */
const checkDigest = <E, R>(body: Stream.Stream<Uint8Array, E, R>, hex: string): Stream.Stream<Uint8Array, E | HttpFailure, R> =>
  Stream.suspend(() => {
    const hash = createHash("sha256")
    return Stream.concat(
      Stream.mapChunks(body, (chunks) => {
        for (const c of chunks) hash.update(c)
        return chunks
      }),
      Stream.execute(Effect.suspend(() =>
        hash.digest("hex") === hex
          ? Effect.void
          : fail(400, "the body does not match the digest header; nothing was stored")
      ))
    )
  })

/** POST|PUT /blobs */
export const put = (ctx: GatewayContext) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const store = yield* BlobStore
    yield* Auth.require(ctx.auth, request, "write")
    const max = ctx.settings.maxBodySize
    const length = yield* contentLength(request)
    if (length !== undefined && length > max) {
      // Node discards the unread body after the response, so the client can read this answer.
      return yield* fail(413, `the body (${length} bytes) is larger than ${max} bytes; nothing was stored`)
    }
    const query = new URL(request.url, "http://gateway").searchParams
    const expected = yield* expectedKeyOf(request, length, query)
    const plan: BlobWritePlan = expected.key === undefined ? {} : { expectedKey: expected.key }
    const body = boundedBody(request, max).pipe(
      Stream.mapError((e) =>
        e._tag === "HttpFailure" ? e : new HttpFailure({ status: 400, message: "the request body could not be read" })
      )
    )
    const checked = expected.digest === undefined ? body : checkDigest(body, expected.digest)
    const result = yield* ctx.withUploadPermit(Stream.run(checked, store.put(plan))).pipe(
      Effect.mapError((e) =>
        e._tag === "HttpFailure"
          ? e
          // With an expected key, InvalidInput from the store is a mismatch: nothing was stored.
          : fromReason(e)
      )
    )
    const location = `${mountPrefix(request)}${blobPath(result.key)}`
    return yield* HttpServerResponse.json(
      { key: BinaryKey.render(result.key), size: result.size, deduplicated: result.deduplicated },
      { status: 201, headers: { location, etag: Headers.etagOf(BinaryKey.render(result.key)) } }
    ).pipe(Effect.orDie)
  })

/** The path the gateway is mounted under (empty at the root): the original URL minus the routed one. */
export const mountPrefix = (request: HttpServerRequest.HttpServerRequest): string => {
  const path = (u: string) => u.split("?")[0]!
  const original = path(request.originalUrl)
  const routed = path(request.url)
  return original.endsWith(routed) ? original.slice(0, original.length - routed.length) : ""
}

/**
 * Holds the last chunk back until the stream has ended well, and fails
 * when more than `length` bytes come: the store verifies a full read after
 * its last chunk, so a failure then still leaves the response short.
 */
export const holdLast = <E, R, X>(
  bytes: Stream.Stream<Uint8Array, E, R>,
  length: number,
  tooLong: () => X
): Stream.Stream<Uint8Array, E | X, R> =>
  Stream.suspend(() => {
    let held: Uint8Array | undefined
    let seen = 0
    return Stream.concat(
      Stream.mapChunksEffect(bytes, (chunks) => {
        const out: Array<Uint8Array> = []
        for (const c of chunks) {
          if (c.length === 0) continue
          seen += c.length
          if (held !== undefined) out.push(held)
          held = c
        }
        return seen > length ? Effect.fail(tooLong()) : Effect.succeed(Chunk.unsafeFromArray(out))
      }),
      Stream.suspend(() => (held === undefined ? Stream.empty : Stream.make(held)))
    )
  })

const blobHeaders = (key: BinaryKey.BinaryKey) => ({
  etag: Headers.etagOf(BinaryKey.render(key)),
  "cache-control": IMMUTABLE,
  "accept-ranges": "bytes"
})

/** GET|HEAD /blobs/<key> */
export const get = (ctx: GatewayContext, keyText: string | undefined) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const store = yield* BlobStore
    yield* Auth.require(ctx.auth, request, "read")
    const key = yield* parseKey(keyText)
    const stat = yield* Effect.mapError(store.stat(key), fromReason)
    if (Option.isNone(stat)) return yield* fail(404, `no blob ${key}`)
    const size = key.size
    const headers = blobHeaders(key)
    if (Headers.matchesEtag(request.headers["if-none-match"], headers.etag)) {
      return HttpServerResponse.empty({ status: 304, headers })
    }
    const ifRange = request.headers["if-range"]
    const range = ifRange === undefined || Headers.matchesEtag(ifRange, headers.etag)
      ? Headers.parseRange(request.headers["range"], size)
      : { _tag: "Whole" as const }
    if (range._tag === "Unsatisfiable") {
      return yield* fail(416, `the range is outside the blob's ${size} bytes`, { "content-range": `bytes */${size}` })
    }
    const [start, end, status] = range._tag === "Partial" ? [range.start, range.end, 206] : [0, size, 200]
    const partial = range._tag === "Partial" ? { "content-range": `bytes ${start}-${end - 1}/${size}` } : {}
    const all = { ...headers, ...partial, "content-type": "application/octet-stream", "content-length": String(end - start) }
    if (request.method === "HEAD" || end === start) return HttpServerResponse.empty({ status, headers: all })
    const bytes = store.get(key, range._tag === "Partial" ? { start, end } : undefined)
    const guarded = holdLast(bytes, end - start, () =>
      new HttpFailure({ status: 500, message: `the stored bytes of ${key} are longer than its key says` })).pipe(
        Stream.tapError((e) =>
          Effect.gen(function*() {
            const corrupted = e._tag === "HttpFailure" || e.reason === "Corrupted"
            if (corrupted) yield* count(ctx, CORRUPTED_READS)
            yield* Effect.logWarning(`GET ${key}: transfer cut: ${e.message}`)
            yield* abortConnection(request)
          })
        )
      )
    return HttpServerResponse.stream(guarded, { status, headers: all, contentLength: end - start })
  })

/** DELETE /blobs/<key> */
export const remove = (ctx: GatewayContext, keyText: string | undefined) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const store = yield* BlobStore
    yield* Auth.require(ctx.auth, request, "delete")
    const key = yield* parseKey(keyText)
    yield* Effect.mapError(store.delete(key), fromReason)
    return HttpServerResponse.empty({ status: 204 })
  })

/**
 * GET /blobs: the `limit` smallest keys (as text) after `after`. The store
 * lists in no order, so each page is one pass over the listing keeping the
 * best `limit` entries (memory bounded by the page).
 */
export const list = (ctx: GatewayContext) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const store = yield* BlobStore
    yield* Auth.require(ctx.auth, request, "read")
    const query = new URL(request.url, "http://gateway").searchParams
    const after = query.get("after") ?? ""
    const limitText = query.get("limit") ?? "100"
    if (!/^[0-9]+$/.test(limitText) || Number(limitText) < 1) return yield* fail(400, "limit must be a positive integer")
    const limit = Math.min(Number(limitText), ctx.settings.maxPage)
    const page: Array<{ readonly text: string; readonly stat: BlobStat }> = []
    let more = false
    yield* store.list.pipe(
      Stream.runForEach((stat) =>
        Effect.sync(() => {
          const text = BinaryKey.render(stat.key)
          if (text <= after) return
          if (page.length === limit && text >= page[limit - 1]!.text) {
            more = true
            return
          }
          const at = page.findIndex((p) => p.text > text)
          page.splice(at < 0 ? page.length : at, 0, { text, stat })
          if (page.length > limit) {
            page.pop()
            more = true
          }
        })
      ),
      Effect.mapError(fromReason)
    )
    return yield* HttpServerResponse.json({
      blobs: page.map(({ stat, text }) => ({
        key: text,
        size: stat.size,
        createdAt: Option.getOrNull(Option.map(stat.createdAt, (d) => d.toISOString()))
      })),
      next: more && page.length > 0 ? page[page.length - 1]!.text : null
    }, { headers: { "cache-control": "no-store" } }).pipe(Effect.orDie)
  })
