/**
 * Operations routes and the request metrics:
 *
 *   GET /healthz   200 while the process serves
 *   GET /readyz    200 when the store answers (a stat and, where there is
 *                  one, a key-value read), 503 otherwise
 *   GET /metrics   the MetricsRegistry in Prometheus text: the store's own
 *                  series plus graviton_http_requests_total and
 *                  graviton_http_request_duration_seconds by route, method
 *                  and status
 */
import type * as HttpApp from "@effect/platform/HttpApp"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as BinaryKey from "../core/BinaryKey.js"
import { BlobStore } from "../ports/BlobStore.js"
import { KeyValueStore } from "../ports/KeyValueStore.js"
import * as Prometheus from "../kit/Prometheus.js"
import type { GatewayContext } from "./context.js"

/** Counter of requests by route, method and status. */
export const REQUESTS = "graviton_http_requests_total"
/** Histogram of request durations in seconds (to the response's headers), by route, method and status. */
export const DURATION = "graviton_http_request_duration_seconds"

/** The key of the empty content: a stat of it touches the store's metadata without needing a blob. */
const probeKey = BinaryKey.parse("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855:0")

/** GET /healthz */
export const healthz = Effect.succeed(HttpServerResponse.text("ok\n", { headers: { "cache-control": "no-store" } }))

/** GET /readyz */
export const readyz = Effect.gen(function*() {
  const store = yield* BlobStore
  const kv = yield* Effect.serviceOption(KeyValueStore)
  const key = probeKey._tag === "Right" ? probeKey.right : undefined
  const checks = Effect.all([
    key === undefined ? Effect.void : store.stat(key),
    Option.match(kv, { onNone: () => Effect.void, onSome: (k) => k.get("uploads/readyz") })
  ], { concurrency: 2 })
  const exit = yield* Effect.exit(Effect.timeoutFail(checks, { duration: Duration.seconds(5), onTimeout: () => "timeout" }))
  return Exit.isSuccess(exit)
    ? HttpServerResponse.text("ready\n", { headers: { "cache-control": "no-store" } })
    : HttpServerResponse.text("not ready: the store does not answer\n", { status: 503, headers: { "cache-control": "no-store" } })
})

/** GET /metrics */
export const metrics = (ctx: GatewayContext) =>
  Effect.map(
    Option.match(ctx.metrics, { onNone: () => Effect.succeed(""), onSome: (m) => m.prometheus }),
    (text) => HttpServerResponse.text(text, { headers: { "content-type": Prometheus.contentType, "cache-control": "no-store" } })
  )

/** The route a path belongs to, as a metric label (a bounded set: never the key or id itself). */
export const routeOf = (url: string): string => {
  const p = url.split("?")[0]!
  if (p === "/blobs" || p === "/blobs/") return "/blobs"
  if (p.startsWith("/blobs/")) return "/blobs/:key"
  if (p === "/files" || p === "/files/") return "/files"
  if (p.startsWith("/files/")) return "/files/:id"
  if (p === "/healthz" || p === "/readyz" || p === "/metrics" || p === "/") return p
  return "other"
}

/** Middleware: counts every request and times it, by route, method and status (499 when the client left). */
export const observe = (ctx: GatewayContext) => <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> =>
  Option.match(ctx.metrics, {
    onNone: () => app,
    onSome: (m) =>
      Effect.gen(function*() {
        const request = yield* HttpServerRequest.HttpServerRequest
        const started = yield* Clock.currentTimeNanos
        const exit = yield* Effect.exit(app)
        const seconds = Number((yield* Clock.currentTimeNanos) - started) / 1e9
        const status = Exit.isSuccess(exit) ? String(exit.value.status) : Exit.isInterrupted(exit) ? "499" : "500"
        const tags = { route: routeOf(request.url), method: request.method, status }
        yield* m.counter(REQUESTS, 1, tags)
        yield* m.histogram(DURATION, seconds, tags)
        return yield* exit
      })
  })
