/**
 * Content-defined chunking: block boundaries depend on the bytes around
 * them, not on their offsets, so inserting or deleting a few bytes moves
 * only the boundaries next to the edit and every other block keeps its
 * content (and its key). Two chunkers exist, named by a versioned id that
 * every chunked manifest records (see BlobMeta):
 *
 * - "fastcdc2020" (new puts): FastCDC 2020 (Xia et al., IEEE TPDS 2020)
 *   exactly as fastcdc-rs's `v2020` module cuts, so its published test
 *   vectors are ours (test/fixtures/fastcdc) and other implementations of
 *   it find the same blocks.
 * - "gear32": the chunker of the first releases (FastCDC-2016-like, its own
 *   table). Kept, and selectable, so that its blocks can still be produced;
 *   reading never needs a chunker (a manifest lists its blocks).
 *
 * How FastCDC 2020 finds a boundary, per block:
 *
 * - Gear hash over 64 bits: `hash = (hash << 1) + GEAR[byte]`, GEAR being
 *   the high 8 bytes of md5(64 × the byte's value). fastcdc-rs rolls two
 *   bytes per step with a left-shifted table (the paper's section 3.7):
 *   `hash = (hash << 2) + (GEAR[a] << 1)`, test against `mask << 1`, then
 *   `hash += GEAR[b]`, test against `mask`. That is the plain gear hash
 *   tested at every byte, with two quirks kept here: a match at offset `p`
 *   of the block cuts *before* `p` (the matching byte starts the next
 *   block), and a match at an even `p` (the first byte of a pair) counts
 *   only if byte `p + 1` exists.
 * - Only bits 0..47 of the hash are ever tested (the widest mask's top bit
 *   is 47) and bit k depends on bits 0..k only, so no BigInt is needed
 *   (see FastCdc2020 for how the scan stays in int32 arithmetic).
 * - Masks with log2(avg) + level bits (spread over bits 12..47, from the C
 *   reference) before offset `avg`, log2(avg) - level bits after it
 *   (normalized chunking, level 1 as fastcdc-rs's default): sizes cluster
 *   around `avg`.
 * - Cut-point skipping: no byte before offset `min` (rounded down to even)
 *   is hashed; the hash starts at 0 there. A block reaching `max` is cut at
 *   `max`; the last block of a stream may be shorter than `min`.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Stream from "effect/Stream"
import { createHash } from "node:crypto"
import { invalidValue, type InvalidValue } from "../core/Errors.js"

/** The chunkers, by the id a manifest records. */
export type ChunkerId = "fastcdc2020" | "gear32"

/** The chunker of new puts. */
export const CURRENT: ChunkerId = "fastcdc2020"

/** Block size bounds, in bytes: every block except the last is in `[min, max]`, averaging about `avg`. */
export interface ChunkerOptions {
  readonly min: number
  readonly avg: number
  readonly max: number
}

/** FastCDC 2020 knobs beyond the sizes; only the reference vectors use other values than the defaults. */
export interface Tuning {
  /** Which chunker (default CURRENT). */
  readonly chunker?: ChunkerId | undefined
  /** Normalization level 0..3 of fastcdc2020 (default 1, fastcdc-rs's default). */
  readonly normalization?: 0 | 1 | 2 | 3 | undefined
  /** XORed into every gear entry (fastcdc-rs's `seed`; default 0). Changes every boundary. */
  readonly seed?: bigint | undefined
}

/**
 * 128 KiB / 512 KiB / 2 MiB (chosen on two versions of a real tree, see
 * docs/architecture.md): half restic's sizes (512 KiB / 1 MiB / 8 MiB)
 * deduplicate more of edited real data (an edit costs about one block),
 * while ~1,500 blocks per GiB keep the per-block work (an object, a
 * record, a hash call) and a put's memory in bounds.
 */
export const defaults: ChunkerOptions = { min: 128 * 1024, avg: 512 * 1024, max: 2048 * 1024 }

/** Smallest `min` accepted: below the hash window boundaries stop depending on content. */
export const MIN_BLOCK = 64
/** Largest `max` accepted (a block is held in memory while it is stored). */
export const MAX_BLOCK = 1024 * 1024 * 1024
/** fastcdc2020's `avg` range: where its mask table has room for normalization levels 0..3. */
export const MIN_AVG = 256
export const MAX_AVG = 4 * 1024 * 1024

