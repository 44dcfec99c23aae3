/**
 * The object-store conformance suite against every S3 server the harness
 * can start (S3-specific behaviour is in the other files of this folder).
 */
import * as Layer from "effect/Layer"
import * as S3ObjectStore from "../../../src/backends/s3/S3ObjectStore.js"
import { skipReason } from "../../../src/testing/capabilities.js"
import { testMutableObjectStore } from "../../../src/testing/ObjectStore.js"
import * as Harness from "../../harness/s3.js"
import { useServers } from "./fixtures.js"

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
