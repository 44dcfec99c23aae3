/**
 * What every route of the gateway works with, built once per server: the
 * settings, the prepared tokens, the permits of concurrent uploads and the
 * metrics registry (optional), plus the small stream helpers the routes
 * share.
 */
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as Http from "node:http"
import * as Lending from "../core/Lending.js"
import { MetricsRegistry } from "../ports/MetricsRegistry.js"
import * as Auth from "./auth.js"
import * as GatewayConfig from "./GatewayConfig.js"
import { HttpFailure } from "./responses.js"

/** The record every route takes. */
export interface GatewayContext {
  readonly settings: GatewayConfig.Settings
  readonly auth: Auth.Auth
  /** Runs an upload if a permit is free; 503 otherwise. */
  readonly withUploadPermit: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | HttpFailure, R>
  readonly metrics: Option.Option<MetricsRegistry["Type"]>
}

/** Builds the context from options. */
export const make = (options: GatewayConfig.Options): Effect.Effect<GatewayContext> =>
  Effect.gen(function*() {
    const settings = GatewayConfig.settings(options)
    const permits = yield* Effect.makeSemaphore(settings.maxConcurrentUploads)
    const metrics = yield* Effect.serviceOption(MetricsRegistry)
    const busy = new HttpFailure({
      status: 503,
      message: `the server is running its ${settings.maxConcurrentUploads} concurrent uploads; retry later`,
      headers: { "retry-after": "1" }
    })
    return {
      settings,
      auth: Auth.make(settings),
      withUploadPermit: <A, E, R>(effect: Effect.Effect<A, E, R>) =>
        Effect.flatMap(
          permits.withPermitsIfAvailable(1)(effect),
          Option.match({ onNone: () => Effect.fail(busy), onSome: Effect.succeed })
        ),
      metrics
    }
  })

/** Adds to a counter of the registry, when there is one. */
export const count = (ctx: GatewayContext, name: string, tags?: Record<string, string>) =>
  Option.match(ctx.metrics, { onNone: () => Effect.void, onSome: (m) => m.counter(name, 1, tags) })

/** Size of the chunks a request body is handed to the store in. */
export const BODY_CHUNK = 1024 * 1024

/**
 * `stream` in chunks of `size` bytes (the last one shorter). Node reads a
 * socket 64 KiB at a time, and the store's writes cost per chunk (each one
 * a step of its pipeline): 1 MiB chunks measured 1.5 to 2.5 times faster
 * through Uploads.write. The buffers are lent (core/Lending.ts): the
 * store's file writes give them back, so the copy makes no garbage.
 */
export const coalesce = <E, R>(stream: Stream.Stream<Uint8Array, E, R>, size = BODY_CHUNK): Stream.Stream<Uint8Array, E, R> =>
  Stream.suspend(() => {
    const pool = new Lending.Pool(size)
    let buffer: Buffer | undefined
    let filled = 0
    const full = Stream.mapChunks(stream, (chunks) => {
      const out: Array<Uint8Array> = []
      for (const c of chunks) {
        for (let at = 0; at < c.length;) {
          buffer ??= pool.take()
          const n = Math.min(size - filled, c.length - at)
          buffer.set(n === c.length ? c : c.subarray(at, at + n), filled)
          filled += n
          at += n
          if (filled === size) {
            out.push(pool.lend(buffer, size))
            buffer = undefined
            filled = 0
          }
        }
      }
      return Chunk.unsafeFromArray(out)
    })
    const rest = Stream.suspend(() => (buffer === undefined || filled === 0 ? Stream.empty : Stream.make(pool.lend(buffer, filled))))
    return Stream.concat(full, rest)
  })

/**
 * The request body in chunks of BODY_CHUNK bytes, failing with 413 as soon
 * as it goes past `max` bytes (nothing past it is read).
 */
export const boundedBody = (
  request: HttpServerRequest.HttpServerRequest,
  max: number
) =>
  coalesce(Stream.suspend(() => {
    let seen = 0
    return Stream.mapChunksEffect(request.stream, (chunks) => {
      for (const c of chunks) seen += c.length
      return seen > max
        ? Effect.fail(new HttpFailure({ status: 413, message: `the body is larger than ${max} bytes; nothing was stored`, headers: { connection: "close" } }))
        : Effect.succeed(chunks)
    })
  }))

/** The declared Content-Length, if any (400 when it is not a number). */
export const contentLength = (request: HttpServerRequest.HttpServerRequest): Effect.Effect<number | undefined, HttpFailure> => {
  const text = request.headers["content-length"]
  if (text === undefined) return Effect.succeed(undefined)
  return /^[0-9]+$/.test(text)
    ? Effect.succeed(Number(text))
    : Effect.fail(new HttpFailure({ status: 400, message: "the Content-Length is not a number" }))
}

/**
 * Cuts the connection under a response being streamed: the client sees a
 * truncated transfer instead of a complete one. Only the Node platform
 * gives the socket; elsewhere the response just ends short.
 */
export const abortConnection = (request: HttpServerRequest.HttpServerRequest): Effect.Effect<void> =>
  Effect.sync(() => {
    const source = (request as unknown as { readonly source?: unknown }).source
    if (source instanceof Http.IncomingMessage) source.socket.destroy()
  })
