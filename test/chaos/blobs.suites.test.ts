/**
 * The BlobStore conformance suite, unchanged, a second time: CasBlobStore
 * over the in-memory and embedded (fs + LevelDB) ports behind the chaos
 * layer, with the retry policy of src/kit/Retry.ts between them and the CAS.
 *
 * A fifth of the calls of every kind the retry wrapper can repeat fail with
 * a transient reason (and every call is delayed 0-1 ms). Streaming puts and
 * damaged reads are left out here: a put's input is consumed once, so only
 * the caller can repeat it, and a damaged body is caught above the object
 * store as Corrupted, which is not transient. The suite as written expects
 * each put and get to succeed; invariants.test.ts drives those faults with
 * caller-side retries instead.
 */
import * as CasBlobStore from "../../src/blobs/CasBlobStore.js"
import * as Chaos from "../../src/kit/Chaos.js"
import { testBlobStore } from "../../src/testing/BlobStore.js"
import { cas, embeddedPorts, memoryPorts, repeatable, tempDir } from "./fixtures.js"
import { summarize, trackTests } from "./summary.js"

const state = trackTests()

const smallBlocks = CasBlobStore.chunked({ min: 4 * 1024, avg: 16 * 1024, max: 64 * 1024 })
const mediumBlocks = CasBlobStore.chunked({ min: 16 * 1024, avg: 64 * 1024, max: 256 * 1024 })

const memoryMono = Chaos.make(repeatable(21))
const memoryChunked = Chaos.make(repeatable(22))
const embeddedMono = Chaos.make(repeatable(23))
const embeddedChunked = Chaos.make(repeatable(24))

testBlobStore("cas over memory behind chaos, monolithic", cas(memoryPorts(memoryMono)))
testBlobStore("cas over memory behind chaos, chunked 4/16/64 KiB", cas(memoryPorts(memoryChunked), { layout: smallBlocks }))
testBlobStore("cas over fs + level behind chaos, monolithic", cas(embeddedPorts(tempDir("graviton-chaos-mono-"), embeddedMono), { scheme: "file" }))
testBlobStore(
  "cas over fs + level behind chaos, chunked 16/64/256 KiB",
  cas(embeddedPorts(tempDir("graviton-chaos-chunked-"), embeddedChunked), { scheme: "file", layout: mediumBlocks })
)

const fault = (store: string) => `BlobStore suite, ${store}: 20% transient failures on head/get/list/write/delete, 0-1 ms latency`
summarize("BlobStore", state, [
  { fault: fault("CAS over memory, monolithic"), chaos: memoryMono },
  { fault: fault("CAS over memory, chunked"), chaos: memoryChunked },
  { fault: fault("CAS over fs + LevelDB, monolithic"), chaos: embeddedMono },
  { fault: fault("CAS over fs + LevelDB, chunked"), chaos: embeddedChunked }
])
