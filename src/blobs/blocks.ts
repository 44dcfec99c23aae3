/**
 * Block references of the chunked layout. Each block is stored once under
 * its own key, with a record counting the blobs (and unfinished puts) that
 * reference it: the first writer puts the object and creates the record
 * with one reference, later ones only increment it. A put notes the
 * references it takes in `Held`; the blob record owns them once published,
 * otherwise they are released. A block whose count drops to zero is marked
 * Deleting, its object removed, then its record.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { randomUUID } from "node:crypto"
import type * as BinaryKey from "../core/BinaryKey.js"
import type * as BlobLocator from "../core/BlobLocator.js"
import type { BlobError } from "../core/Errors.js"
import { type KvCheck, type KvWrite } from "../ports/KeyValueStore.js"
import * as KV from "../ports/KeyValueStore.js"
import * as BlobMeta from "./BlobMeta.js"
import * as Counters from "./counters.js"
import { blockLocator } from "./addresses.js"
import { type Cas, now } from "./context.js"
import { fail, fromPortError } from "./errors.js"
import { damaged, discard, exists, writeObject } from "./objects.js"
import type { Settings } from "./options.js"
import { compareAndSet, type Read, readBlock, sameBytes } from "./records.js"

/** Block records read or objects removed at once. */
export const CONCURRENCY = 16

/** References a put holds on blocks, by block record key; owned by the blob record once it is published. */
export type Held = Map<string, { readonly key: BinaryKey.BinaryKey; readonly locator: BlobLocator.BlobLocator }>

type LiveBlock = Extract<BlobMeta.BlockRecord, { readonly _tag: "Live" }>

/**
 * Replaces the block record read (`read.raw`) by `next`, noting the reference
 * in `held` when that succeeds: both happen together, so an interrupted put
 * releases exactly what it took.
 */
const takeReference = (
  cas: Cas,
  method: string,
  key: BinaryKey.BinaryKey,
  read: Read<BlobMeta.BlockRecord>,
  next: LiveBlock,
  held: Held
) => {
  const kvKey = BlobMeta.blockKey(key)
  // Stamped with the time: gc leaves a block alone for its grace period after a reference is taken.
  return Effect.flatMap(now, (at) => Effect.tap(
    compareAndSet(cas, method, kvKey, read.raw, Option.some(BlobMeta.encodeBlock({ ...next, at }))),
    (ok) => ok ? Effect.sync(() => held.set(kvKey, { key, locator: next.locator })) : Effect.void
  ))
}

/** One more reference on the live block `live` (as read in `read`). */
const addReference = (
  cas: Cas,
  method: string,
  key: BinaryKey.BinaryKey,
  read: Read<BlobMeta.BlockRecord>,
  live: LiveBlock,
  held: Held
) => Effect.uninterruptible(takeReference(cas, method, key, read, { ...live, refs: live.refs + 1 }, held))

/**
 * Takes one reference on the block `key` (whose bytes are `bytes`),
 * storing the bytes when no live copy exists, and records it in `held`.
 * Returns where the block lives and whether its bytes were written now.
 */
export const acquireBlock = (cas: Cas, s: Settings, key: BinaryKey.BinaryKey, bytes: Uint8Array, held: Held) =>
  Effect.gen(function*(): Effect.fn.Return<Acquired, BlobError> {
    while (true) {
      const read = yield* readBlock(cas, "put", BlobMeta.blockKey(key))
      const current = Option.getOrUndefined(read.record)
      if (current?._tag === "Live") {
        if (!(yield* addReference(cas, "put", key, read, current, held))) continue
        // Heal (see options.Heal): the reference we hold keeps the record Live while its bytes are stored again.
        if (yield* damaged(cas, "put", current.locator, key, s.heal)) {
          yield* writeObject(cas, "put", current.locator, bytes)
          return { locator: current.locator, written: true, repaired: true }
        }
        return { locator: current.locator, written: false, repaired: false }
      }
      // No live copy: write the bytes first, then publish the record, so a live record always has its object.
      // After a Deleting record, a fresh address: the unfinished delete may still remove the usual one.
      // Uninterruptible as a whole: an interruption landing just after the object became visible would
      // otherwise leave it without a record (interruption waits for one block write at most).
      const target = yield* blockLocator(s, key, current !== undefined)
      const ok = yield* Effect.uninterruptible(Effect.zipRight(
        writeObject(cas, "put", target, bytes),
        takeReference(cas, "put", key, read, { _tag: "Live", refs: 1, locator: target }, held)
      ))
      if (!ok) {
        if (current !== undefined) yield* discard(cas, target, "lost the race for a block")
        continue
      }
      // The record was absent when read, but a delete of an earlier copy may have removed the object after we
      // wrote it and before its record disappeared; we hold the record now, so rewriting is safe.
      if (!(yield* exists(cas, "put", target))) yield* writeObject(cas, "put", target, bytes)
      yield* Effect.mapError(cas.replicas.add(key, target), fromPortError("put"))
      return { locator: target, written: true, repaired: false }
    }
  })

