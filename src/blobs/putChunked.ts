/**
 * Chunked put: the stream is cut into content-defined blocks (FastCDC 2020,
 * see Chunker). Each block is hashed and stored once under its own key (see
 * blocks). Blocks of a put are stored by background fibers while the input
 * keeps flowing; distinct new blocks are taken up to BATCH at a time and
 * stored concurrently, each by acquireBlock. A put holds about IN_FLIGHT_BYTES of blocks in memory
 * (at least PARALLEL_BLOCKS + 1 blocks). The blob record, published at the
 * end, holds the manifest and owns one reference per distinct block;
 * references taken by a put that fails, is interrupted or finds the blob
 * already stored are released.
 *
 * Blocks are copied into pooled buffers, each given back once its block is
 * stored, and the input chunks once cut (see Lending): a chunked put makes
 * no garbage of its bytes either.
 */
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Sink from "effect/Sink"
import type * as BinaryKey from "../core/BinaryKey.js"
import type * as BlobLocator from "../core/BlobLocator.js"
import type { BlobError } from "../core/Errors.js"
import * as Hashing from "../core/Hashing.js"
import * as Lending from "../core/Lending.js"
import type { CheckedPlan, Published, Staging } from "../kit/BlobStoreProtocol.js"
import * as BlobMeta from "./BlobMeta.js"
import { acquireBlocks, type Held, releaseUnowned } from "./blocks.js"
import * as Chunker from "./Chunker.js"
import type { Cas } from "./context.js"
import type { Settings } from "./options.js"
import { publishChunked } from "./publish.js"

/**
 * Bytes of blocks one put holds in flight (being hashed or stored): enough
 * blocks to keep the thread pool's hashing and the store's writes busy while
 * the main thread scans, and to fill a batch (see BATCH).
 */
export const IN_FLIGHT_BYTES = 8 * 1024 * 1024

/** Blocks in flight at the least, whatever their size. */
export const PARALLEL_BLOCKS = 4

/** Blocks taken from the queue together and stored concurrently (see acquireBlocks). */
export const BATCH = 8

/** Blocks of at most `max` bytes a put holds in flight. */
const inFlight = (max: number) => Math.max(PARALLEL_BLOCKS, Math.floor(IN_FLIGHT_BYTES / max))

/** A distinct block of the blob, hashed, waiting for the batcher. */
interface Queued {
  readonly key: BinaryKey.BinaryKey
  /** A pooled buffer, given back once stored. */
  readonly bytes: Uint8Array
  readonly slot: Slot
}

/** Where a block of the blob lives once stored (or why it could not be). */
type Slot = Deferred.Deferred<BlobLocator.BlobLocator, BlobError>

/** A block of the blob, in order: its key and place are known once it is hashed and stored. */
interface Entry {
  readonly offset: number
  readonly done: Deferred.Deferred<BlobMeta.BlockRef, BlobError>
}

/** One chunked put in progress. */
interface ChunkedPut {
  readonly cas: Cas
  readonly settings: Settings
  readonly algorithm: BinaryKey.HashAlgorithm
  readonly chunker: Chunker.Chunker
  /** Bounds the blocks in flight, and so the memory in use. */
  readonly permits: Effect.Semaphore
  /** Distinct blocks hashed, for the batcher to store. */
  readonly queue: Queue.Queue<Queued>
  readonly running: Set<Fiber.RuntimeFiber<void>>
  /** One acquisition per distinct block (by block record key), however often the blob repeats it. */
  readonly slots: Map<string, Slot>
  /** The blob's blocks in order. */
  readonly entries: Array<Entry>
  readonly held: Held
  /** The first failure of a block: later blocks fail with it at once. */
  failure: BlobError | undefined
  offset: number
  newBytes: number
  /** A block found recorded had missing or damaged bytes, which this put stored again. */
  repaired: boolean
  /** Set once the blob record owns the references in `held`. */
  owned: boolean
}

/**
 * Hashes one block (`bytes`, a pooled buffer) and, unless the blob already
 * has it, queues it for the batcher; the permit it holds is released once
 * the bytes are no longer needed. Hashed here, synchronously: a digest in
 * the thread pool (WebCrypto) completes on a macrotask, which a fiber
 * looping on microtasks (gc over the memory store, in the lifecycle tests)
 * starved, hanging the put.
 */
