/** CasBlobStore.layerConfig: options read from Config, as an app reads them from its environment. */
import { describe, expect, it } from "@effect/vitest"
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as MemoryLayers from "../../src/backends/memory/MemoryLayers.js"
import * as MemoryObjectStore from "../../src/backends/memory/MemoryObjectStore.js"
import * as BlobLocator from "../../src/core/BlobLocator.js"
import { BlobStore } from "../../src/ports/BlobStore.js"
import * as CasBlobStore from "../../src/blobs/CasBlobStore.js"
import { randomBytes } from "../../src/testing/bytes.js"

const ports = Layer.merge(MemoryObjectStore.layer, MemoryLayers.metadata)

const fromEnv = CasBlobStore.layerConfig({
  bucket: Config.string("CAS_BUCKET"),
  layout: Config.map(Config.string("CAS_LAYOUT"), (word) => (word === "chunked" ? CasBlobStore.chunked() : CasBlobStore.monolithic))
}).pipe(Layer.provide(ports))

const withEnv = (env: Record<string, string>) =>
  Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))

describe("CasBlobStore.layerConfig", () => {
  it.effect("stores under the configured bucket, in the configured layout", () =>
    Effect.gen(function*() {
      const store = yield* BlobStore
      const monolithic = yield* Stream.run(Stream.make(randomBytes(1000, 1)), store.put())
      expect(monolithic.locator.bucket).toBe("configured")
      expect(BlobLocator.render(monolithic.locator)).toMatch(/^file:\/\/configured\/sha256\//)
    }).pipe(Effect.provide(fromEnv), withEnv({ CAS_BUCKET: "configured", CAS_LAYOUT: "monolithic" })))

  it.effect("a chunked layout from Config reports the manifest locator", () =>
    Effect.gen(function*() {
      const store = yield* BlobStore
      const result = yield* Stream.run(Stream.make(randomBytes(1000, 2)), store.put())
      expect(result.locator.scheme).toBe(CasBlobStore.MANIFEST_SCHEME)
      expect(Option.isSome(yield* store.stat(result.key))).toBe(true)
    }).pipe(Effect.provide(fromEnv), withEnv({ CAS_BUCKET: "configured", CAS_LAYOUT: "chunked" })))

  it.effect("missing configuration fails the layer with a ConfigError", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Layer.build(fromEnv).pipe(Effect.scoped, withEnv({ CAS_LAYOUT: "chunked" })))
      expect(error._tag).toBe("ConfigError")
    }))
})
