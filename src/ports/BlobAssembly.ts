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
import type { BinaryKey } from "../core/BinaryKey.js"
import type { BlobLocator, LocatorPrefix } from "../core/BlobLocator.js"
import type { BlobError } from "../core/Errors.js"
import type { BlobWritePlan, BlobWriteResult } from "../core/Models.js"

/** One staged object, with the key of its bytes when the caller computed it while writing them. */
export interface AssemblyPart {
  readonly locator: BlobLocator
  readonly key?: BinaryKey | undefined
}

/** See the module comment. */
export class BlobAssembly extends Context.Tag("graviton/BlobAssembly")<BlobAssembly, {
  /** Where callers stage parts (in the store's own MutableObjectStore) so that `assemble` can adopt them. */
  readonly stagingPrefix: LocatorPrefix
  /**
   * The blob made of `parts` in order. The key is verified against the plan
   * before anything is adopted: a mismatch fails with InvalidInput and leaves
   * the parts in place. On success every part has been consumed (adopted or
   * removed); a failure after adoption began may have consumed some of them.
   *
   * When the caller already hashed the bytes as it wrote them (every part
   * has its `key` and `known` is the whole blob's key, same algorithm), the
   * parts are not read again: the keys are trusted as a put trusts the hash
   * of the bytes it streamed.
   */
  readonly assemble: (
    parts: ReadonlyArray<AssemblyPart>,
    plan?: BlobWritePlan,
    known?: BinaryKey
  ) => Effect.Effect<BlobWriteResult, BlobError>
}>() {}
