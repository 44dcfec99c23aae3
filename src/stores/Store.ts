/**
 * What the stores of this folder share: the services every store gives
 * (`StoreServices`), and the GRAVITON_LAYOUT setting of the stores whose
 * blobs are content-addressed by CasBlobStore.
 */
import * as Config from "effect/Config"
import type { BackendEvents } from "../ports/BackendEvents.js"
import type { BlobStore } from "../ports/BlobStore.js"
import type { MetricsRegistry } from "../ports/MetricsRegistry.js"
import * as CasBlobStore from "../blobs/CasBlobStore.js"

/**
 * What every store gives: the BlobStore, and the MetricsRegistry and
 * BackendEvents it reports to. A store may provide more (its ports, and
 * with `layerWithUploads` the resumable Uploads).
 */
export type StoreServices = BlobStore | MetricsRegistry | BackendEvents

/** GRAVITON_LAYOUT: `monolithic` (one object per blob, the default) or `chunked` (content-defined blocks). */
export const layoutConfig: Config.Config<CasBlobStore.Layout> = Config.literal("monolithic", "chunked")("GRAVITON_LAYOUT").pipe(
  Config.withDefault("monolithic" as const),
  Config.withDescription("Layout of new blobs: monolithic (one object per blob) or chunked (content-defined blocks)"),
  Config.map((word) => (word === "chunked" ? CasBlobStore.chunked() : CasBlobStore.monolithic))
)
