/** The lifecycle tests' chunked layout (no vitest here: child processes import it too). */
import * as CasBlobStore from "../../src/blobs/CasBlobStore.js"

/** Small blocks, so that each blob is several of them. */
export const blocks = CasBlobStore.chunked({ min: 4 * 1024, avg: 16 * 1024, max: 64 * 1024 })
