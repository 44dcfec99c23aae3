/**
 * Reads, of both layouts: the bytes as stored, which the BlobStore protocol
 * verifies (a full read re-hashed, a ranged one length-checked). A full read
 * of a chunked blob fetches the next blocks while the current one is
 * consumed (READ_AHEAD). A ranged read of a chunked blob does better: it
 * fetches only the blocks it overlaps, each whole, checks each against its
 * block key before emitting any of its bytes, then emits the requested slice. An object of a live
 * blob found missing is Corrupted, unless the blob was deleted meanwhile.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import type * as BinaryKey from "../core/BinaryKey.js"
import type * as BlobLocator from "../core/BlobLocator.js"
import type { ObjectStoreError } from "../core/Errors.js"
import * as Hashing from "../core/Hashing.js"
import type { ReadRange } from "../kit/BlobStoreProtocol.js"
import { getRange } from "../ports/ObjectStore.js"
import * as BlobMeta from "./BlobMeta.js"
import * as Chunker from "./Chunker.js"
import type { Cas } from "./context.js"
import { corrupted, fail, fromPortError } from "./errors.js"
import { readBlob, sameBytes } from "./records.js"

/** The blob record as a read found it: `raw` tells a deleted blob from lost bytes (see `whenMissing`). */
interface Found {
  readonly key: BinaryKey.BinaryKey
  readonly raw: Option.Option<Uint8Array>
}

/**
 * An object of a live blob read as missing: the blob was deleted during
 * the read (NotFound), or its bytes are lost (Corrupted) when the record
 * is still the one the read started from.
 */
const whenMissing = (cas: Cas, found: Found, ranged: boolean) => (e: ObjectStoreError) =>
  e.reason === "NotFound"
    ? Effect.flatMap(Effect.mapError(cas.kv.get(BlobMeta.blobKey(found.key)), fromPortError("get")), (again) =>
      Effect.fail(
        sameBytes(again, found.raw)
          ? corrupted("get", found.key, `are missing: ${e.message}`)
          : fail("NotFound", "get", `${found.key} was deleted during the read`)
      ))
    : ranged && e.reason === "InvalidInput"
    // The range was checked against the recorded size, so the object is shorter than it should be.
    ? Effect.fail(corrupted("get", found.key, `are shorter than recorded: ${e.message}`))
    : Effect.fail(fromPortError("get")(e))

/** One object of the blob, its errors mapped by `whenMissing`. */
const readObject = (cas: Cas, found: Found, locator: BlobLocator.BlobLocator, range?: ReadRange) =>
  // Through getRange: a store without ranged reads serves the whole object, cut here.
  getRange(cas.objects, locator, range).pipe(
    Stream.catchAll((e) => Stream.fromEffect(whenMissing(cas, found, range !== undefined)(e)))
  )

/**
 * Reads one whole block and checks it against its key before any byte of it
 * is used. A block is held in memory whole (it must be verified before it is
 * emitted), so its size is capped: the record's block size must be at most
 * the largest block any chunked layout writes (Chunker.MAX_BLOCK; not the
 * configured layout's max, which may have been lowered since the blob was
 * stored), and the object may not carry a byte more than the record says. A
 * longer object (replaced behind the store's back) stops being read at the
 * first extra byte and fails with Corrupted, instead of being loaded whole.
 */
const readVerifiedBlock = (cas: Cas, found: Found, block: BlobMeta.BlockRef) =>
  Effect.gen(function*() {
    const size = block.key.size
    if (size > Chunker.MAX_BLOCK) {
      return yield* corrupted("get", found.key, `name block ${block.key}, longer than the largest block (${Chunker.MAX_BLOCK} bytes)`)
    }
    const bytes = new Uint8Array(size)
    const tooLong = corrupted("get", found.key, `hold more than the ${size} bytes of block ${block.key} at offset ${block.offset}`)
    const at = yield* Stream.runFoldEffect(
      readObject(cas, found, block.locator),
      0,
      (at, p) => {
        if (at + p.length > size) return Effect.fail(tooLong)
        bytes.set(p, at)
        return Effect.succeed(at + p.length)
      }
    )
    const hasher = yield* Hashing.makeHasher(block.key.algorithm)
    hasher.update(at === size ? bytes : bytes.subarray(0, at))
    if (hasher.size !== size || hasher.digest() !== block.key.digest) {
      return yield* corrupted("get", found.key, `do not match block ${block.key} at offset ${block.offset}`)
    }
    return bytes
  })

