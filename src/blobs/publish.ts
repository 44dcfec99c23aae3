/**
 * Publishing a blob record, the last step of every put and assembly.
 *
 * Monolithic: the record moves through a small state machine, every step
 * one compareAndSet (on a transactional backend, claim and publish commit
 * together, see below):
 *
 *   absent --claim--> Pending --move staging to address--> Live
 *   Live --delete--> Deleting --remove object--> absent
 *
 * Whoever claims the key (absent → Pending) owns the content address until it
 * publishes Live, so the record never points at a missing object and no
 * delete can remove bytes a put is placing. A put that finds Live reports
 * `deduplicated: true`; one that finds a fresh Pending waits for it (polling,
 * see `lease`), so of many concurrent puts of the same content exactly one
 * stores it. A put that finds Deleting (or a stale Pending) takes the record
 * over; after a Deleting it places its bytes at a fresh alternate address
 * (`<hex>.<uuid>`), because the interrupted delete may still remove the usual
 * one. The claim-move-publish step is uninterruptible.
 *
 * On a transactional backend (a UnitOfWork in the context) that step (claim,
 * move, publish Live, add the replica) is also one transaction: the object
 * appears at its address together with its Live record and replica entry, or
 * none of them does. Other writers then never see our Pending record (it is
 * uncommitted); a concurrent put of the same content reads the record as
 * absent, and its own claim waits on the row lock of ours, then fails (we
 * committed Live: the next round finds it and deduplicates) or succeeds (we
 * rolled back). Waiting on a lock replaces polling, but the loop is the same.
 * A failed step leaves the bytes where they were, which the put then
 * removes; a transient failure of the step is retried whole, because inside
 * a transaction the ports do not retry on their own.
 *
 * Chunked: the record holds the manifest and owns one reference per distinct
 * block once committed (a UnitOfWork step too).
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import { randomUUID } from "node:crypto"
import type * as BinaryKey from "../core/BinaryKey.js"
import type * as BlobLocator from "../core/BlobLocator.js"
import type { BlobError } from "../core/Errors.js"
import { alternateLocator, contentLocator, reportedLocator, sameLocator } from "./addresses.js"
import * as BlobMeta from "./BlobMeta.js"
import { type Cas, isStale, now } from "./context.js"
import { fail, fromPortError } from "./errors.js"
import { damaged, discard, exists } from "./objects.js"
import type { Settings } from "./options.js"
import { atomically, compareAndSet, type Read, readBlob, sameBytes } from "./records.js"

/** What a put or assembly stored (before metrics and events). */
export interface Stored {
  readonly locator: BlobLocator.BlobLocator
  readonly deduplicated: boolean
  /** The content was recorded but its stored bytes were missing or damaged, and this put stored them again. */
  readonly repaired?: boolean | undefined
}

/** Where a monolithic put's bytes are: the staging object until they are moved to their address. */
export interface Place {
  source: BlobLocator.BlobLocator
}

/** First and longest pause of a put waiting for a concurrent put of the same content. */
const POLL_START = Duration.millis(2)
const POLL_MAX_MILLIS = 100

/** Waits a little longer each time, for a concurrent put to finish. */
const backoff = (attempt: number) =>
  Effect.sleep(Duration.millis(Math.min(POLL_MAX_MILLIS, Duration.toMillis(POLL_START) * 2 ** attempt)))

/** What a monolithic put does about the record it read. */
type Decision =
  | { readonly _tag: "Found"; readonly stored: Stored }
  | { readonly _tag: "Wait" }
  | { readonly _tag: "Claim"; readonly target: BlobLocator.BlobLocator }

const decide = (
  cas: Cas,
  s: Settings,
  key: BinaryKey.BinaryKey,
  current: BlobMeta.BlobRecord | undefined,
  token: string,
  at: number
): Either.Either<Decision, BlobError> => {
  if (current === undefined) return Either.map(contentLocator(s, key), (target) => ({ _tag: "Claim", target }))
  switch (current._tag) {
    case "Live":
      return Either.right({ _tag: "Found", stored: { locator: reportedLocator(key, current), deduplicated: true } })
    case "Pending":
      // Our own claim (a compareAndSet that succeeded but reported an error), or an abandoned one, is taken.
      return current.token !== token && !isStale(cas, current.since, at)
        ? Either.right({ _tag: "Wait" })
        : Either.right({ _tag: "Claim", target: current.locator })
    case "Deleting":
      return Either.map(alternateLocator(s, key), (target) => ({ _tag: "Claim", target }))
  }
}

/**
 * Claims `key` (unless the record read is already our claim), moves the
 * bytes at `place.source` to `target` and publishes Live. None when a
 * compareAndSet lost a race (the caller reads again).
 */
