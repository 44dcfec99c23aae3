/**
 * Deleting a blob. A monolithic blob is hidden first (its record becomes
 * Deleting), then its object and replica entry are removed, then the record;
 * no put moves bytes to the address while the tombstone stands. Deleting a
 * chunked blob releases its block references and removes its record in one
 * atomic commit (see blocks).
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { randomUUID } from "node:crypto"
import * as BinaryKey from "../core/BinaryKey.js"
import type * as BlobLocator from "../core/BlobLocator.js"
import * as BlobMeta from "./BlobMeta.js"
import { releaseBlocks } from "./blocks.js"
import { type Cas, isStale, now } from "./context.js"
import { fromPortError } from "./errors.js"
import { compareAndSet, type Read, readBlob } from "./records.js"

/** Removes a hidden monolithic blob's object and replica entry, then its tombstone. */
const removeMonolithic = (cas: Cas, key: BinaryKey.BinaryKey, locator: BlobLocator.BlobLocator, tomb: Uint8Array) =>
  Effect.gen(function*() {
    yield* Effect.mapError(cas.objects.delete(locator), fromPortError("delete"))
    yield* Effect.mapError(cas.replicas.remove(key, locator), fromPortError("delete"))
    // Fails harmlessly when a put has taken the key over meanwhile.
    yield* compareAndSet(cas, "delete", BlobMeta.blobKey(key), Option.some(tomb), Option.none())
  })

/** Hides and removes the monolithic blob `live` (object at `locator`) read as `read`; false when the record changed first. */
const deleteMonolithic = (
  cas: Cas,
  key: BinaryKey.BinaryKey,
  read: Read<BlobMeta.BlobRecord>,
  live: BlobMeta.Live,
  locator: BlobLocator.BlobLocator,
  token: string,
  at: number
) => {
  const kvKey = BlobMeta.blobKey(key)
  const hidden: BlobMeta.Deleting = { _tag: "Deleting", token, since: at, blob: live }
  const tomb = BlobMeta.encodeBlob(key, hidden)
  // On failure the tombstone is marked abandoned (time 0), so the next delete finishes the job at once.
  const abandon = Effect.ignore(
    compareAndSet(cas, "delete", kvKey, Option.some(tomb), Option.some(BlobMeta.encodeBlob(key, { ...hidden, since: 0 })))
  )
  // Hidden first, then removed: no put moves bytes to this address while the tombstone stands.
  return Effect.uninterruptible(
    Effect.flatMap(compareAndSet(cas, "delete", kvKey, read.raw, Option.some(tomb)), (ok) =>
      ok
        ? Effect.as(Effect.tapError(removeMonolithic(cas, key, locator, tomb), () => abandon), true)
        : Effect.succeed(false))
  )
}

/**
 * Deletes a blob; true when this call removed it (false: absent, or another
 * call is removing it), so that exactly one BlobDeleted event is published.
 */
export const remove = (cas: Cas) => (key: BinaryKey.BinaryKey) =>
  Effect.gen(function*() {
    const kvKey = BlobMeta.blobKey(key)
    const token = randomUUID()
    while (true) {
      const read = yield* readBlob(cas, "delete", key)
      const current = Option.getOrUndefined(read.record)
      const at = yield* now
      // A put that has not published yet: the blob does not exist yet.
      if (current === undefined || current._tag === "Pending") return false
      if (current._tag === "Deleting" && !isStale(cas, current.since, at)) return false
      const live = current._tag === "Live" ? current : current.blob
      if (live.storage._tag === "Chunked") {
        // One commit removes the record and releases every block it referenced; then unreferenced blocks go.
        const distinct = new Map(live.storage.blocks.map((b) => [BinaryKey.render(b.key), b]))
        const released = releaseBlocks(cas, "delete", Array.from(distinct.values()), { kvKey, raw: Option.getOrThrow(read.raw) })
        if (yield* Effect.uninterruptible(released)) return true
        continue
      }
      if (yield* deleteMonolithic(cas, key, read, live, live.storage.locator, token, at)) return true
    }
  })