const hashAndStore = (put: ChunkedPut, bytes: Uint8Array) =>
  Effect.gen(function*() {
    const hasher = yield* Hashing.makeHasher(put.algorithm)
    hasher.update(bytes)
    const key = hasher.key()
    const kvKey = BlobMeta.blockKey(key)
    const known = put.slots.get(kvKey)
    if (known !== undefined) {
      Lending.giveBack(bytes)
      yield* put.permits.release(1)
      return { key, locator: yield* Deferred.await(known) }
    }
    const slot = yield* Deferred.make<BlobLocator.BlobLocator, BlobError>()
    put.slots.set(kvKey, slot)
    yield* Queue.offer(put.queue, { key, bytes, slot })
    return { key, locator: yield* Deferred.await(slot) }
  })

/**
 * Stores queued blocks, up to BATCH at a time (see acquireBlocks), for the
 * whole put. Each store write gets a view of its own: it must not give the
 * pooled buffer back, because the block may be written again.
 */
const batcher = (put: ChunkedPut) =>
  Effect.forever(Effect.gen(function*() {
    const items = Chunk.toReadonlyArray(yield* Queue.takeBetween(put.queue, 1, BATCH))
    const exit = yield* Effect.exit(
      acquireBlocks(put.cas, put.settings, items.map((i) => ({ key: i.key, bytes: i.bytes.subarray(0) })), put.held)
    )
    for (const item of items) Lending.giveBack(item.bytes)
    yield* put.permits.release(items.length)
    if (Exit.isFailure(exit)) {
      const failure = Cause.failureOption(exit.cause)
      if (Option.isSome(failure)) put.failure ??= failure.value
      yield* Effect.forEach(items, (i) => Deferred.failCause(i.slot, exit.cause), { discard: true })
      return
    }
    yield* Effect.forEach(items, (item, j) => {
      const taken = exit.value[j]!
      if (taken.written) put.newBytes += item.bytes.length
      if (taken.repaired) put.repaired = true
      return Deferred.succeed(item.slot, taken.locator)
    }, { discard: true })
  }))

/** Starts hashing and storing a block cut from the input, in the background; notes its place in the manifest. */
const storeBlock = (put: ChunkedPut, bytes: Uint8Array) =>
  Effect.gen(function*() {
    if (put.failure !== undefined) {
      Lending.giveBack(bytes)
      return yield* put.failure
    }
    yield* put.permits.take(1)
    const entry: Entry = { offset: put.offset, done: yield* Deferred.make<BlobMeta.BlockRef, BlobError>() }
    put.entries.push(entry)
    put.offset += bytes.length
    const fiber = yield* hashAndStore(put, bytes).pipe(
      Effect.map(({ key, locator }): BlobMeta.BlockRef => ({ key, offset: entry.offset, locator })),
      Effect.tapError((e) => Effect.sync(() => (put.failure ??= e))),
      Effect.exit,
      Effect.flatMap((exit) => Deferred.done(entry.done, exit)),
      Effect.asVoid,
      Effect.forkDaemon
    )
    put.running.add(fiber)
    fiber.addObserver(() => put.running.delete(fiber))
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
    const manifest = yield* Effect.forEach(put.entries, (e) => Deferred.await(e.done))
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
    const blocks = inFlight(layout.max)
    const blockPool = new Lending.Pool(layout.max, { keep: blocks + 2 })
    const put: ChunkedPut = {
      cas,
      settings: s,
      algorithm: plan.algorithm,
      chunker: Chunker.unsafeMake(layout, {
        take: () => blockPool.take(),
        finish: (buffer, size) => blockPool.lend(buffer as Buffer, size)
      }, { chunker: layout.chunker }),
      permits: yield* Effect.makeSemaphore(blocks),
      queue: yield* Queue.unbounded<Queued>(),
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
    const storing = yield* Effect.forkDaemon(batcher(put))
    put.running.add(storing)
    return {
      sink: Sink.forEachChunk(consume(put)),
      publish: (key) => publish(put, key, plan.contentType)
    } satisfies Staging
  })
