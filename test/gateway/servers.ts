/**
 * Gateways for the tests: one in this process over an embedded store in a
 * temporary home (the tests talk to it over real HTTP with Node's fetch),
 * or `graviton serve` as a child process (to be SIGKILLed).
 */
import * as HttpServer from "@effect/platform/HttpServer"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Redacted from "effect/Redacted"
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as Gateway from "../../src/gateway/Gateway.js"
import type * as GatewayConfig from "../../src/gateway/GatewayConfig.js"
import * as EmbeddedStore from "../../src/stores/EmbeddedStore.js"

export const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..")

/** Tokens of the test servers: a writer with every scope, and a reader. */
export const WRITER = "writer-token-0123456789"
export const READER = "reader-token-9876543210"
export const tokens: ReadonlyArray<GatewayConfig.Token> = [
  { token: Redacted.make(WRITER), scopes: new Set(["read", "write", "delete"]) },
  { token: Redacted.make(READER), scopes: new Set(["read"]) }
]
export const TOKENS_ENV = `read,write,delete:${WRITER};read:${READER}`

export const writer = { authorization: `Bearer ${WRITER}` }
export const reader = { authorization: `Bearer ${READER}` }

/** Bytes as a fetch body (TypeScript's DOM types want an ArrayBuffer-backed view; Node takes any). */
export const bodyOf = (bytes: Uint8Array): BodyInit => bytes as unknown as BodyInit

/** A fresh temporary directory, removed by `cleanup`. */
export const tempHome = (label: string): string => fs.mkdtempSync(path.join(os.tmpdir(), `graviton-gateway-${label}-`))

/** A gateway in this process over an embedded store at `home`. */
export interface InProcess {
  readonly url: string
  readonly home: string
  readonly close: () => Promise<void>
}

export const startInProcess = async (
  home: string,
  options: GatewayConfig.Options = {}
): Promise<InProcess> => {
  const store = EmbeddedStore.layerWithUploads({ home })
  const layer = Gateway.layerNode({ tokens, ...options, port: 0, host: "127.0.0.1", shutdownGrace: 0 }).pipe(
    Layer.provideMerge(store)
  )
  const runtime = ManagedRuntime.make(layer)
  const server = await runtime.runPromise(HttpServer.HttpServer)
  return {
    url: HttpServer.formatAddress(server.address),
    home,
    close: () => runtime.dispose()
  }
}

/** `graviton serve` running as a child process. */
export interface Child {
  readonly url: string
  readonly process: ChildProcess
  /** Everything it wrote on stderr so far. */
  readonly stderr: () => string
}

/** Starts `graviton serve` on `home`, listening on `listen`; resolves once it printed its address. */
export const startCli = (
  home: string,
  listen = "127.0.0.1:0",
  env: Record<string, string> = {}
): Promise<Child> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(repo, "bin", "graviton.js"), "serve", "--listen", listen], {
      cwd: home,
      env: { ...process.env, GRAVITON_HOME: home, GRAVITON_STORE: "embedded", GRAVITON_GATEWAY_TOKENS: TOKENS_ENV, ...env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let out = ""
    let err = ""
    child.stderr!.on("data", (d: Buffer) => (err += d.toString()))
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString()
      const m = /listening on (http:\/\/\S+)/.exec(out)
      if (m !== null) resolve({ url: m[1]!, process: child, stderr: () => err })
    })
    child.on("error", reject)
    child.on("exit", (code, signal) => {
      if (!/listening on/.test(out)) reject(new Error(`graviton serve exited (${code ?? signal}) before listening: ${err}`))
    })
  })

/** Kills a child with `signal` and waits for it to be gone. */
export const kill = (child: Child, signal: NodeJS.Signals = "SIGKILL"): Promise<void> =>
  new Promise((resolve) => {
    if (child.process.exitCode !== null || child.process.signalCode !== null) return resolve()
    child.process.once("exit", () => resolve())
    child.process.kill(signal)
  })

/** The file holding a monolithic blob's bytes in an embedded home (found by its digest). */
export const blobFile = (home: string, hex: string): string | undefined => {
  const walk = (dir: string): string | undefined => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, entry.name)
      if (entry.isDirectory()) {
        const found = walk(p)
        if (found !== undefined) return found
      } else if (entry.name === hex) {
        return p
      }
    }
    return undefined
  }
  return walk(path.join(home, "blobs"))
}
