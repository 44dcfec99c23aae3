/** Stores the lifecycle tests share. */
import * as Layer from "effect/Layer"
import * as MemoryLayers from "../../src/backends/memory/MemoryLayers.js"
import * as MemoryObjectStore from "../../src/backends/memory/MemoryObjectStore.js"
import * as CasBlobStore from "../../src/blobs/CasBlobStore.js"
import * as Events from "../../src/kit/Events.js"
import * as Metrics from "../../src/kit/Metrics.js"
import * as Uploads from "../../src/uploads/Uploads.js"
import { blocks } from "./suite.js"

/** The memory store of the CLI, chunked, with its uploads. */
export const memoryStore = () =>
  Uploads.layer().pipe(
    Layer.provideMerge(CasBlobStore.layer({ layout: blocks })),
    Layer.provideMerge(Layer.merge(MemoryLayers.metadata, MemoryObjectStore.layer)),
    Layer.provideMerge(Layer.merge(Metrics.layer, Events.layer))
  )
