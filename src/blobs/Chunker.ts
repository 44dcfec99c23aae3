/**
 * Content-defined chunking with FastCDC (Xia et al., USENIX ATC 2016):
 * block boundaries depend on the bytes around them, not on their offsets,
 * so inserting or deleting a few bytes moves only the boundaries next to
 * the edit and every other block keeps its content (and its key).
 *
 * How a boundary is found:
 *
 * - Gear hash. For each byte, `hash = (hash << 1) + GEAR[byte]` (32 bits).
 *   The shift pushes a byte's contribution out after 32 steps, so the hash
 *   is a rolling fingerprint of the last 32 bytes at the cost of one shift,
 *   one add and one table read per byte. The table holds 256 fixed
 *   pseudo-random words; it must never change, or every block boundary
 *   (hence all deduplication against existing data) would move.
 * - Masks. A byte ends a block when `hash & mask === 0`. The mask uses the
 *   TOP bits of the hash: bit k depends on the last k + 1 bytes, so the
 *   high bits are the ones that mix the most input. With n mask bits a
 *   boundary occurs with probability 2^-n per byte.
 * - Normalized chunking (level 2). Between `min` and `avg` bytes the mask
 *   has log2(avg) + 2 bits (boundaries 4x rarer), after `avg` it has
 *   log2(avg) - 2 bits (4x likelier). Sizes cluster around `avg` instead of
 *   following a long-tailed geometric distribution, so fewer blocks hit the
 *   hard `max` cut (a max cut is offset-defined and resynchronizes badly).
 * - Cut-point skipping. No block is shorter than `min`, so the first `min`
 *   bytes of a block are not hashed at all: that is most of FastCDC's speed.
 *   A block that reaches `max` bytes is cut there; the last block of a
 *   stream may be shorter than `min`.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Stream from "effect/Stream"
import { invalidValue, type InvalidValue } from "../core/Errors.js"

/** Block size bounds, in bytes: every block except the last is in `[min, max]`, averaging about `avg`. */
export interface ChunkerOptions {
  readonly min: number
  readonly avg: number
  readonly max: number
}

/** 256 KiB / 1 MiB / 4 MiB: large enough that per-block metadata stays small next to the data. */
export const defaults: ChunkerOptions = { min: 256 * 1024, avg: 1024 * 1024, max: 4 * 1024 * 1024 }

/** Smallest `min` accepted: below the 32-byte hash window boundaries stop depending on content. */
export const MIN_BLOCK = 64
/** Largest `max` accepted (a block is held in memory while it is stored). */
export const MAX_BLOCK = 1024 * 1024 * 1024

/**
 * The gear table: 256 words from splitmix32 with a fixed seed. Fixed
 * forever: changing it would change every block boundary.
 */
const GEAR: Int32Array = (() => {
  const table = new Int32Array(256)
  let state = 0x6a09e667 | 0
  for (let i = 0; i < 256; i++) {
    state = (state + 0x9e3779b9) | 0
    let z = state
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
    table[i] = z ^ (z >>> 16)
  }
  return table
})()

/** A mask of the `bits` highest bits of a 32-bit word (as a signed int, like the hash). */
const topBits = (bits: number): number => (bits >= 32 ? -1 : ~((1 << (32 - bits)) - 1) | 0)

/** Checks block size bounds: integers with `MIN_BLOCK <= min <= avg <= max <= MAX_BLOCK`. */
export const validate = (options: ChunkerOptions): Either.Either<ChunkerOptions, InvalidValue> => {
  const { avg, max, min } = options
  const text = `min ${min}, avg ${avg}, max ${max}`
  if (![min, avg, max].every(Number.isSafeInteger)) {
    return Either.left(invalidValue("ChunkerOptions", text, "min, avg and max must be integers"))
  }
  if (min < MIN_BLOCK) return Either.left(invalidValue("ChunkerOptions", text, `min must be at least ${MIN_BLOCK} bytes`))
  if (!(min <= avg && avg <= max)) return Either.left(invalidValue("ChunkerOptions", text, "need min <= avg <= max"))
  if (max > MAX_BLOCK) return Either.left(invalidValue("ChunkerOptions", text, `max must be at most ${MAX_BLOCK} bytes`))
  return Either.right({ min, avg, max })
}

/**
 * A streaming FastCDC chunker: push bytes in any pieces, get whole blocks
 * back as soon as their end is found, then `flush` the last one. Boundaries
 * depend only on the content, never on how the input was split. Each byte
 * is copied once, into the buffer of the block it belongs to, as it is
 * scanned: a pushed array is not referenced once `push` returns, so its
 * owner may reuse it (see Lending). Block buffers come from `buffers`.
 */
