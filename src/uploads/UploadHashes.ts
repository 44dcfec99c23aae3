/**
 * Hashing as the bytes go by, for resumable uploads begun in this process.
 *
 * Completing an upload needs the key of the whole content and, when the
 * staging adopts segments as blocks, the key of each segment. Reading
 * everything back at `complete` doubles the I/O of an upload, so the process
 * that writes the segments hashes them on the way: the whole content in
 * order, and each segment on its own when asked. Segments land out of order
 * (several spans in flight), so a landed segment beyond the hashed frontier
 * keeps its bytes in memory until the frontier reaches it, within a budget
 * shared by every upload (`MAX_PENDING_BYTES`). A segment that starts at the
 * frontier (the usual case) is hashed as its bytes go by instead (`stream`),
 * so its hash overlaps its write rather than following it.
 *
 * Any write that overlaps bytes already written, landed or in flight (a
 * re-sent span) drops the upload's hashes: the bytes it hashed may no longer
 * be the ones staged (a staging that writes in place overwrites them, and two
 * overlapping writers race). So does going past the budget. `complete` then
 * reads the content back, as it would after a restart. Nothing here is
 * stored: it is an optimization of one process, never a source of truth
 * about what landed.
 */
import type * as BinaryKey from "../core/BinaryKey.js"
import type * as Hashing from "../core/Hashing.js"
import * as Lending from "../core/Lending.js"
import * as RangeSet from "../core/RangeSet.js"
import type { CompleteHint } from "../ports/UploadStaging.js"

/** Bytes held for segments waiting for the frontier, across all uploads of a process. */
export const MAX_PENDING_BYTES = 64 * 1024 * 1024

interface Tracked {
  readonly algorithm: BinaryKey.HashAlgorithm
  readonly whole: Hashing.Hasher
  /** Size of the cells writes are cut at (the staging's segment size): overlaps are looked for in one cell. */
  readonly cell: number
  frontier: number
  /** Start of the segment being hashed as it is written (it began at the frontier), if any. */
  streaming: number | undefined
  readonly pending: Map<number, { readonly end: number; readonly bytes: ReadonlyArray<Uint8Array>; readonly size: number }>
  readonly keys: Map<number, { readonly end: number; readonly key: BinaryKey.BinaryKey | undefined }>
  /** Spans written or being written, by cell. */
  readonly seen: Map<number, Array<RangeSet.Span>>
}

/** The hashes of the uploads one Uploads instance began. */
export interface UploadHashes {
  /** Starts tracking a new upload (nothing landed yet); writes are cut at multiples of `segmentSize`. */
  readonly start: (id: string, algorithm: BinaryKey.HashAlgorithm, whole: Hashing.Hasher, segmentSize: number) => void
  /**
   * A segment write is about to cover (at most) `span`, within one segment:
   * returns the algorithm to hash it with, or undefined when `id` is not (or
   * no longer) tracked. A span overlapping one seen before drops the hashes.
   */
  readonly writing: (id: string, span: RangeSet.Span) => BinaryKey.HashAlgorithm | undefined
  /** The write `writing` announced ended: it covered `actual` (None: nothing, it failed or was empty). */
  readonly settle: (id: string, announced: RangeSet.Span, actual: RangeSet.Span | undefined) => void
  /**
   * Hashes the write of `span` into the whole content as its bytes go by,
   * when the span starts at the hashed frontier and no other is being hashed
   * that way: returns the function to feed each chunk to, or undefined (then
   * keep the bytes for `landed`). Its `landed` passes `streamed`; a write
   * that ends any other way must `forget` the upload (the hash holds bytes
   * that did not land).
   */
  readonly stream: (id: string, span: RangeSet.Span) => ((chunk: Uint8Array) => void) | undefined
  /**
   * Records a landed segment: its key (when computed), and its bytes (held
   * until the frontier reaches it), or `streamed` when `stream` hashed them.
   */
  readonly landed: (
    id: string,
    span: RangeSet.Span,
    key: BinaryKey.BinaryKey | undefined,
    bytes: ReadonlyArray<Uint8Array>,
    streamed?: boolean
  ) => void
  /** The hint for `complete` when `[0, size)` was hashed in order; stops tracking `id` either way. */
  readonly finish: (id: string, size: number) => CompleteHint | undefined
  /** Stops tracking `id` (abort, expiry). */
  readonly forget: (id: string) => void
}

