/**
 * The Uploads conformance suite, unchanged, a second time: resumable uploads
 * and CasBlobStore over the in-memory and embedded (fs + LevelDB) ports
 * behind the chaos layer, with the retry policy of src/kit/Retry.ts in
 * between. Same faults as blobs.suites.test.ts (every repeatable call, not
 * streaming puts nor damaged reads). The embedded variant stages segments
 * through the object store port (ObjectStaging) rather than FsUploadStaging,
 * which writes files directly and has no port for the chaos layer to wrap.
 */
import * as Layer from "effect/Layer"
import * as CasBlobStore from "../../src/blobs/CasBlobStore.js"
import * as Chaos from "../../src/kit/Chaos.js"
import { testUploads } from "../../src/testing/Uploads.js"
import * as Uploads from "../../src/uploads/Uploads.js"
import { stagedObjects } from "../uploads/fixtures.js"
import { cas, embeddedPorts, memoryPorts, repeatable, tempDir } from "./fixtures.js"
import { summarize, trackTests } from "./summary.js"

const state = trackTests()
const segmentSize = 64 * 1024

const memory = Chaos.make(repeatable(31))
const embedded = Chaos.make(repeatable(32))

testUploads("cas over memory behind chaos", {
  layer: Uploads.layer({ segmentSize }).pipe(Layer.provideMerge(cas(memoryPorts(memory)))),
  fresh: Uploads.make({ segmentSize }),
  segmentSize,
  staged: stagedObjects(CasBlobStore.defaults.scheme, CasBlobStore.defaults.bucket, "staging/uploads/")
})

testUploads("cas over fs + level behind chaos (object staging)", {
  layer: Uploads.layer({ segmentSize }).pipe(
    Layer.provideMerge(cas(embeddedPorts(tempDir("graviton-chaos-uploads-"), embedded), { scheme: "file" }))
  ),
  fresh: Uploads.make({ segmentSize }),
  segmentSize,
  staged: stagedObjects("file", CasBlobStore.defaults.bucket, "staging/uploads/")
})

const fault = (store: string) => `Uploads suite, ${store}: 20% transient failures on head/get/list/write/delete, 0-1 ms latency`
summarize("Uploads", state, [
  { fault: fault("CAS over memory"), chaos: memory },
  { fault: fault("CAS over fs + LevelDB"), chaos: embedded }
])
