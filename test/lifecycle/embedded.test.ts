/** The lifecycle suite on the embedded store (fs + LevelDB). */
import * as EmbeddedStore from "../../src/stores/EmbeddedStore.js"
import { tempDir } from "../blobs/fixtures.js"
import { blocks, lifecycleSuite } from "./suite.js"

lifecycleSuite({
  name: "embedded (fs + LevelDB)",
  layer: () => EmbeddedStore.layerWithUploads({ home: tempDir("lifecycle-"), layout: blocks })
})
