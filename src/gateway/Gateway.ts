/**
 * The HTTP gateway: blobs (blobs.ts), tus uploads (tus.ts) and operations
 * (operations.ts) on @effect/platform's HttpRouter, over the BlobStore in
 * the context (and, for tus, the Uploads and KeyValueStore when present).
 *
 *   makeRouter(options)   the routes, to mount in an application's own router
 *   layer(options)        serves them on the HttpServer in the context
 *   layerNode(options)    the same on a Node HTTP server, with a clean
 *                         shutdown (stop accepting, let transfers finish up
 *                         to `shutdownGrace`, then cut them: their uploads
 *                         stay resumable)
 *   layerConfig(config)   layerNode from GRAVITON_GATEWAY_* settings
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Predicate from "effect/Predicate"
import * as Schedule from "effect/Schedule"
import * as Http from "node:http"
import * as Blobs from "./blobs.js"
import * as GatewayContext from "./context.js"
import * as Cors from "./cors.js"
import * as GatewayConfig from "./GatewayConfig.js"
import * as Operations from "./operations.js"
import * as Page from "./page.js"
import { HttpFailure, fromReason, toResponse } from "./responses.js"
import * as Tus from "./tus.js"

export { KEY_HEADER } from "./tus.js"

/** Any failure of a route as a response: HttpFailure as it says, storage errors by reason, anything else 500. */
const answer = (e: unknown): HttpServerResponse.HttpServerResponse => {
  if (e instanceof HttpFailure) return toResponse(e)
  if (Predicate.hasProperty(e, "reason") && typeof e.reason === "string" && Predicate.hasProperty(e, "message")) {
    return toResponse(fromReason(e as never))
  }
  return toResponse(new HttpFailure({ status: 500, message: "internal error" }))
}

/** The routes and the context they share. */
const build = (options: GatewayConfig.Options) =>
  Effect.gen(function*() {
    const ctx = yield* GatewayContext.make(options)
    const timeout = ctx.settings.requestTimeout
    const handle = <E, R>(route: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>) =>
      route.pipe(
        Effect.timeoutFail({
          duration: timeout,
          onTimeout: () => new HttpFailure({ status: 408, message: "the request took too long", headers: { connection: "close" } })
        }),
        Effect.catchAll((e) => Effect.succeed(answer(e)))
      )
    const withParam = <E, R>(
      name: string,
      route: (value: string) => Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>
    ) => Effect.flatMap(HttpRouter.params, (params) => handle(route(params[name] ?? "")))
    return HttpRouter.empty.pipe(
      HttpRouter.post("/blobs", handle(Blobs.put(ctx))),
      HttpRouter.put("/blobs", handle(Blobs.put(ctx))),
      HttpRouter.get("/blobs", handle(Blobs.list(ctx))),
      // HEAD is routed to GET; the handler answers it without a body.
      HttpRouter.get("/blobs/:key", withParam("key", (key) => Blobs.get(ctx, key))),
      HttpRouter.del("/blobs/:key", withParam("key", (key) => Blobs.remove(ctx, key))),
      // The router ignores a trailing slash: "/files" is "/files/" too.
      HttpRouter.options("/files", handle(Tus.options(ctx))),
      HttpRouter.options("/files/:id", handle(Tus.options(ctx))),
      HttpRouter.post("/files", handle(Tus.create(ctx))),
      HttpRouter.head("/files/:id", withParam("id", (id) => Tus.head(ctx, id))),
      HttpRouter.patch("/files/:id", withParam("id", (id) => Tus.patch(ctx, id))),
      HttpRouter.del("/files/:id", withParam("id", (id) => Tus.terminate(ctx, id))),
      HttpRouter.get("/", Page.page),
      HttpRouter.get("/healthz", Operations.healthz),
      HttpRouter.get("/readyz", Operations.readyz),
      HttpRouter.get("/metrics", Operations.metrics(ctx)),
      (router) => ({ router, ctx })
    )
  })

/** The gateway's routes (see the module comment), to mount in an application's router; build once per server. */
export const makeRouter = (options: GatewayConfig.Options = {}) => Effect.map(build(options), ({ router }) => router)

/**
 * CORS for `origins` (see cors.ts), as middleware for an app that mounts
 * `makeRouter` in its own router (`makeApp` and the layers apply it from
 * the options' `corsOrigins`).
 */
export const cors = Cors.middleware

/** The gateway as an HttpApp, with the request metrics and CORS. */
export const makeApp = (options: GatewayConfig.Options = {}) =>
  Effect.flatMap(build(options), ({ ctx, router }) =>
    Effect.map(HttpRouter.toHttpApp(router), (app) =>
      Operations.observe(ctx)(Cors.middleware(ctx.settings.corsOrigins)(
        Effect.catchTag(app, "RouteNotFound", () => Effect.succeed(toResponse(new HttpFailure({ status: 404, message: "no such route" }))))
      ))))

/** Expired uploads are removed this often. */
const SWEEP_EVERY = Duration.minutes(10)

/** Serves the gateway on the HttpServer in the context, sweeping expired uploads in the background. */
export const layer = (options: GatewayConfig.Options = {}) =>
  Layer.unwrapEffect(Effect.map(makeApp(options), (app) => HttpServer.serve(app))).pipe(
    Layer.merge(Layer.scopedDiscard(Effect.forkScoped(
      Tus.sweep.pipe(Effect.ignore, Effect.repeat(Schedule.spaced(SWEEP_EVERY)))
    )))
  )

/** Where a Node server listens, and how long a shutdown waits for transfers. */
export interface NodeOptions extends GatewayConfig.Options {
  readonly host?: string | undefined
  /** 0 picks a free port (see HttpServer's address). */
  readonly port: number
  /** How long a shutdown lets running transfers finish before cutting them (default 10 seconds). */
  readonly shutdownGrace?: Duration.DurationInput | undefined
}

/**
 * On a Node HTTP server. Closing the layer stops accepting connections,
 * waits up to `shutdownGrace` for the running requests, then cuts the
 * connections left.
 */
export const layerNode = (options: NodeOptions) =>
  Layer.unwrapEffect(Effect.sync(() => {
    const server = Http.createServer()
    const grace = Duration.toMillis(Duration.decode(options.shutdownGrace ?? Duration.seconds(10)))
    // Built after the server, so released before it: the deadline is armed before `close` starts waiting.
    const deadline = Layer.scopedDiscard(Effect.addFinalizer(() =>
      Effect.sync(() => {
        setTimeout(() => server.closeAllConnections(), grace).unref()
        server.closeIdleConnections()
      })
    ))
    const http = NodeHttpServer.layer(() => server, {
      port: options.port,
      ...(options.host === undefined ? {} : { host: options.host })
    })
    return Layer.mergeAll(layer(options), deadline).pipe(Layer.provideMerge(http))
  }))

/** The options of `layerNode` from the environment (GRAVITON_GATEWAY_*), listening where `listen` says. */
export const config = (listen: { readonly host?: string | undefined; readonly port: number }): Config.Config<NodeOptions> =>
  Config.map(GatewayConfig.config, (options) => ({ ...options, ...listen }))

/** `layerNode` from a config. */
export const layerConfig = (config: Config.Config<NodeOptions>) => Layer.unwrapEffect(Effect.map(config, layerNode))