/** Checks block size bounds: integers with `MIN_BLOCK <= min <= avg <= max <= MAX_BLOCK` (and, for fastcdc2020, `MIN_AVG <= avg <= MAX_AVG`). */
export const validate = (
  options: ChunkerOptions,
  chunker: ChunkerId = CURRENT
): Either.Either<ChunkerOptions, InvalidValue> => {
  const { avg, max, min } = options
  const text = `min ${min}, avg ${avg}, max ${max}`
  if (![min, avg, max].every(Number.isSafeInteger)) {
    return Either.left(invalidValue("ChunkerOptions", text, "min, avg and max must be integers"))
  }
  if (min < MIN_BLOCK) return Either.left(invalidValue("ChunkerOptions", text, `min must be at least ${MIN_BLOCK} bytes`))
  if (!(min <= avg && avg <= max)) return Either.left(invalidValue("ChunkerOptions", text, "need min <= avg <= max"))
  if (max > MAX_BLOCK) return Either.left(invalidValue("ChunkerOptions", text, `max must be at most ${MAX_BLOCK} bytes`))
  if (chunker === "fastcdc2020" && (avg < MIN_AVG || avg > MAX_AVG)) {
    return Either.left(invalidValue("ChunkerOptions", text, `fastcdc2020 needs ${MIN_AVG} <= avg <= ${MAX_AVG}`))
  }
  if (chunker !== "fastcdc2020" && chunker !== "gear32") {
    return Either.left(invalidValue("ChunkerOptions", text, `unknown chunker ${JSON.stringify(chunker)}`))
  }
  return Either.right({ min, avg, max })
}

/**
 * Where block bytes go. Each byte is copied once, into the buffer of the
 * block it belongs to, as it is scanned: a pushed array is not referenced
 * once `push` returns, so its owner may reuse it (see Lending).
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

/**
 * A streaming chunker: push bytes in any pieces, get whole blocks back as
 * soon as their end is found, then `flush` the last one. Boundaries depend
 * only on the content, never on how the input was split.
 */
export abstract class Chunker {
  abstract readonly id: ChunkerId
  readonly min: number
  readonly avg: number
  readonly max: number
  /** The current block's buffer, once it has a byte. */
  protected block: Uint8Array | undefined
  private readonly buffers: BlockBuffers
  /** Bytes of the current (unfinished) block. */
  protected length = 0
  /** fastcdc2020: the block ends before its last byte, once a further byte shows the cut is not the stream's end. */
  protected pending = false

  /** `buffers`: a pool's, so that blocks need not be garbage (see Lending). */
  constructor(options: ChunkerOptions, buffers?: BlockBuffers) {
    this.min = options.min
    this.avg = options.avg
    this.max = options.max
    this.buffers = buffers ?? freshBuffers(options.max)
  }

  /** Adds bytes; returns the blocks completed by them, in order. */
  push(input: Uint8Array): Array<Uint8Array> {
    const out: Array<Uint8Array> = []
    if (input.length === 0) return out
    if (this.pending) out.push(this.splitLast())
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
    this.pending = false
    this.restart()
    return this.take(size)
  }

  /**
   * Scans `input` from `from` for the end of the current block. Returns the
   * index just past the cut, or -1 when the block goes on past the input
   * (then `length` counts the input's bytes and the hash state is kept).
   */
  protected abstract scan(input: Uint8Array, from: number): number

  /** Resets the per-block state (length, hash). */
  protected abstract restart(): void

  /** A cut at `end` of the input: the block is complete. */
  protected cut(end: number): number {
    this.restart()
    return end
  }

  /** The pending cut: the block ends before its last byte, which starts the next block. */
  private splitLast(): Uint8Array {
    this.pending = false
    const last = this.block![this.length - 1]!
    const done = this.take(this.length - 1)
    this.restart()
    this.block = this.buffers.take()
    this.block[0] = last
    this.length = 1
    return done
  }

  /** Hands over the current block (`size` bytes) and starts a new one. */
  private take(size: number): Uint8Array {
    const block = this.block!
    this.block = undefined
    return this.buffers.finish(block, size)
  }
}

// ---------------------------------------------------------------- fastcdc2020

/** fastcdc-rs's MASKS (from the C reference and restic-FastCDC), by number of bits; 0..4 unused. */
const MASKS: ReadonlyArray<bigint> = [
  0n, 0n, 0n, 0n, 0n,
  0x0000000001804110n, 0x0000000001803110n, 0x0000000018035100n, 0x0000001800035300n,
  0x0000019000353000n, 0x0000590003530000n, 0x0000d90003530000n, 0x0000d90103530000n,
  0x0000d90303530000n, 0x0000d90313530000n, 0x0000d90f03530000n, 0x0000d90303537000n,
  0x0000d90703537000n, 0x0000d90707537000n, 0x0000d91707537000n, 0x0000d91747537000n,
  0x0000d91767537000n, 0x0000d93767537000n, 0x0000d93777537000n, 0x0000d93777577000n,
  0x0000db3777577000n
]

