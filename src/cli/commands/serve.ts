/**
 * `graviton serve [--listen HOST:PORT]`: the HTTP gateway (src/gateway,
 * docs/gateway.md) over the store the global options select, with its
 * resumable uploads for tus. Prints the address it listens on, then serves
 * until SIGINT/SIGTERM, which stop it cleanly: no new connections, running
 * transfers get GRAVITON_GATEWAY_SHUTDOWN_GRACE (default 10 s) to finish.
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as HttpServer from "@effect/platform/HttpServer"
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Gateway from "../../gateway/Gateway.js"
import * as GatewayConfig from "../../gateway/GatewayConfig.js"
import * as Tus from "../../gateway/tus.js"
import { describeConfigError, ExitCode, fail } from "../exitCodes.js"
import * as Globals from "../globals.js"
import * as Output from "../output.js"
import { withUploads } from "../session.js"

/** How long main.ts waits after a signal before it stops a command that is still busy; serve raises it to its grace. */
export const signalWatchdog = { delayMs: 1000 }

/** Parses `HOST:PORT` (`[v6]:PORT` for IPv6; `:PORT` = all interfaces). */
export const parseListen = (text: string): { readonly host?: string; readonly port: number } | undefined => {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):([0-9]{1,5})$/.exec(text)
  if (m === null) return undefined
  const port = Number(m[3])
  if (port > 65535) return undefined
  const host = m[1] ?? m[2]
  return host === undefined || host === "" ? { port } : { host, port }
}

const listen = Options.text("listen").pipe(
  Options.withPseudoName("host:port"),
  Options.withDescription("Address to listen on; default: GRAVITON_GATEWAY_LISTEN or 127.0.0.1:8080 (port 0 picks a free one)"),
  Options.optional
)

const env = Config.all({
  listen: Config.string("GRAVITON_GATEWAY_LISTEN").pipe(Config.withDefault("127.0.0.1:8080")),
  grace: Config.duration("GRAVITON_GATEWAY_SHUTDOWN_GRACE").pipe(Config.withDefault(Duration.seconds(10))),
  gateway: GatewayConfig.config
})

/** The `serve` command. */
export const serve = Command.make("serve", { ...Globals.options, listen }, (args) =>
  Effect.gen(function*() {
    const globals = yield* Globals.resolve(args)
    const settings = yield* env.pipe(
      Effect.mapError((e) => fail(ExitCode.Usage, `invalid configuration: ${describeConfigError(e)}`))
    )
    const listenText = Option.getOrElse(args.listen, () => settings.listen)
    const address = parseListen(listenText)
    if (address === undefined) {
      return yield* fail(ExitCode.Usage, `--listen wants HOST:PORT, got ${JSON.stringify(listenText)}`)
    }
    signalWatchdog.delayMs = Duration.toMillis(settings.grace) + 1000
    yield* withUploads(
      globals,
      Effect.gen(function*() {
        // This process holds the home's lock: a lease in it was left by one that died mid-request.
        if (Globals.HOME_STORES.has(globals.store)) yield* Effect.mapError(Tus.clearLeases, (e) => fail(ExitCode.Storage, `cannot open the uploads: ${e.message}`))
        const context = yield* Layer.build(Gateway.layerNode({ ...settings.gateway, ...address, shutdownGrace: settings.grace })).pipe(
          Effect.mapError((e) => fail(ExitCode.Storage, `cannot listen on ${listenText}: ${String(e.cause ?? e)}`))
        )
        const server = Context.get(context, HttpServer.HttpServer)
        const url = HttpServer.formatAddress(server.address)
        yield* globals.json ? Output.json({ listening: url }) : Output.line(`listening on ${url}`)
        return yield* Effect.never
      })
    )
  })).pipe(
    Command.withDescription("Serve the store over HTTP: blobs with Range and caching, tus uploads, /metrics (docs/gateway.md)")
  )
