/**
 * The Uploads suite over the embedded store: each upload one file written in
 * place (FsUploadStaging), records and ranges in LevelDB, the file adopted as
 * the blob on complete.
 */
import * as Layer from "effect/Layer"
import * as EmbeddedStore from "../../src/stores/EmbeddedStore.js"
import * as Uploads from "../../src/uploads/Uploads.js"
import { tempDir } from "../blobs/fixtures.js"
import { testUploads } from "../../src/testing/Uploads.js"
import { stagedObjects } from "./fixtures.js"

const segmentSize = 256 * 1024

testUploads("embedded (fs + LevelDB)", {
  layer: Uploads.layer({ segmentSize }).pipe(Layer.provideMerge(EmbeddedStore.layer({ home: tempDir("uploads-embedded-"), uploadSegmentSize: segmentSize }))),
  fresh: Uploads.make({ segmentSize }),
  segmentSize,
  staged: stagedObjects("file", "blobs", "staging/uploads/")
})