const LOW24 = 0xffffff

/** fastcdc-rs's GEAR: entry i is the first 8 bytes (big-endian) of md5 of 64 bytes of value i. */
const GEAR64: ReadonlyArray<bigint> = Array.from({ length: 256 }, (_, i) =>
  createHash("md5").update(Buffer.alloc(64, i)).digest().readBigUInt64BE(0))

/**
 * The gear table XORed with `seed`, three ways: the low 32 bits (the fast
 * scan), and bits 0..23 and 24..47 (the exact check of a candidate).
 */
interface Gear {
  readonly low32: Int32Array
  readonly lo: Int32Array
  readonly hi: Int32Array
}

const makeGear = (seed: bigint): Gear => {
  const low32 = new Int32Array(256)
  const lo = new Int32Array(256)
  const hi = new Int32Array(256)
  for (let i = 0; i < 256; i++) {
    const g = GEAR64[i]! ^ seed
    low32[i] = Number(BigInt.asIntN(32, g))
    lo[i] = Number(g & 0xffffffn)
    hi[i] = Number((g >> 24n) & 0xffffffn)
  }
  return { low32, lo, hi }
}

const GEAR_UNSEEDED = makeGear(0n)

/** fastcdc-rs's `logarithm2`: rounded, so the mask is the one nearest `avg`. */
const log2Rounded = (value: number): number => Math.round(Math.log2(value))

/** The hash bits a mask tests: its low 32 bits, and its bits 24..47. */
const maskParts = (mask: bigint) => ({ low32: Number(BigInt.asIntN(32, mask)), hi: Number(mask >> 24n) })

/**
 * FastCDC 2020 as fastcdc-rs's v2020 cuts (see the module comment).
 *
 * Speed: the scan keeps only the low 32 bits of the hash, exact in int32
 * arithmetic (one shift, one add, one table read per byte, as gear32).
 * Every mask has at least 5 of its bits there (10 at the default sizes), so
 * only a candidate (1 byte in 32 to 1024) is checked on bits 24..47, by
 * rehashing the last 48 bytes (a byte moves out of bit 47 after 48 shifts).
 */
export class FastCdc2020 extends Chunker {
  readonly id = "fastcdc2020" as const
  private readonly gear: Gear
  private readonly small: { readonly low32: number; readonly hi: number }
  private readonly large: { readonly low32: number; readonly hi: number }
  /** First offset hashed: `min` rounded down to even (fastcdc-rs starts at pair `min / 2`). */
  private readonly first: number
  /** Offsets below this use the small-block (stricter) mask: `avg` rounded down to even. */
  private readonly normalEnd: number
  /** Offsets hashed stop here: `max` rounded down to even. */
  private readonly scanEnd: number
  /** Low 32 bits of the hash. */
  private hash = 0

  constructor(options: ChunkerOptions, buffers?: BlockBuffers, tuning: Tuning = {}) {
    super(options, buffers)
    const level = tuning.normalization ?? 1
    const bits = log2Rounded(options.avg)
    this.small = maskParts(MASKS[bits + level]!)
    this.large = maskParts(MASKS[bits - level]!)
    this.gear = tuning.seed === undefined || tuning.seed === 0n ? GEAR_UNSEEDED : makeGear(BigInt.asUintN(64, tuning.seed))
    this.first = options.min - (options.min & 1)
    this.normalEnd = options.avg - (options.avg & 1)
    this.scanEnd = options.max - (options.max & 1)
  }

  protected scan(input: Uint8Array, from: number): number {
    const n = input.length
    // The byte at input index i sits at offset base + i of the block.
    const base = this.length - from
    let i = Math.max(from, this.first - base)
    const gear = this.gear.low32
    let hash = this.hash
    // The inner loops only find candidates; checking one is out of line, so they stay tight.
    const end1 = Math.min(n, this.normalEnd - base)
    const small = this.small.low32
    while (i < end1) {
      for (; i < end1; i++) {
        hash = ((hash << 1) + gear[input[i]!]!) | 0
        if ((hash & small) === 0) break
      }
      if (i === end1) break
      if (this.matches(input, i, base, this.small.hi)) return this.found(input, i, base)
      i++
    }
    const end2 = Math.min(n, this.scanEnd - base)
    const large = this.large.low32
    while (i < end2) {
      for (; i < end2; i++) {
        hash = ((hash << 1) + gear[input[i]!]!) | 0
        if ((hash & large) === 0) break
      }
      if (i === end2) break
      if (this.matches(input, i, base, this.large.hi)) return this.found(input, i, base)
      i++
    }
    const maxAt = this.max - base
    if (maxAt <= n) return this.cut(maxAt)
    this.hash = hash
    this.length = base + n
    return -1
  }

