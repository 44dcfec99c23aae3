/**
 * Monolithic put: the input (hashed and size-checked by the BlobStore
 * protocol) streams into a staging object. Once the input has ended and its
 * key matched the plan, the staging object becomes the blob (see publish). A put
 * that finds the blob stored, fails or is interrupted removes its staging
 * object and leaves no record.
 */
import * as Effect from "effect/Effect"
import * as Sink from "effect/Sink"
import type { CheckedPlan, Staging } from "../kit/BlobStoreProtocol.js"
import { sameLocator, stagingLocator } from "./addresses.js"
import type { Cas } from "./context.js"
import { fail, fromPortError } from "./errors.js"
import { discard } from "./objects.js"
import type { Settings } from "./options.js"
import { type Place, publishMonolithic } from "./publish.js"

/** Opens a monolithic put; the staging object is removed when the put's scope closes, unless it became the blob. */
export const stage = (cas: Cas, s: Settings, plan: CheckedPlan) =>
  Effect.gen(function*() {
    // A blob is one object here: refuse before the first byte what the store cannot hold.
    const largest = cas.objects.capabilities.maxObjectSize
    if (largest !== undefined && plan.expectedKey !== undefined && plan.expectedKey.size > largest) {
      return yield* fail(
        "InvalidInput",
        "put",
        `${plan.expectedKey} is larger than the object store's largest object (${largest} bytes); the chunked layout has no such limit`
      )
    }
    const staging = yield* stagingLocator(s)
    const place: Place = { source: staging }
    // Failed, interrupted or deduplicated: the staged bytes are not needed (a moved object is never removed here).
    yield* Effect.addFinalizer(() => sameLocator(place.source, staging) ? discard(cas, staging, "staging of a finished put") : Effect.void)
    const sink = cas.objects.put(staging, {
      ...(plan.contentType === undefined ? {} : { contentType: plan.contentType }),
      ...(plan.expectedKey === undefined ? {} : { size: plan.expectedKey.size })
    }).pipe(Sink.mapError(fromPortError("put")))
    return {
      sink,
      publish: (key) =>
        Effect.map(publishMonolithic(cas, s, key, place, plan.contentType), (stored) => ({
          ...stored,
          bytesWritten: stored.deduplicated ? 0 : key.size,
          blocks: 1
        }))
    } satisfies Staging
  })
