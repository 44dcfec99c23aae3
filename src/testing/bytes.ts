/**
 * Byte helpers for tests: deterministic pseudo-random content, uneven
 * chunking into a Stream (as a network would deliver it), and collecting a
 * Stream back into one array. Collecting buffers everything: tests only.
 */
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"

/** 1 KiB, 1 MiB: sizes read better as multiples. */
export const KiB = 1024
export const MiB = 1024 * 1024

/** A small deterministic generator (xorshift32); the same seed always yields the same sequence. */
const xorshift32 = (seed: number) => {
  // A zero state would stay zero forever.
  let x = (seed | 0) === 0 ? 0x9e3779b9 : seed | 0
  return (): number => {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    return x >>> 0
  }
}

/** `size` pseudo-random bytes, a pure function of `(size, seed)`. */
export const randomBytes = (size: number, seed = 1): Uint8Array => {
  const out = new Uint8Array(size)
  const next = xorshift32(seed)
  const view = new DataView(out.buffer)
  const whole = size - (size % 4)
  for (let i = 0; i < whole; i += 4) view.setUint32(i, next())
  for (let i = whole; i < size; i++) out[i] = next() & 0xff
  return out
}

/** UTF-8 bytes of a string. */
export const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text)

/** Options for `chunked`: pieces are between `min` and `max` bytes (inclusive), chosen by `seed`. */
export interface ChunkOptions {
  readonly min?: number
  readonly max?: number
  readonly seed?: number
}

/**
 * Streams `bytes` as pieces of uneven sizes (views, no copies), one piece
 * per Stream chunk, so a sink sees arbitrary boundaries. Defaults: 1 B to
 * ~96 KiB pieces averaging ~48 KiB.
 */
export const chunked = (bytes: Uint8Array, options: ChunkOptions = {}): Stream.Stream<Uint8Array> => {
  const min = Math.max(1, options.min ?? 1)
  const max = Math.max(min, options.max ?? 96 * KiB)
  return Stream.suspend(() => {
    const next = xorshift32(options.seed ?? 7)
    return Stream.unfoldChunk(0, (offset) => {
      if (offset >= bytes.length) return Option.none()
      const size = min + (next() % (max - min + 1))
      const end = Math.min(bytes.length, offset + size)
      return Option.some([Chunk.of(bytes.subarray(offset, end)), end] as const)
    })
  })
}

/** Concatenates arrays into one. */
export const concat = (parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let offset = 0
  for (const p of parts) {
    out.set(p, offset)
    offset += p.length
  }
  return out
}

/** Runs a byte stream and returns everything it emitted as one array (tests only: buffers it all). */
export const collect = <E, R>(stream: Stream.Stream<Uint8Array, E, R>): Effect.Effect<Uint8Array, E, R> =>
  Effect.map(Stream.runCollect(stream), (chunks) => concat(Chunk.toReadonlyArray(chunks)))

/** Byte equality without vitest's slow deep diff (use with `expect(...).toBe(true)`). */
export const sameBytes = (a: Uint8Array, b: Uint8Array): boolean =>
  a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.length), Buffer.from(b.buffer, b.byteOffset, b.length)) === 0

/** Describes the first difference between two arrays, for assertion messages. */
export const firstDifference = (a: Uint8Array, b: Uint8Array): string => {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return `byte ${i} differs (${a[i]} vs ${b[i]}); lengths ${a.length} and ${b.length}`
  }
  return a.length === b.length ? "identical" : `lengths differ: ${a.length} vs ${b.length}`
}