/** A block a put stores: its key and bytes. */
export interface NewBlock {
  readonly key: BinaryKey.BinaryKey
  readonly bytes: Uint8Array
}

/** What `acquireBlock` (or `acquireBlocks`, per block) did. */
export interface Acquired {
  readonly locator: BlobLocator.BlobLocator
  /** The bytes were written by this call. */
  readonly written: boolean
  /** A live copy was found damaged and its bytes stored again. */
  readonly repaired: boolean
}

/**
 * `acquireBlock` for several blocks of one put, concurrently. A batched form
 * (objects written, then one KV commit for all new records) was tried and
 * left orphan objects when one of the batch's writes failed (the chaos
 * invariants caught it) and measured no faster, so each block goes through
 * `acquireBlock`, whose write-then-commit is safe per block.
 */
export const acquireBlocks = (cas: Cas, s: Settings, blocks: ReadonlyArray<NewBlock>, held: Held) =>
  Effect.forEach(blocks, (b) => acquireBlock(cas, s, b.key, b.bytes, held), { concurrency: CONCURRENCY })

/**
 * Like `acquireBlock`, for a block whose bytes are already an object at
 * `source` (a staged part, see `assemble`): when no live copy exists the
 * object is moved to the block's address, otherwise it is removed.
 */
export const adoptBlock = (cas: Cas, s: Settings, key: BinaryKey.BinaryKey, source: BlobLocator.BlobLocator, held: Held) =>
  Effect.gen(function*() {
    const move = (from: BlobLocator.BlobLocator, to: BlobLocator.BlobLocator) =>
      Effect.mapError(cas.objects.move(from, to), fromPortError("assemble"))
    while (true) {
      const read = yield* readBlock(cas, "assemble", BlobMeta.blockKey(key))
      const current = Option.getOrUndefined(read.record)
      if (current?._tag === "Live") {
        if (!(yield* addReference(cas, "assemble", key, read, current, held))) continue
        yield* discard(cas, source, "a live copy of the block exists")
        return current.locator
      }
      const target = yield* blockLocator(s, key, current !== undefined)
      const ok = yield* Effect.uninterruptible(Effect.zipRight(
        move(source, target),
        takeReference(cas, "assemble", key, read, { _tag: "Live", refs: 1, locator: target }, held)
      ))
      if (!ok) {
        // Lost a race for the record. At a private (alternate) address the bytes go back to be tried again;
        // at the usual one they are valid bytes of this very block, which the next round finds or replaces.
        if (current !== undefined) yield* move(target, source)
        continue
      }
      if (!(yield* exists(cas, "assemble", target))) {
        // A delete of an earlier copy removed the object between our move and our record: the bytes are gone.
        return yield* fail("Conflict", "assemble", `block ${key} was removed by a concurrent delete; upload it again`)
      }
      yield* Effect.mapError(cas.replicas.add(key, target), fromPortError("assemble"))
      return target
    }
  })

/** A block whose last reference a release drops: its record now says Deleting (`tomb`). */
interface Dropped {
  readonly kvKey: string
  readonly key: BinaryKey.BinaryKey
  readonly locator: BlobLocator.BlobLocator
  readonly tomb: Uint8Array
}

