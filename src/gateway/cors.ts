/**
 * CORS, for browsers on other origins (a page elsewhere running
 * tus-js-client or Uppy against the gateway). Off by default: with no
 * allowed origins the gateway answers no CORS header, and browsers allow
 * only same-origin use (the page at `/`).
 *
 * With allowed origins (exact `scheme://host[:port]` values, or `*` for
 * any):
 * - a preflight (`OPTIONS` with `Access-Control-Request-Method`) from an
 *   allowed origin is answered here, 204, with the methods and request
 *   headers the routes take; from another origin, 403;
 * - every other response to an allowed origin carries
 *   `Access-Control-Allow-Origin` and exposes the headers clients read
 *   (`Location`, `Upload-Offset`, `Graviton-Key` ...);
 * - every response says `Vary: Origin` (unless `*`), so that a cache in
 *   front does not hand one origin's answer to another.
 * No credentials (cookies) are allowed: the gateway takes bearer tokens.
 */
import * as HttpApp from "@effect/platform/HttpApp"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"
import { KEY_HEADER } from "./tus.js"

/** Any origin. */
const ANY = "*"

/** Methods a preflight is told the routes take. */
export const ALLOWED_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] as const

/** Request headers a preflight is told the routes read. */
export const ALLOWED_HEADERS = [
  "Authorization",
  "Content-Type",
  "Range",
  "If-None-Match",
  "If-Range",
  "Repr-Digest",
  "Content-Digest",
  "Tus-Resumable",
  "Upload-Length",
  "Upload-Offset",
  "Upload-Metadata",
  "Upload-Defer-Length",
  "Upload-Checksum",
  "X-Requested-With"
] as const

/** Response headers a script on an allowed origin may read. */
export const EXPOSED_HEADERS = [
  "Location",
  "ETag",
  "Content-Range",
  "Accept-Ranges",
  "Retry-After",
  "WWW-Authenticate",
  "Tus-Resumable",
  "Tus-Version",
  "Tus-Extension",
  "Tus-Max-Size",
  "Tus-Checksum-Algorithm",
  "Upload-Offset",
  "Upload-Length",
  "Upload-Defer-Length",
  "Upload-Metadata",
  "Upload-Expires",
  KEY_HEADER
] as const

/** How long a browser may keep a preflight's answer, in seconds. */
const MAX_AGE = 600

const preflightHeaders = {
  "access-control-allow-methods": ALLOWED_METHODS.join(", "),
  "access-control-allow-headers": ALLOWED_HEADERS.join(", "),
  "access-control-max-age": String(MAX_AGE),
  "cache-control": "no-store"
}
const exposeHeaders = { "access-control-expose-headers": EXPOSED_HEADERS.join(", ") }

/** Middleware answering CORS for `origins` (no-op when empty). */
export const middleware = (origins: ReadonlyArray<string>) => <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> => {
  if (origins.length === 0) return app
  const any = origins.includes(ANY)
  const allowed = new Set(origins)
  const vary: Record<string, string> = any ? {} : { vary: "Origin" }
  const allowOrigin = (origin: string): Record<string, string> => ({ "access-control-allow-origin": any ? ANY : origin, ...vary })
  return Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
    const origin = request.headers["origin"]
    const ok = origin !== undefined && (any || allowed.has(origin))
    if (request.method === "OPTIONS" && origin !== undefined && request.headers["access-control-request-method"] !== undefined) {
      return Effect.succeed(
        ok
          ? HttpServerResponse.empty({ status: 204, headers: { ...allowOrigin(origin), ...preflightHeaders } })
          : HttpServerResponse.unsafeJson(
            { error: `origin ${origin} is not allowed`, status: 403 },
            { status: 403, headers: { ...vary, "cache-control": "no-store" } }
          )
      )
    }
    const extra = ok ? { ...allowOrigin(origin), ...exposeHeaders } : vary
    return Effect.zipRight(
      HttpApp.appendPreResponseHandler((_, response) => Effect.succeed(HttpServerResponse.setHeaders(response, extra))),
      app
    )
  })
}