/** Fresh, empty tracking. */
export const make = (): UploadHashes => {
  const tracked = new Map<string, Tracked>()
  let pendingBytes = 0

  /** Hashes landed bytes into the whole; they are not needed after that (lent chunks go back, see Lending). */
  const hashInto = (t: Tracked, bytes: ReadonlyArray<Uint8Array>) => {
    for (const b of bytes) {
      t.whole.update(b)
      Lending.giveBack(b)
    }
  }

  const forget = (id: string) => {
    const t = tracked.get(id)
    if (t === undefined) return
    for (const p of t.pending.values()) {
      pendingBytes -= p.size
      for (const b of p.bytes) Lending.giveBack(b)
    }
    tracked.delete(id)
  }

  const drain = (t: Tracked) => {
    for (let next = t.pending.get(t.frontier); next !== undefined; next = t.pending.get(t.frontier)) {
      t.pending.delete(t.frontier)
      pendingBytes -= next.size
      hashInto(t, next.bytes)
      t.frontier = next.end
    }
  }

  return {
    start: (id, algorithm, whole, segmentSize) => {
      tracked.set(id, {
        algorithm,
        whole,
        cell: segmentSize,
        frontier: 0,
        streaming: undefined,
        pending: new Map(),
        keys: new Map(),
        seen: new Map()
      })
    },
    writing: (id, span) => {
      const t = tracked.get(id)
      if (t === undefined) return undefined
      // A write never crosses a segment boundary, so only spans of its own cell can overlap it.
      const cell = Math.floor(span.start / t.cell)
      const spans = t.seen.get(cell)
      if (spans === undefined) {
        t.seen.set(cell, [span])
        return t.algorithm
      }
      if (spans.some((s) => s.start < span.end && span.start < s.end)) {
        forget(id)
        return undefined
      }
      spans.push(span)
      return t.algorithm
    },
    settle: (id, announced, actual) => {
      const t = tracked.get(id)
      const spans = t?.seen.get(Math.floor(announced.start / t.cell))
      const i = spans?.indexOf(announced) ?? -1
      if (spans === undefined || i < 0) return
      if (actual === undefined) spans.splice(i, 1)
      else spans[i] = actual
    },
    stream: (id, span) => {
      const t = tracked.get(id)
      if (t === undefined || t.streaming !== undefined || span.start !== t.frontier) return undefined
      t.streaming = span.start
      // After a `forget` the feeder hashes into a discarded hasher: harmless.
      return (chunk) => t.whole.update(chunk)
    },
    landed: (id, span, key, bytes, streamed = false) => {
      const t = tracked.get(id)
      if (t === undefined) return
      t.keys.set(span.start, { end: span.end, key })
      if (streamed) {
        if (t.streaming !== span.start) {
          forget(id)
          return
        }
        t.streaming = undefined
        t.frontier = span.end
        drain(t)
        return
      }
      if (span.start < t.frontier) {
        // Cannot happen for a span `writing` let through; stay safe.
        forget(id)
        return
      }
      if (span.start === t.frontier) {
        hashInto(t, bytes)
        t.frontier = span.end
        drain(t)
        return
      }
      const previous = t.pending.get(span.start)
      if (previous !== undefined) {
        pendingBytes -= previous.size
        for (const b of previous.bytes) Lending.giveBack(b)
      }
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
      // The hasher must have seen exactly the landed bytes: a stray feed would show in its size.
      if (t === undefined || t.frontier !== size || t.whole.size !== size) return undefined
      const segments: Array<CompleteHint["segments"][number]> = []
      for (let at = 0; at < size;) {
        const k = t.keys.get(at)
        if (k === undefined) return undefined
        segments.push({ span: new RangeSet.Span({ start: at, end: k.end }), ...(k.key === undefined ? {} : { key: k.key }) })
        at = k.end
      }
      return { key: t.whole.key(), segments }
    },
    forget
  }
}