const claimAndPublish = (
  cas: Cas,
  key: BinaryKey.BinaryKey,
  read: Read<BlobMeta.BlobRecord>,
  token: string,
  at: number,
  target: BlobLocator.BlobLocator,
  place: Place,
  contentType: string | undefined
) =>
  Effect.gen(function*() {
    const kvKey = BlobMeta.blobKey(key)
    const current = Option.getOrUndefined(read.record)
    const mine = current?._tag === "Pending" && current.token === token
    const claim = mine ? read.raw : Option.some(BlobMeta.encodeBlob(key, { _tag: "Pending", token, since: at, locator: target }))
    // Put the claim back as it was (e.g. a Deleting record, so that its address stays avoided).
    const release = Effect.ignore(compareAndSet(cas, "put", kvKey, claim, mine ? Option.none() : read.raw))
    if (!mine && !(yield* compareAndSet(cas, "put", kvKey, read.raw, claim))) return Option.none<Stored>()
    if (!sameLocator(place.source, target)) {
      yield* Effect.tapError(Effect.mapError(cas.objects.move(place.source, target), fromPortError("put")), () => release)
      place.source = target
    } else if (!(yield* exists(cas, "put", target))) {
      // Moved here in an earlier round whose claim was lost; a delete has removed the bytes since.
      yield* release
      return yield* fail("Conflict", "put", `${key} was deleted while this put was storing it; put it again`)
    }
    const live = BlobMeta.encodeBlob(key, {
      _tag: "Live",
      id: token,
      createdAt: yield* now,
      contentType,
      storage: { _tag: "Monolithic", locator: target }
    })
    if (!(yield* compareAndSet(cas, "put", kvKey, claim, Option.some(live)))) return Option.none<Stored>()
    yield* Effect.mapError(cas.replicas.add(key, target), fromPortError("put"))
    return Option.some<Stored>({ locator: target, deduplicated: false })
  })

/**
 * Publishes a monolithic blob whose bytes are at `place.source` (the
 * staging object at first), following the claim loop described above;
 * `place.source` follows the bytes when they move.
 */
export const publishMonolithic = (
  cas: Cas,
  s: Settings,
  key: BinaryKey.BinaryKey,
  place: Place,
  contentType: string | undefined
) =>
  Effect.gen(function*() {
    const token = randomUUID()
    for (let attempt = 0;; attempt++) {
      const read = yield* readBlob(cas, "put", key)
      const at = yield* now
      const current = Option.getOrUndefined(read.record)
      const decision = yield* decide(cas, s, key, current, token, at)
      if (decision._tag === "Found") {
        if (current?._tag !== "Live" || current.storage._tag !== "Monolithic") return decision.stored
        const healed = yield* heal(cas, s, key, read, current.storage.locator, place)
        if (Option.isSome(healed)) return healed.value
        continue
      }
      if (decision._tag === "Wait") {
        yield* backoff(attempt)
        continue
      }
      const before = place.source
      const step = claimAndPublish(cas, key, read, token, at, decision.target, place, contentType)
      // A failed transaction has undone the move too: the bytes are back where they were.
      const published = yield* Effect.uninterruptible(
        atomically(cas, "put", step, Effect.sync(() => (place.source = before)))
      )
      if (Option.isSome(published)) return published.value
    }
  })

/**
 * The record read is Live at `target`: when its object is missing or
 * damaged (as far as `s.heal` looks), the put's own verified bytes replace
 * it. Some(stored) when the record is unchanged since (None: read again, a
 * delete came meanwhile and the claim loop takes it from there, the bytes
 * now at `place.source`).
 */
const heal = (
  cas: Cas,
  s: Settings,
  key: BinaryKey.BinaryKey,
  read: Read<BlobMeta.BlobRecord>,
  target: BlobLocator.BlobLocator,
  place: Place
) =>
  Effect.gen(function*() {
    const stored: Stored = { locator: target, deduplicated: true }
    if (!(yield* damaged(cas, "put", target, key, s.heal))) return Option.some(stored)
    yield* Effect.uninterruptible(Effect.gen(function*() {
      // Removed first: a move does not replace an object on every backend.
      yield* discard(cas, target, "damaged bytes replaced by a put")
      yield* Effect.mapError(cas.objects.move(place.source, target), fromPortError("put"))
      place.source = target
    }))
    const again = yield* readBlob(cas, "put", key)
    const unchanged = Option.isSome(again.raw) && sameBytes(again.raw, read.raw)
    return unchanged ? Option.some<Stored>({ locator: target, deduplicated: false, repaired: true }) : Option.none()
  })

/** Publishes a chunked blob made of `blocks` (cut by `chunker`), whose references the put holds; `onOwned` once the record owns them. */
export const publishChunked = (
  cas: Cas,
  s: Settings,
  key: BinaryKey.BinaryKey,
  blocks: ReadonlyArray<BlobMeta.BlockRef>,
  chunker: BlobMeta.BlockSource,
  contentType: string | undefined,
  onOwned: () => void,
  repaired = false
) =>
  Effect.gen(function*() {
    const kvKey = BlobMeta.blobKey(key)
    for (let attempt = 0;; attempt++) {
      const { raw, record } = yield* readBlob(cas, "put", key)
      const current = Option.getOrUndefined(record)
      const at = yield* now
      if (current?._tag === "Live") {
        // Blocks of it that were missing or damaged were stored again by this put (see acquireBlock).
        const found: Stored = { locator: reportedLocator(key, current), deduplicated: !repaired, repaired }
        return found
      }
      if (current?._tag === "Pending" && !isStale(cas, current.since, at)) {
        yield* backoff(attempt)
        continue
      }
      // Absent, an abandoned claim or a delete in progress: blocks need no address of the blob's own, so publish directly.
      const live: BlobMeta.Live = {
        _tag: "Live",
        id: randomUUID(),
        createdAt: at,
        contentType,
        storage: { _tag: "Chunked", blockBase: s.blockBase, blocks, chunker }
      }
      // The record owns the references only once it is committed.
      const ok = yield* Effect.uninterruptible(
        Effect.tap(
          atomically(cas, "put", compareAndSet(cas, "put", kvKey, raw, Option.some(BlobMeta.encodeBlob(key, live)))),
          (ok) => ok ? Effect.sync(onOwned) : Effect.void
        )
      )
      if (ok) {
        const stored: Stored = { locator: reportedLocator(key, live), deduplicated: false, repaired }
        return stored
      }
    }
  })
