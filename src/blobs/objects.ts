/** Object store calls shared by the put, assembly and delete paths. */
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as BlobLocator from "../core/BlobLocator.js"
import type { Cas } from "./context.js"
import { fromPortError } from "./errors.js"

/** Writes `bytes` as the object at `locator`. */
export const writeObject = (cas: Cas, method: string, locator: BlobLocator.BlobLocator, bytes: Uint8Array) =>
  Effect.mapError(Stream.run(Stream.make(bytes), cas.objects.put(locator, { size: bytes.length })), fromPortError(method))

/** Removes an object when losing it only costs space: failures are logged, never raised. */
export const discard = (cas: Cas, locator: BlobLocator.BlobLocator, why: string) =>
  cas.objects.delete(locator).pipe(
    Effect.catchAll((e) => Effect.logWarning(`cas: could not remove ${BlobLocator.render(locator)} (${why}): ${e.message}`))
  )

/** Whether an object exists at `locator`. */
export const exists = (cas: Cas, method: string, locator: BlobLocator.BlobLocator) =>
  Effect.map(Effect.mapError(cas.objects.head(locator), fromPortError(method)), (head) => head._tag === "Some")
