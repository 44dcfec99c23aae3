/**
 * Server-side copies: one CopyObject up to `multipartCopyThreshold` (S3
 * allows 5 GiB), above it a multipart upload whose parts are UploadPartCopy
 * ranges of the source, `concurrency` at a time, aborted if anything fails.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type { ObjectStoreError } from "../../../core/Errors.js"
import type { Ops, WriteHeaders } from "./ops.js"
import { copyRanges } from "./parts.js"
import { session } from "./upload.js"

/** Outcome of a copy: the new object's version, or Exists when `ifNoneMatch` refused it (multipart copies only). */
export type CopyOutcome =
  | { readonly _tag: "Copied"; readonly etag: Option.Option<string>; readonly lastModified: Option.Option<Date> }
  | { readonly _tag: "Exists" }

/**
 * Copies `sourceKey` (of `size` bytes) to `key`. `replace` swaps content
 * type and metadata; otherwise the source's are kept (passed explicitly to a
 * multipart copy, which cannot copy them). `ifNoneMatch` is honoured by the
 * multipart path only: CopyObject has no portable conditional form.
 */
export const copy = (
  ops: Ops,
  sourceKey: string,
  key: string,
  target: string,
  size: number,
  keep: WriteHeaders,
  replace: WriteHeaders | undefined,
  ifNoneMatch = false
): Effect.Effect<CopyOutcome, ObjectStoreError> => {
  const { concurrency, copyPartSize, maxParts, multipartCopyThreshold } = ops.settings
  if (size <= multipartCopyThreshold) {
    return Effect.map(ops.copyObject(sourceKey, key, target, replace), (r): CopyOutcome => ({ _tag: "Copied", ...r }))
  }
  return Effect.scoped(Effect.gen(function*() {
    const upload = yield* session(ops, key, target, replace ?? keep)
    const uploadId = yield* upload.id
    const etags = yield* Effect.forEach(
      copyRanges(size, copyPartSize, maxParts),
      (range, i) => ops.uploadPartCopy(key, target, uploadId, i + 1, sourceKey, range),
      { concurrency }
    )
    const outcome = yield* upload.complete(etags, ifNoneMatch)
    return outcome._tag === "Exists"
      ? { _tag: "Exists" } satisfies CopyOutcome
      : { _tag: "Copied", etag: outcome.etag, lastModified: Option.none() } satisfies CopyOutcome
  }))
}
