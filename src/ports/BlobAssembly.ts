/**
 * An optional capability of a BlobStore: turn objects already staged in its
 * own object store into one blob WITHOUT writing their bytes again (they are
 * read once to be hashed, then adopted: renamed, copied server-side, or kept
 * as the blob's blocks). Resumable uploads use it so that completing an
 * upload costs a read, not a second copy. A store without it simply does not
 * provide the tag; callers then stream the parts into `BlobStore.put`.
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type { BlobLocator, LocatorPrefix } from "../core/BlobLocator.js"
import type { BlobError } from "../core/Errors.js"
import type { BlobWritePlan, BlobWriteResult } from "../core/Models.js"

/** See the module comment. */
export class BlobAssembly extends Context.Tag("graviton/BlobAssembly")<BlobAssembly, {
  /** Where callers stage parts (in the store's own MutableObjectStore) so that `assemble` can adopt them. */
  readonly stagingPrefix: LocatorPrefix
  /**
   * The blob made of `parts` in order. The key is verified against the plan
   * before anything is adopted: a mismatch fails with InvalidInput and leaves
   * the parts in place. On success every part has been consumed (adopted or
   * removed); a failure after adoption began may have consumed some of them.
   */
  readonly assemble: (
    parts: ReadonlyArray<BlobLocator>,
    plan?: BlobWritePlan
  ) => Effect.Effect<BlobWriteResult, BlobError>
}>() {}
