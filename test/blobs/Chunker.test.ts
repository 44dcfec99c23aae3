import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Stream from "effect/Stream"
import { createHash } from "node:crypto"
import * as Chunker from "../../src/blobs/Chunker.js"
import { chunked, concat, KiB, MiB, randomBytes, sameBytes } from "../../src/testing/bytes.js"

const small: Chunker.ChunkerOptions = { min: 4 * KiB, avg: 16 * KiB, max: 64 * KiB }

/** Blocks of `bytes` pushed in pieces of `piece` bytes (the whole array at once when undefined). */
const blocksOf = (bytes: Uint8Array, options: Partial<Chunker.ChunkerOptions> = small, piece?: number) => {
  const chunker = Either.getOrThrow(Chunker.make(options))
  const out: Array<Uint8Array> = []
  const step = piece ?? Math.max(1, bytes.length)
  for (let i = 0; i < bytes.length; i += step) out.push(...chunker.push(bytes.subarray(i, i + step)))
  const last = chunker.flush()
  if (last !== undefined) out.push(last)
  return out
}

const sizes = (blocks: ReadonlyArray<Uint8Array>) => blocks.map((b) => b.length)
const digest = (b: Uint8Array) => createHash("sha256").update(b).digest("hex")

describe("Chunker", () => {
  it("cuts the same boundaries as ever (the gear table and masks are fixed)", () => {
    // Changing these numbers changes every block boundary, hence all deduplication against stored data.
    expect(sizes(blocksOf(randomBytes(256 * KiB, 1)))).toEqual([
      19806, 20799, 30182, 10541, 21169, 17475, 13520, 17529, 24362, 18752, 23538, 17871, 22351, 4249
    ])
  })

  it("boundaries depend only on the content, not on how it was split", () => {
    const bytes = randomBytes(MiB + 123, 5)
    const reference = sizes(blocksOf(bytes))
    expect(reference.length).toBeGreaterThan(10)
    for (const piece of [1, 7, 4095, 4096, 16 * KiB + 1, 100_003]) {
      expect(sizes(blocksOf(bytes, small, piece)), `pieces of ${piece}`).toEqual(reference)
    }
  })

  it("blocks reassemble the input; all but the last are within [min, max]; sizes average near avg", () => {
    const bytes = randomBytes(4 * MiB, 9)
    const blocks = blocksOf(bytes, small, 65_000)
    expect(sameBytes(concat(blocks), bytes)).toBe(true)
    for (const b of blocks.slice(0, -1)) {
      expect(b.length).toBeGreaterThanOrEqual(small.min)
      expect(b.length).toBeLessThanOrEqual(small.max)
    }
    const mean = bytes.length / blocks.length
    expect(mean).toBeGreaterThan(small.avg / 2)
    expect(mean).toBeLessThan(small.avg * 2)
  })

  it("content without boundaries is cut at max", () => {
    expect(sizes(blocksOf(new Uint8Array(300_000), small, 10_000))).toEqual([65536, 65536, 65536, 65536, 37856])
  })

  it("an inserted byte changes only the blocks around it", () => {
    const original = randomBytes(4 * MiB, 21)
    const edited = concat([original.subarray(0, 100 * KiB), Uint8Array.of(42), original.subarray(100 * KiB)])
    const known = new Set(blocksOf(original).map(digest))
    const after = blocksOf(edited)
    const shared = after.filter((b) => known.has(digest(b))).reduce((n, b) => n + b.length, 0)
    expect(shared / edited.length).toBeGreaterThan(0.95)
    // The edited block itself is new.
    expect(after.some((b) => !known.has(digest(b)))).toBe(true)
  })

  it("short inputs give one block; empty input gives none", () => {
    expect(sizes(blocksOf(randomBytes(100, 1)))).toEqual([100])
    expect(blocksOf(new Uint8Array(0))).toEqual([])
    const chunker = Either.getOrThrow(Chunker.make(small))
    expect(chunker.push(new Uint8Array(0))).toEqual([])
    expect(chunker.flush()).toBeUndefined()
  })

  it("rejects bounds outside MIN_BLOCK <= min <= avg <= max <= MAX_BLOCK", () => {
    const bad: ReadonlyArray<Partial<Chunker.ChunkerOptions>> = [
      { min: 32, avg: 1024, max: 4096 },
      { min: 8192, avg: 4096, max: 16384 },
      { min: 1024, avg: 4096, max: 2048 },
      { min: 1024.5, avg: 4096, max: 8192 },
      { min: 1024, avg: 4096, max: 2 * 1024 * MiB }
    ]
    for (const options of bad) {
      const made = Chunker.make(options)
      expect(Either.isLeft(made), JSON.stringify(options)).toBe(true)
      if (Either.isLeft(made)) expect(made.left._tag).toBe("InvalidValue")
    }
    expect(Either.isRight(Chunker.make())).toBe(true)
    expect(Chunker.defaults).toEqual({ min: 256 * KiB, avg: MiB, max: 4 * MiB })
  })

  it.effect("as a stream transform: one array per block, fresh state per run", () =>
    Effect.gen(function*() {
      const bytes = randomBytes(512 * KiB + 5, 13)
      const stream = chunked(bytes, { seed: 3 }).pipe(Chunker.chunk(small))
      const first = Chunk.toReadonlyArray(yield* Stream.runCollect(stream))
      expect(sizes(first)).toEqual(sizes(blocksOf(bytes)))
      expect(sameBytes(concat(first), bytes)).toBe(true)
      // Running the same stream value again starts from a clean chunker.
      expect(sizes(Chunk.toReadonlyArray(yield* Stream.runCollect(stream)))).toEqual(sizes(first))
      expect(Chunk.size(yield* Stream.runCollect(Chunker.chunk(small)(Stream.empty)))).toBe(0)
    }))

  it.effect("as a stream transform, invalid bounds fail with InvalidValue", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Stream.runDrain(Chunker.chunk({ min: 1, avg: 2, max: 3 })(Stream.make(new Uint8Array(10)))))
      expect(error._tag).toBe("InvalidValue")
    }))
})
