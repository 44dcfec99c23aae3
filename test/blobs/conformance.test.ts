/** The BlobStore conformance suite against CasBlobStore over memory, in both layouts. */
import * as CasBlobStore from "../../src/blobs/CasBlobStore.js"
import { testBlobStore } from "../../src/testing/BlobStore.js"
import { memory, smallBlocks } from "./fixtures.js"

testBlobStore("cas over memory, monolithic", memory())
testBlobStore("cas over memory, chunked 4/16/64 KiB", memory({ layout: smallBlocks }))
testBlobStore("cas over memory, chunked default sizes", memory({ layout: CasBlobStore.chunked() }))
