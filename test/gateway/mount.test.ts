/** The gateway's router mounted under a prefix in an application's own router: routes and Location headers follow. */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as Http from "node:http"
import * as Gateway from "../../src/gateway/Gateway.js"
import * as EmbeddedStore from "../../src/stores/EmbeddedStore.js"
import { bodyOf, tempHome, tokens, writer } from "./servers.js"

const home = tempHome("mount")
let runtime: ManagedRuntime.ManagedRuntime<HttpServer.HttpServer, unknown> | undefined
let url = ""

beforeAll(async () => {
  const app = Effect.gen(function*() {
    const storage = yield* Gateway.makeRouter({ tokens })
    return HttpRouter.empty.pipe(
      HttpRouter.get("/hello", Effect.succeed(HttpServerResponse.text("app"))),
      HttpRouter.mount("/storage", storage)
    )
  })
  const layer = Layer.unwrapEffect(Effect.map(app, (router) => HttpServer.serve(router))).pipe(
    Layer.provideMerge(NodeHttpServer.layer(Http.createServer, { port: 0, host: "127.0.0.1" })),
    Layer.provide(EmbeddedStore.layerWithUploads({ home }))
  )
  runtime = ManagedRuntime.make(layer)
  url = HttpServer.formatAddress((await runtime.runPromise(HttpServer.HttpServer)).address)
})
afterAll(async () => {
  await runtime?.dispose()
  fs.rmSync(home, { recursive: true, force: true })
})

describe("Gateway.makeRouter mounted at /storage", () => {
  it("serves the blob and tus routes under the prefix, with Locations that include it", async () => {
    expect(await (await fetch(`${url}/hello`)).text()).toBe("app")
    const bytes = randomBytes(1000)
    const key = `sha256:${createHash("sha256").update(bytes).digest("hex")}:${bytes.length}`
    const put = await fetch(`${url}/storage/blobs`, { method: "PUT", body: bodyOf(bytes), headers: writer })
    expect(put.status).toBe(201)
    expect(put.headers.get("location")).toBe(`/storage/blobs/${key}`)
    const got = await fetch(`${url}${put.headers.get("location")}`, { headers: writer })
    expect(Buffer.from(await got.arrayBuffer()).equals(bytes)).toBe(true)
    const created = await fetch(`${url}/storage/files/`, {
      method: "POST",
      headers: { ...writer, "tus-resumable": "1.0.0", "upload-length": "10" }
    })
    expect(created.status).toBe(201)
    expect(created.headers.get("location")).toMatch(/^\/storage\/files\/[0-9a-f]{32}$/)
    const head = await fetch(`${url}${created.headers.get("location")}`, { method: "HEAD", headers: { ...writer, "tus-resumable": "1.0.0" } })
    expect(head.headers.get("upload-offset")).toBe("0")
  })
})
