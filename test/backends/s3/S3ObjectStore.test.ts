/**
 * The object-store conformance suite against every S3 server the harness
 * can start (S3-specific behaviour is in the other files of this folder),
 * and the store's declared capabilities on each server.
 */
import { expect } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as S3ObjectStore from "../../../src/backends/s3/S3ObjectStore.js"
import { MutableObjectStore } from "../../../src/ports/ObjectStore.js"
import { utf8 } from "../../../src/testing/bytes.js"
import { skipReason } from "../../../src/testing/capabilities.js"
import { testMutableObjectStore } from "../../../src/testing/ObjectStore.js"
import * as Harness from "../../harness/s3.js"
import { eachServer, locatorMaker, putBytes, storeLayer, useServers } from "./fixtures.js"

useServers()

for (const server of Harness.candidates) {
  const bucket = Harness.freshBucket(`os-${server.name}`)
  testMutableObjectStore(
    `s3 on ${server.name}`,
    S3ObjectStore.layer.pipe(Layer.provide(Harness.clientLayer(server, { bucket }))),
    // s3rver's filesystem store breaks plain S3 semantics the suite checks; its S3 tests run in the other files.
    { scheme: "s3", bucket, skipAll: server.skip ?? skipReason(server.capabilities.keySemantics) }
  )
}

eachServer("S3ObjectStore capabilities", (c) => storeLayer(c, "caps"), (test, c) => {
  test.effect()("the declaration leaves out what the server lacks; a create-only put there fails with Unsupported", () =>
    Effect.gen(function*() {
      const store = yield* MutableObjectStore
      const declared = store.capabilities
      const lacks = (capability: unknown) => capability !== true
      expect([declared.nativeMove, declared.nativeCopy, declared.multipart]).toEqual([false, true, true])
      expect(declared.conditionalWrite).toBe(!lacks(c.capabilities.conditionalWrites))
      expect(declared.fileAndPrefix).toBe(!lacks(c.capabilities.keySemantics))
      const l = yield* locatorMaker
      if (!declared.conditionalWrite) {
        const refused = yield* Effect.flip(putBytes(l.at("once"), utf8("x"), { ifAbsent: true }))
        expect(refused.reason).toBe("Unsupported")
        const plainPut = yield* putBytes(l.at("once"), utf8("x"))
        expect(plainPut.size).toBe(1)
      }
    }))
})
