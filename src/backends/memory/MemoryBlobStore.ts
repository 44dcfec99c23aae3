/**
 * In-memory content-addressed BlobStore, for tests and demos: the BlobStore
 * protocol (kit/BlobStoreProtocol) over a Map.
 *
 * A put keeps private copies of the chunks as they arrive; the blob becomes
 * visible under its key only when the protocol publishes it, once the input
 * has ended and every check passed, so a failed or interrupted put leaves
 * nothing behind. Publishing is one synchronous step, so of two concurrent
 * puts of the same content exactly one stores it and the other reports
 * `deduplicated: true`.
 */
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Sink from "effect/Sink"
import * as Stream from "effect/Stream"
import * as BinaryKey from "../../core/BinaryKey.js"
import * as BlobLocator from "../../core/BlobLocator.js"
import { BlobError } from "../../core/Errors.js"
import type { BlobStat } from "../../core/Models.js"
import { BlobStore } from "../../ports/BlobStore.js"
import * as BlobStoreProtocol from "../../kit/BlobStoreProtocol.js"

const BACKEND = "memory"

/** Largest chunk `get` emits: bounds what one pull copies, whatever size the chunks were written in. */
const READ_CHUNK = 64 * 1024

interface StoredBlob {
  readonly key: BinaryKey.BinaryKey
  readonly locator: BlobLocator.BlobLocator
  /** Private copies of the chunks as they arrived; never handed out. */
  readonly chunks: ReadonlyArray<Uint8Array>
  readonly createdAt: Date
}

/** The locator a blob is reported under: `mem://blobs/<algo>/<hex>`. */
export const locatorOf = (key: BinaryKey.BinaryKey): BlobLocator.BlobLocator =>
  new BlobLocator.BlobLocator({ scheme: "mem", bucket: "blobs", path: `${key.algorithm}/${key.digest}` })

/** Copies of `[start, end)` of the blob, in pieces of at most READ_CHUNK bytes. */
const slices = (chunks: ReadonlyArray<Uint8Array>, start: number, end: number): Stream.Stream<Uint8Array> => {
  // State: index of the current chunk, offset of that chunk in the blob, position to read from.
  type Cursor = readonly [index: number, chunkStart: number, position: number]
  return Stream.unfold<Cursor, Uint8Array>([0, 0, start], ([index, chunkStart, position]) => {
    let i = index
    let base = chunkStart
    while (i < chunks.length && base + chunks[i]!.length <= position) {
      base += chunks[i]!.length
      i++
    }
    if (position >= end || i >= chunks.length) return Option.none()
    const chunk = chunks[i]!
    const from = position - base
    const to = Math.min(chunk.length, end - base, from + READ_CHUNK)
    return Option.some([chunk.slice(from, to), [i, base, base + to]] as const)
  })
}

const toStat = (blob: StoredBlob): BlobStat => ({
  key: blob.key,
  size: blob.key.size,
  locator: Option.some(blob.locator),
  createdAt: Option.some(blob.createdAt)
})

/** The raw operations over one Map of blobs (keyed by the key's text). */
const raw = (blobs: Map<string, StoredBlob>): BlobStoreProtocol.Raw => ({
  backend: BACKEND,
  // BlobStat has no content type, so `plan.contentType` has nowhere to go here.
  stage: () =>
    Effect.sync(() => {
      const chunks: Array<Uint8Array> = []
      return {
        sink: Sink.forEachChunk((input: Chunk.Chunk<Uint8Array>) =>
          Effect.sync(() => {
            for (const c of input) chunks.push(new Uint8Array(c))
          })
        ),
        publish: (key) =>
          Effect.map(Clock.currentTimeMillis, (now) => {
            const locator = locatorOf(key)
            const id = BinaryKey.render(key)
            // One synchronous step: concurrent puts of the same content store it once.
            const deduplicated = blobs.has(id)
            if (!deduplicated) blobs.set(id, { key, locator, chunks, createdAt: new Date(now) })
            return { locator, deduplicated, bytesWritten: deduplicated ? 0 : key.size }
          })
      }
    }),
  read: (key, { end, start }) =>
    Stream.suspend(() => {
      const blob = blobs.get(BinaryKey.render(key))
      return blob === undefined
        ? Stream.fail(new BlobError({ reason: "NotFound", backend: BACKEND, method: "get", description: `no blob ${key}` }))
        : slices(blob.chunks, start, end)
    }),
  stat: (key) => Effect.sync(() => Option.map(Option.fromNullable(blobs.get(BinaryKey.render(key))), toStat)),
  // Only real removals are published: deleting a missing blob changes nothing to observe.
  delete: (key) => Effect.sync(() => blobs.delete(BinaryKey.render(key))),
  // A live iterator over the map: blobs deleted during the listing are skipped, nothing is copied up front.
  list: Stream.suspend(() => Stream.map(Stream.fromIterable(blobs.values()), toStat))
})

/** The store and a handle on its contents, for fault-injection tests. */
export interface Inspectable {
  readonly store: BlobStore["Type"]
  /**
   * Flips one stored byte of `key` (offset within the blob) without touching
   * its key, to exercise the Corrupted path; false when there is no such byte.
   */
  readonly corrupt: (key: BinaryKey.BinaryKey, offset: number) => Effect.Effect<boolean>
}

/** Builds an empty store and a handle to corrupt its contents (tests of the Corrupted path). */
export const makeInspectable: Effect.Effect<Inspectable> = Effect.gen(function*() {
  const blobs = new Map<string, StoredBlob>()
  const store = yield* BlobStoreProtocol.make(raw(blobs))
  const corrupt = (key: BinaryKey.BinaryKey, offset: number) =>
    Effect.sync(() => {
      const blob = blobs.get(BinaryKey.render(key))
      if (blob === undefined) return false
      let base = 0
      for (const c of blob.chunks) {
        if (offset >= base && offset < base + c.length) {
          c[offset - base] = c[offset - base]! ^ 0xff
          return true
        }
        base += c.length
      }
      return false
    })
  return { store, corrupt }
})

/** Builds an empty in-memory BlobStore. */
export const make: Effect.Effect<BlobStore["Type"]> = Effect.map(makeInspectable, (i) => i.store)

/** A fresh, empty in-memory BlobStore. */
export const layer: Layer.Layer<BlobStore> = Layer.effect(BlobStore, make)
