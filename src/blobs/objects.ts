/** Object store calls shared by the put, assembly and delete paths. */
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type * as BinaryKey from "../core/BinaryKey.js"
import * as BlobLocator from "../core/BlobLocator.js"
import * as Hashing from "../core/Hashing.js"
import type { Cas } from "./context.js"
import { fromPortError } from "./errors.js"
import type { Settings } from "./options.js"

/** Writes `bytes` as the object at `locator`. */
export const writeObject = (cas: Cas, method: string, locator: BlobLocator.BlobLocator, bytes: Uint8Array) =>
  Effect.mapError(Stream.run(Stream.make(bytes), cas.objects.put(locator, { size: bytes.length })), fromPortError(method))

/** Removes an object when losing it only costs space: failures are logged, never raised. */
export const discard = (cas: Cas, locator: BlobLocator.BlobLocator, why: string) =>
  cas.objects.delete(locator).pipe(
    Effect.catchAll((e) => Effect.logWarning(`cas: could not remove ${BlobLocator.render(locator)} (${why}): ${e.message}`))
  )

/**
 * Whether the object at `locator`, recorded as holding the content `key`,
 * is missing or damaged, as far as `heal` looks (see options.Heal). A read
 * that fails counts as damage; a head that fails is raised.
 */
export const damaged = (cas: Cas, method: string, locator: BlobLocator.BlobLocator, key: BinaryKey.BinaryKey, heal: Settings["heal"]) =>
  Effect.gen(function*() {
    if (heal === "off") return false
    const head = yield* Effect.mapError(cas.objects.head(locator), fromPortError(method))
    if (head._tag === "None" || head.value.size !== key.size) return true
    if (heal === "size") return false
    const found = yield* Effect.either(Hashing.hashStream(key.algorithm, cas.objects.get(locator)))
    return found._tag === "Left" || found.right.digest !== key.digest || found.right.size !== key.size
  })

/** Whether an object exists at `locator`. */
export const exists = (cas: Cas, method: string, locator: BlobLocator.BlobLocator) =>
  Effect.map(Effect.mapError(cas.objects.head(locator), fromPortError(method)), (head) => head._tag === "Some")
