/**
 * Hashing as the bytes go by, for resumable uploads begun in this process.
 *
 * Completing an upload needs the key of the whole content and, to adopt
 * segments as blocks, the key of each segment. Reading everything back at
 * `complete` doubles the I/O of an upload, so the process that writes the
 * segments hashes them on the way: each segment on its own while it streams,
 * and the whole content in order. Segments land out of order (several spans
 * in flight), so a landed segment beyond the hashed frontier keeps its bytes
 * in memory until the frontier reaches it, within a budget shared by every
 * upload (`MAX_PENDING_BYTES`); past the budget, or when re-sent spans cross
 * the frontier, the upload's hashes are dropped and `complete` reads the
 * content back as it would after a restart. Nothing here is stored: it is an
 * optimization of one process, never a source of truth about what landed.
 */
import type * as BinaryKey from "../core/BinaryKey.js"
import type * as Hashing from "../core/Hashing.js"
import * as RangeSet from "../core/RangeSet.js"
import type { CompleteHint } from "../ports/UploadStaging.js"

/** Bytes held for segments waiting for the frontier, across all uploads of a process. */
export const MAX_PENDING_BYTES = 64 * 1024 * 1024

interface Tracked {
  readonly algorithm: BinaryKey.HashAlgorithm
  readonly whole: Hashing.Hasher
  frontier: number
  readonly pending: Map<number, { readonly end: number; readonly bytes: ReadonlyArray<Uint8Array>; readonly size: number }>
  readonly keys: Map<number, { readonly end: number; readonly key: BinaryKey.BinaryKey }>
}

/** The hashes of the uploads one Uploads instance began. */
export interface UploadHashes {
  /** Starts tracking a new upload (nothing landed yet). */
  readonly start: (id: string, algorithm: BinaryKey.HashAlgorithm, whole: Hashing.Hasher) => void
  /** The algorithm to hash the next segment of `id` with, or undefined when `id` is not tracked. */
  readonly algorithmOf: (id: string) => BinaryKey.HashAlgorithm | undefined
  /** Records a landed segment: its key, and its bytes (held until the frontier reaches it). */
  readonly landed: (id: string, span: RangeSet.Span, key: BinaryKey.BinaryKey, bytes: ReadonlyArray<Uint8Array>) => void
  /** The hint for `complete` when `[0, size)` was hashed in order; stops tracking `id` either way. */
  readonly finish: (id: string, size: number) => CompleteHint | undefined
  /** Stops tracking `id` (abort, expiry). */
  readonly forget: (id: string) => void
}

/** Fresh, empty tracking. */
export const make = (): UploadHashes => {
  const tracked = new Map<string, Tracked>()
  let pendingBytes = 0

  const forget = (id: string) => {
    const t = tracked.get(id)
    if (t === undefined) return
    for (const p of t.pending.values()) pendingBytes -= p.size
    tracked.delete(id)
  }

  const drain = (t: Tracked) => {
    for (let next = t.pending.get(t.frontier); next !== undefined; next = t.pending.get(t.frontier)) {
      t.pending.delete(t.frontier)
      pendingBytes -= next.size
      for (const b of next.bytes) t.whole.update(b)
      t.frontier = next.end
    }
  }

  return {
    start: (id, algorithm, whole) => {
      tracked.set(id, { algorithm, whole, frontier: 0, pending: new Map(), keys: new Map() })
    },
    algorithmOf: (id) => tracked.get(id)?.algorithm,
    landed: (id, span, key, bytes) => {
      const t = tracked.get(id)
      if (t === undefined) return
      t.keys.set(span.start, { end: span.end, key })
      if (span.start < t.frontier) {
        // A re-sent span: harmless unless it reaches past what was hashed with other boundaries.
        if (span.end > t.frontier) forget(id)
        return
      }
      if (span.start === t.frontier) {
        for (const b of bytes) t.whole.update(b)
        t.frontier = span.end
        drain(t)
        return
      }
      const previous = t.pending.get(span.start)
      if (previous !== undefined) pendingBytes -= previous.size
      if (pendingBytes + span.length > MAX_PENDING_BYTES) {
        forget(id)
        return
      }
      t.pending.set(span.start, { end: span.end, bytes, size: span.length })
      pendingBytes += span.length
    },
    finish: (id, size) => {
      const t = tracked.get(id)
      forget(id)
      if (t === undefined || t.frontier !== size) return undefined
      const segments: Array<CompleteHint["segments"][number]> = []
      for (let at = 0; at < size;) {
        const k = t.keys.get(at)
        if (k === undefined) return undefined
        segments.push({ span: new RangeSet.Span({ start: at, end: k.end }), key: k.key })
        at = k.end
      }
      return { key: t.whole.key(), segments }
    },
    forget
  }
}