/** Index of the block holding byte `position` (blocks are sorted by offset and non-empty). */
const blockAt = (blocks: ReadonlyArray<BlobMeta.BlockRef>, position: number): number => {
  let lo = 0
  let hi = blocks.length - 1
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1
    if (blocks[mid]!.offset <= position) lo = mid
    else hi = mid - 1
  }
  return lo
}

/** `[start, end)` of a chunked blob: the blocks it overlaps, each verified, sliced. */
const readBlocks = (cas: Cas, found: Found, blocks: ReadonlyArray<BlobMeta.BlockRef>, start: number, end: number) => {
  if (start === end) return Stream.empty
  const first = blockAt(blocks, start)
  const last = blockAt(blocks, end - 1)
  return Stream.fromIterable(blocks.slice(first, last + 1)).pipe(
    // Blocks in flight: the next ones are fetched and verified while the current one is consumed.
    Stream.mapEffect((b) =>
      Effect.map(readVerifiedBlock(cas, found, b), (bytes) =>
        bytes.subarray(Math.max(0, start - b.offset), Math.min(bytes.length, end - b.offset))), { concurrency: READ_AHEAD })
  )
}

/** Blocks of a read fetched at once (each held in memory whole, up to its size). */
export const READ_AHEAD = 2

/**
 * One whole block's chunks as the store emits them (no copy), refusing an
 * object longer than its block: the read-ahead of a full read holds it.
 */
const readAhead = (cas: Cas, found: Found, block: BlobMeta.BlockRef) =>
  Stream.runFoldEffect(readObject(cas, found, block.locator), { chunks: [] as Array<Uint8Array>, at: 0 }, (acc, c) => {
    if (acc.at + c.length > block.key.size) {
      return Effect.fail(corrupted("get", found.key, `hold more than the ${block.key.size} bytes of block ${block.key} at offset ${block.offset}`))
    }
    acc.chunks.push(c)
    acc.at += c.length
    return Effect.succeed(acc)
  })

/**
 * A whole chunked blob: READ_AHEAD blocks fetched at once, emitted in order
 * (the protocol verifies the whole content as it flows, so blocks are not
 * hashed one by one here).
 */
const readAll = (cas: Cas, found: Found, blocks: ReadonlyArray<BlobMeta.BlockRef>) =>
  Stream.fromIterable(blocks).pipe(
    Stream.mapEffect((b) => Effect.map(readAhead(cas, found, b), (read) => read.chunks), { concurrency: READ_AHEAD }),
    Stream.flattenIterables
  )

/** The bytes of `range` of a live blob stored as `storage`. */
const readStorage = (cas: Cas, found: Found, storage: BlobMeta.Storage, range: ReadRange) => {
  const whole = range.start === 0 && range.end === found.key.size
  if (storage._tag === "Monolithic") return readObject(cas, found, storage.locator, whole ? undefined : range)
  if (!whole) return readBlocks(cas, found, storage.blocks, range.start, range.end)
  return readAll(cas, found, storage.blocks)
}

/** The protocol's `read`: see the module comment. */
export const read = (cas: Cas) => (key: BinaryKey.BinaryKey, range: ReadRange) =>
  Stream.unwrap(
    Effect.gen(function*() {
      const { raw, record } = yield* readBlob(cas, "get", key)
      const live = Option.getOrUndefined(record)
      if (live?._tag !== "Live") return yield* fail("NotFound", "get", `no blob ${key}`)
      return readStorage(cas, { key, raw }, live.storage, range)
    })
  )
