/** The BlobStore conformance suite against CasBlobStore over FsObjectStore + LevelDB, in both layouts. */
import { testBlobStore } from "../../src/testing/BlobStore.js"
import { embedded, mediumBlocks, tempDir } from "./fixtures.js"

testBlobStore("cas over fs + level, monolithic", embedded(tempDir("cas-mono-")))
testBlobStore("cas over fs + level, chunked 16/64/256 KiB", embedded(tempDir("cas-chunked-"), { layout: mediumBlocks }))