export interface BlockBuffers {
  /** A buffer of at least `max` bytes for the next block. */
  readonly take: () => Uint8Array
  /** The finished block: the first `size` bytes of `buffer`. */
  readonly finish: (buffer: Uint8Array, size: number) => Uint8Array
}

/** A new buffer per block, cut to the block's size (a copy) so that a kept block holds no more than itself. */
const freshBuffers = (max: number): BlockBuffers => ({
  take: () => new Uint8Array(max),
  finish: (buffer, size) => buffer.slice(0, size)
})

export class Chunker {
  readonly min: number
  readonly avg: number
  readonly max: number
  private readonly maskS: number
  private readonly maskL: number
  /** The current block's buffer, once it has a byte. */
  private block: Uint8Array | undefined
  private readonly buffers: BlockBuffers
  /** Bytes of the current (unfinished) block. */
  private length = 0
  private hash = 0

  /** Use `make`, which validates the options. `buffers`: a pool's, so that blocks need not be garbage (see Lending). */
  constructor(options: ChunkerOptions, buffers?: BlockBuffers) {
    this.min = options.min
    this.avg = options.avg
    this.max = options.max
    this.buffers = buffers ?? freshBuffers(options.max)
    const bits = Math.round(Math.log2(options.avg))
    this.maskS = topBits(Math.min(32, bits + 2))
    this.maskL = topBits(Math.max(1, bits - 2))
  }

  /** Adds bytes; returns the blocks completed by them, in order. */
  push(input: Uint8Array): Array<Uint8Array> {
    const out: Array<Uint8Array> = []
    let start = 0
    while (start < input.length) {
      const before = this.length
      const end = this.scan(input, start)
      const stop = end < 0 ? input.length : end
      this.block ??= this.buffers.take()
      this.block.set(input.subarray(start, stop), before)
      if (end < 0) break
      out.push(this.take(before + stop - start))
      start = end
    }
    return out
  }

  /** Ends the input: the last, possibly short block, or undefined when no bytes are pending. */
  flush(): Uint8Array | undefined {
    if (this.length === 0) return undefined
    const size = this.length
    this.length = 0
    this.hash = 0
    return this.take(size)
  }

  /**
   * Scans `input` from `from` for the end of the current block. Returns the
   * index just past the cut, or -1 when the block goes on past the input
   * (the scanned bytes are then counted in `length`, the hash kept).
   */
  private scan(input: Uint8Array, from: number): number {
    const n = input.length
    // The byte at input index i sits at offset base + i of the block.
    const base = this.length - from
    let i = from
    const minAt = this.min - base
    if (i < minAt) {
      if (minAt >= n) {
        this.length = base + n
        return -1
      }
      i = minAt
    }
    let hash = this.hash
    const maskS = this.maskS
    const maskL = this.maskL
    const avgEnd = Math.min(n, this.avg - base)
    for (; i < avgEnd; i++) {
      hash = ((hash << 1) + GEAR[input[i]!]!) | 0
      if ((hash & maskS) === 0) return this.cut(i + 1)
    }
    const maxAt = this.max - base
    const maxEnd = Math.min(n, maxAt)
    for (; i < maxEnd; i++) {
      hash = ((hash << 1) + GEAR[input[i]!]!) | 0
      if ((hash & maskL) === 0) return this.cut(i + 1)
    }
    if (i >= maxAt) return this.cut(maxAt)
    this.hash = hash
    this.length = base + n
    return -1
  }

  private cut(end: number): number {
    this.hash = 0
    this.length = 0
    return end
  }

  /** Hands over the current block (`size` bytes) and starts a new one. */
  private take(size: number): Uint8Array {
    const block = this.block!
    this.block = undefined
    return this.buffers.finish(block, size)
  }
}

/** A fresh chunker, or InvalidValue when the bounds are not `MIN_BLOCK <= min <= avg <= max <= MAX_BLOCK`. */
export const make = (options: Partial<ChunkerOptions> = {}): Either.Either<Chunker, InvalidValue> =>
  Either.map(validate({ ...defaults, ...options }), (o) => new Chunker(o))

/**
 * Re-chunks a byte stream into content-defined blocks: one emitted array
 * per block, whatever the input's chunking. Holds at most one block (up to
 * `max` bytes) in memory. Invalid options fail the stream with InvalidValue.
 */
export const chunk = (options: Partial<ChunkerOptions> = {}) =>
<E, R>(self: Stream.Stream<Uint8Array, E, R>): Stream.Stream<Uint8Array, E | InvalidValue, R> =>
  Stream.unwrap(Effect.map(make(options), (chunker) =>
    Stream.concat(
      Stream.mapConcat(self, (bytes) => chunker.push(bytes)),
      Stream.suspend(() => {
        const last = chunker.flush()
        return last === undefined ? Stream.empty : Stream.make(last)
      })
    )))
