/**
 * Chunked put: the stream is cut into content-defined blocks (FastCDC, see
 * Chunker). Each block is hashed and stored once under its own key (see
 * blocks). Up to four blocks of a put are stored at once by background
 * fibers while the input keeps flowing, so a put holds at most about five
 * blocks (`max` bytes each) in memory. The blob record, published at the
 * end, holds the manifest and owns one reference per distinct block;
 * references taken by a put that fails, is interrupted or finds the blob
 * already stored are released.
 *
 * Blocks are copied into pooled buffers, each given back once its block is
 * stored, and the input chunks once cut (see Lending): a chunked put makes
 * no garbage of its bytes either.
 */
import type * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Sink from "effect/Sink"
import type * as BinaryKey from "../core/BinaryKey.js"
import type * as BlobLocator from "../core/BlobLocator.js"
import type { BlobError } from "../core/Errors.js"
import * as Hashing from "../core/Hashing.js"
import * as Lending from "../core/Lending.js"
import type { CheckedPlan, Published, Staging } from "../kit/BlobStoreProtocol.js"
import * as BlobMeta from "./BlobMeta.js"
import { acquireBlock, type Held, releaseUnowned } from "./blocks.js"
import * as Chunker from "./Chunker.js"
import type { Cas } from "./context.js"
import type { Settings } from "./options.js"
import { publishChunked } from "./publish.js"

/** Blocks of one put being stored at once (each holds up to `max` bytes in memory). */
export const PARALLEL_BLOCKS = 4

type Slot = Deferred.Deferred<BlobLocator.BlobLocator, BlobError>

/** One chunked put in progress. */
interface ChunkedPut {
  readonly cas: Cas
  readonly settings: Settings
  readonly algorithm: BinaryKey.HashAlgorithm
  readonly chunker: Chunker.Chunker
  /** Bounds the block writers running at once, and so the memory in use. */
  readonly permits: Effect.Semaphore
  readonly running: Set<Fiber.RuntimeFiber<void>>
  /** One acquisition per distinct block (by block record key), however often the blob repeats it. */
  readonly slots: Map<string, Slot>
  /** The blob's blocks in order. */
  readonly entries: Array<{ readonly key: BinaryKey.BinaryKey; readonly offset: number; readonly slot: Slot }>
  readonly held: Held
  /** The first failure of a block writer: later blocks fail with it at once. */
  failure: BlobError | undefined
  offset: number
  newBytes: number
  /** A block found recorded had missing or damaged bytes, which this put stored again. */
  repaired: boolean
  /** Set once the blob record owns the references in `held`. */
  owned: boolean
}

/**
 * Stores one block in the background: `bytes` (a pooled block) is the
 * writer's to give back once stored. The store gets a view of its own: its
 * write must not give the buffer back, because the block may be written
 * again (see acquireBlock).
 */
const writeBlock = (put: ChunkedPut, key: BinaryKey.BinaryKey, bytes: Uint8Array, slot: Slot) =>
  Effect.gen(function*() {
    yield* put.permits.take(1)
    const fiber = yield* acquireBlock(put.cas, put.settings, key, bytes.subarray(0), put.held).pipe(
      Effect.ensuring(Effect.sync(() => Lending.giveBack(bytes))),
      Effect.map((taken) => {
        if (taken.written) put.newBytes += bytes.length
        if (taken.repaired) put.repaired = true
        return taken.locator
      }),
      Effect.tapError((e) => Effect.sync(() => (put.failure ??= e))),
      Effect.exit,
      Effect.flatMap((exit) => Deferred.done(slot, exit)),
      Effect.asVoid,
      Effect.ensuring(put.permits.release(1)),
      Effect.forkDaemon
    )
    put.running.add(fiber)
    fiber.addObserver(() => put.running.delete(fiber))
  })

/** Hashes a block cut from the input, notes it in the manifest and stores it unless the blob already has it. */
const storeBlock = (put: ChunkedPut, bytes: Uint8Array) =>
  Effect.gen(function*() {
    if (put.failure !== undefined) return yield* put.failure
    const blockHasher = yield* Hashing.makeHasher(put.algorithm)
    blockHasher.update(bytes)
    const key = blockHasher.key()
    const kvKey = BlobMeta.blockKey(key)
    let slot = put.slots.get(kvKey)
    if (slot !== undefined) {
      Lending.giveBack(bytes)
    } else {
      slot = yield* Deferred.make<BlobLocator.BlobLocator, BlobError>()
      put.slots.set(kvKey, slot)
      yield* writeBlock(put, key, bytes, slot)
    }
    put.entries.push({ key, offset: put.offset, slot })
    put.offset += bytes.length
  })

/** Cuts input chunks (already hashed and size-checked) into blocks. */
const consume = (put: ChunkedPut) => (chunks: Chunk.Chunk<Uint8Array>) =>
  Effect.forEach(chunks, (c) => {
    const blocks = put.chunker.push(c)
    // Hashed already and copied by the chunker: the input chunk is free again.
    Lending.giveBack(c)
    return Effect.forEach(blocks, (b) => storeBlock(put, b), { discard: true })
  }, { discard: true })

/** Stores the last block, waits for every block and publishes the blob record (the key has matched the plan). */
const publish = (put: ChunkedPut, key: BinaryKey.BinaryKey, contentType: string | undefined) =>
  Effect.gen(function*() {
    const last = put.chunker.flush()
    if (last !== undefined) yield* storeBlock(put, last)
    const manifest = yield* Effect.forEach(put.entries, (e) =>
      Effect.map(Deferred.await(e.slot), (locator): BlobMeta.BlockRef => ({ key: e.key, offset: e.offset, locator })))
    const stored = yield* publishChunked(put.cas, put.settings, key, manifest, put.chunker.id, contentType, () => {
      put.owned = true
    }, put.repaired)
    return { ...stored, bytesWritten: put.newBytes, blocks: manifest.length } satisfies Published
  })

/**
 * Stops the block writers (each finishes or undoes its current step), then,
 * unless the blob record now owns them, gives back the references the put took.
 */
const stop = (put: ChunkedPut) =>
  Effect.zipRight(
    Fiber.interruptAll(Array.from(put.running)),
    // Suspended: `held` is read only once the writers have stopped.
    Effect.suspend(() => releaseUnowned(put.cas, "put", "put", put.held, put.owned))
  )

/** Opens a chunked put with the chunker and block sizes of `layout`; its scope's end stops the writers and releases unowned references. */
export const stage = (cas: Cas, s: Settings, plan: CheckedPlan, layout: Chunker.ChunkerOptions & { readonly chunker?: Chunker.ChunkerId | undefined }) =>
  Effect.gen(function*() {
    const blockPool = new Lending.Pool(layout.max, { keep: PARALLEL_BLOCKS + 2 })
    const put: ChunkedPut = {
      cas,
      settings: s,
      algorithm: plan.algorithm,
      chunker: Chunker.unsafeMake(layout, {
        take: () => blockPool.take(),
        finish: (buffer, size) => blockPool.lend(buffer as Buffer, size)
      }, { chunker: layout.chunker }),
      permits: yield* Effect.makeSemaphore(PARALLEL_BLOCKS),
      running: new Set(),
      slots: new Map(),
      entries: [],
      held: new Map(),
      failure: undefined,
      offset: 0,
      newBytes: 0,
      repaired: false,
      owned: false
    }
    yield* Effect.addFinalizer(() => stop(put))
    return {
      sink: Sink.forEachChunk(consume(put)),
      publish: (key) => publish(put, key, plan.contentType)
    } satisfies Staging
  })