  /**
   * Whether bits 24..47 of the hash at input index `i` are clear under
   * `maskHi`: the hash rehashed in two 24-bit halves over the block's last
   * 48 hashed bytes, some of them already copied into the block buffer.
   */
  private matches(input: Uint8Array, i: number, base: number, maskHi: number): boolean {
    const gearLo = this.gear.lo
    const gearHi = this.gear.hi
    const copied = this.length
    let lo = 0
    let hi = 0
    for (let q = Math.max(this.first, base + i - 47); q <= base + i; q++) {
      const x = q < copied ? this.block![q]! : input[q - base]!
      lo = (lo << 1) + gearLo[x]!
      hi = ((hi << 1) + gearHi[x]! + (lo >>> 24)) & LOW24
      lo &= LOW24
    }
    return (hi & maskHi) === 0
  }

  /**
   * The hash matched at input index `i`: the block ends before that byte;
   * at an even offset only once the byte after it is known to exist (at the
   * end of the stream it does not, and fastcdc-rs makes no cut there).
   */
  private found(input: Uint8Array, i: number, base: number): number {
    if (((base + i) & 1) === 1 || i + 1 < input.length) return this.cut(i)
    this.pending = true
    this.length = base + input.length
    return -1
  }

  protected restart(): void {
    this.hash = 0
    this.length = 0
  }
}

// ---------------------------------------------------------------- gear32

/**
 * The first releases' chunker ("gear32"), kept unchanged: FastCDC-2016-like
 * with a 32-bit gear hash `hash = (hash << 1) + GEAR[byte]` over a table of
 * splitmix32 words (fixed seed), masks of the TOP bits of the hash (bit k
 * depends on the last k + 1 bytes), normalization level 2 (log2(avg) ± 2
 * bits before / after `avg`), cut-point skipping below `min`, a cut right
 * after the matching byte, and a hard cut at `max`.
 */
const GEAR32: Int32Array = (() => {
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

export class Gear32 extends Chunker {
  readonly id = "gear32" as const
  private readonly maskS: number
  private readonly maskL: number
  private hash = 0

  constructor(options: ChunkerOptions, buffers?: BlockBuffers) {
    super(options, buffers)
    const bits = Math.round(Math.log2(options.avg))
    this.maskS = topBits(Math.min(32, bits + 2))
    this.maskL = topBits(Math.max(1, bits - 2))
  }

  protected scan(input: Uint8Array, from: number): number {
    const n = input.length
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
      hash = ((hash << 1) + GEAR32[input[i]!]!) | 0
      if ((hash & maskS) === 0) return this.cut(i + 1)
    }
    const maxAt = this.max - base
    const maxEnd = Math.min(n, maxAt)
    for (; i < maxEnd; i++) {
      hash = ((hash << 1) + GEAR32[input[i]!]!) | 0
      if ((hash & maskL) === 0) return this.cut(i + 1)
    }
    if (i >= maxAt) return this.cut(maxAt)
    this.hash = hash
    this.length = base + n
    return -1
  }

  protected restart(): void {
    this.hash = 0
    this.length = 0
  }
}

/** A chunker with already validated bounds (`tuning.chunker` picks which, default CURRENT). */
export const unsafeMake = (options: ChunkerOptions, buffers?: BlockBuffers, tuning: Tuning = {}): Chunker =>
  (tuning.chunker ?? CURRENT) === "gear32" ? new Gear32(options, buffers) : new FastCdc2020(options, buffers, tuning)

/** A fresh chunker, or InvalidValue when the bounds are not valid for it (see `validate`). */
export const make = (options: Partial<ChunkerOptions> = {}, tuning: Tuning = {}): Either.Either<Chunker, InvalidValue> =>
  Either.map(validate({ ...defaults, ...options }, tuning.chunker ?? CURRENT), (o) => unsafeMake(o, undefined, tuning))

/**
 * Re-chunks a byte stream into content-defined blocks: one emitted array
 * per block, whatever the input's chunking. Holds at most one block (up to
 * `max` bytes) in memory. Invalid options fail the stream with InvalidValue.
 */
export const chunk = (options: Partial<ChunkerOptions> = {}, tuning: Tuning = {}) =>
<E, R>(self: Stream.Stream<Uint8Array, E, R>): Stream.Stream<Uint8Array, E | InvalidValue, R> =>
  Stream.unwrap(Effect.map(make(options, tuning), (chunker) =>
    Stream.concat(
      Stream.mapConcat(self, (bytes) => chunker.push(bytes)),
      Stream.suspend(() => {
        const last = chunker.flush()
        return last === undefined ? Stream.empty : Stream.make(last)
      })
    )))