/** The one commit of a release: each live block loses a reference, or becomes Deleting when it loses its last. */
const releasePlan = (
  current: ReadonlyArray<Read<BlobMeta.BlockRecord> & { readonly kvKey: string; readonly key: BinaryKey.BinaryKey }>,
  blob: { readonly kvKey: string; readonly raw: Uint8Array } | undefined,
  token: string,
  since: number
) => {
  const checks: Array<KvCheck> = []
  const writes: Array<KvWrite> = []
  const dropped: Array<Dropped> = []
  if (blob !== undefined) {
    checks.push({ key: blob.kvKey, expected: Option.some(blob.raw) })
    writes.push(KV.del(blob.kvKey))
  }
  for (const c of current) {
    const record = Option.getOrUndefined(c.record)
    // A reference is only ever held on a live block; anything else has nothing to release.
    if (record?._tag !== "Live") continue
    checks.push({ key: c.kvKey, expected: c.raw })
    if (record.refs > 1) {
      writes.push(KV.put(c.kvKey, BlobMeta.encodeBlock({ ...record, refs: record.refs - 1 })))
    } else {
      const tomb = BlobMeta.encodeBlock({ _tag: "Deleting", token, since, locator: record.locator })
      writes.push(KV.put(c.kvKey, tomb))
      dropped.push({ kvKey: c.kvKey, key: c.key, locator: record.locator, tomb })
    }
  }
  return { checks, writes, dropped }
}

/** Removes a block left without references: its object, its replica entry, then its Deleting record. */
const removeBlock = (cas: Cas, method: string, d: Dropped) =>
  Effect.gen(function*() {
    yield* Effect.mapError(cas.objects.delete(d.locator), fromPortError(method))
    yield* Effect.mapError(cas.replicas.remove(d.key, d.locator), fromPortError(method))
    // Fails harmlessly when a put has taken the record over meanwhile.
    yield* compareAndSet(cas, method, d.kvKey, Option.some(d.tomb), Option.none())
  })

/**
 * Drops one reference on each block, atomically, together with removing
 * the blob record `blob` when given (the delete of a chunked blob). Blocks
 * left without references are then removed. False when `blob` no longer
 * holds the expected value (someone else changed or removed it first).
 */
export const releaseBlocks = (
  cas: Cas,
  method: string,
  blocks: ReadonlyArray<{ readonly key: BinaryKey.BinaryKey }>,
  blob?: { readonly kvKey: string; readonly raw: Uint8Array }
) =>
  Effect.gen(function*() {
    const token = randomUUID()
    while (true) {
      const current = yield* Effect.forEach(blocks, (b) => {
        const kvKey = BlobMeta.blockKey(b.key)
        return Effect.map(readBlock(cas, method, kvKey), (read) => ({ ...read, kvKey, key: b.key }))
      }, { concurrency: CONCURRENCY })
      const { checks, dropped, writes } = releasePlan(current, blob, token, yield* now)
      if (!(yield* Effect.mapError(Counters.commit(cas.kv, checks, writes), fromPortError(method)))) {
        if (blob !== undefined) {
          const again = yield* Effect.mapError(cas.kv.get(blob.kvKey), fromPortError(method))
          if (!sameBytes(again, Option.some(blob.raw))) return false
        }
        continue
      }
      // The records now say Deleting: no put uses these addresses until the records are gone.
      yield* Effect.forEach(dropped, (d) => removeBlock(cas, method, d), { concurrency: CONCURRENCY, discard: true })
      return true
    }
  })

/**
 * Releases the references of a put or assembly that did not publish (failed,
 * interrupted or deduplicated); failures only cost space, so they are logged.
 */
export const releaseUnowned = (cas: Cas, method: string, what: string, held: Held, owned: boolean) =>
  owned || held.size === 0
    ? Effect.void
    : releaseBlocks(cas, method, Array.from(held.values())).pipe(
      Effect.catchAll((e) => Effect.logWarning(`cas: could not release the blocks of an unfinished ${what}: ${e.message}`)),
      Effect.asVoid
    )
