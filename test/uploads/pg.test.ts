/** The Uploads suite over PostgreSQL: segments as objects, records and ranges in the kv and ranges tables. */
import * as Layer from "effect/Layer"
import * as CasBlobStore from "../../src/blobs/CasBlobStore.js"
import * as Events from "../../src/kit/Events.js"
import * as Metrics from "../../src/kit/Metrics.js"
import * as Uploads from "../../src/uploads/Uploads.js"
import { testUploads } from "../../src/testing/Uploads.js"
import { pgLayer, skipReason, usePostgres } from "../harness/postgres.js"
import { stagedObjects } from "./fixtures.js"

usePostgres()

const segmentSize = 256 * 1024

testUploads("pg", {
  layer: Uploads.layer({ segmentSize }).pipe(
    Layer.provideMerge(CasBlobStore.layer({ scheme: "pg", bucket: "blobs" })),
    Layer.provideMerge(pgLayer("uploads")),
    Layer.provideMerge(Layer.merge(Metrics.layer, Events.layer))
  ),
  fresh: Uploads.make({ segmentSize }),
  segmentSize,
  staged: stagedObjects("pg", "blobs", "staging/uploads/")
}, { skipAll: skipReason() })
