import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Stream from "effect/Stream"
import { createBLAKE3 } from "hash-wasm"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import * as Chunker from "../../src/blobs/Chunker.js"
import { chunked, concat, KiB, MiB, randomBytes, sameBytes } from "../../src/testing/bytes.js"

const small: Chunker.ChunkerOptions = { min: 4 * KiB, avg: 16 * KiB, max: 64 * KiB }

/** Blocks of `bytes` pushed in pieces: of `piece` bytes, of the given sizes in turn, or the whole array at once. */
const blocksOf = (
  bytes: Uint8Array,
  options: Partial<Chunker.ChunkerOptions> = small,
  piece?: number | ReadonlyArray<number>,
  tuning: Chunker.Tuning = {}
) => {
  const chunker = Either.getOrThrow(Chunker.make(options, tuning))
  const out: Array<Uint8Array> = []
  const pieces = typeof piece === "object" ? piece : [piece ?? Math.max(1, bytes.length)]
  for (let i = 0, k = 0; i < bytes.length; k++) {
    const step = pieces[k % pieces.length]!
    out.push(...chunker.push(bytes.subarray(i, i + step)))
    i += step
  }
  const last = chunker.flush()
  if (last !== undefined) out.push(last)
  return out
}

/** Random piece sizes from 0 to `limit` bytes (empty pieces included), from a fixed seed. */
const randomPieces = (count: number, limit: number, seed: number): Array<number> => {
  let state = seed >>> 0
  return Array.from({ length: count }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0
    return state % (limit + 1)
  })
}

interface Expected {
  readonly offset: number
  readonly length: number
}
interface ReferenceCase {
  readonly test: string
  readonly min: number
  readonly avg: number
  readonly max: number
  readonly normalization: 0 | 1 | 2 | 3
  readonly seed: number
  readonly chunks: ReadonlyArray<Expected>
  readonly blake3?: ReadonlyArray<string>
}
const fixtures = path.join(import.meta.dirname, "..", "fixtures", "fastcdc")
const reference = JSON.parse(fs.readFileSync(path.join(fixtures, "v2020.json"), "utf8")) as {
  readonly size: number
  readonly cases: ReadonlyArray<ReferenceCase>
  readonly zeros: ReferenceCase & { readonly bytes: number }
}
const image = new Uint8Array(fs.readFileSync(path.join(fixtures, "SekienAkashita.jpg")))

const tuningOf = (c: ReferenceCase): Chunker.Tuning => ({ chunker: "fastcdc2020", normalization: c.normalization, seed: BigInt(c.seed) })

/** Offsets and lengths of blocks, for comparison with the reference's. */
const layout = (blocks: ReadonlyArray<Uint8Array>): Array<Expected> => {
  let offset = 0
  return blocks.map((b) => {
    const entry = { offset, length: b.length }
    offset += b.length
    return entry
  })
}

const sizes = (blocks: ReadonlyArray<Uint8Array>) => blocks.map((b) => b.length)
const digest = (b: Uint8Array) => createHash("sha256").update(b).digest("hex")

describe("Chunker", () => {
  it("fastcdc2020 cuts SekienAkashita.jpg exactly as fastcdc-rs v2020 does, for every parameter set of its tests", async () => {
    expect(image.length).toBe(reference.size)
    for (const c of reference.cases) {
      const blocks = blocksOf(image, c, undefined, tuningOf(c))
      expect(layout(blocks), c.test).toEqual(c.chunks)
      if (c.blake3 !== undefined) {
        const blake3 = await createBLAKE3()
        expect(blocks.map((b) => blake3.init().update(b).digest("hex")), c.test).toEqual(c.blake3)
      }
    }
    const zeros = reference.zeros
    expect(layout(blocksOf(new Uint8Array(zeros.bytes), zeros, undefined, tuningOf(zeros))), zeros.test).toEqual(zeros.chunks)
  })

  it("fastcdc2020 reference blocks are the same whatever the input's split: 1-byte pieces, random pieces, one piece", () => {
    for (const c of reference.cases) {
      const expected = layout(blocksOf(image, c, undefined, tuningOf(c)))
      expect(layout(blocksOf(image, c, 1, tuningOf(c))), `${c.test}, 1-byte pieces`).toEqual(expected)
      for (const seed of [1, 2, 3]) {
        const pieces = randomPieces(500, 3 * KiB, seed)
        expect(layout(blocksOf(image, c, pieces, tuningOf(c))), `${c.test}, random pieces ${seed}`).toEqual(expected)
      }
      // Every piece boundary at each block's last, first and second byte (the even-offset cut waits for one more byte).
      for (const shift of [-1, 0, 1]) {
        const pieces = c.chunks.map((b, i) => b.length + (i === 0 ? shift : 0))
        expect(layout(blocksOf(image, c, pieces, tuningOf(c))), `${c.test}, split at the cuts ${shift}`).toEqual(expected)
      }
    }
  })

  it("gear32 (the previous chunker) cuts the same boundaries as ever", () => {
    // Changing these numbers changes every block boundary of gear32, hence deduplication against data it stored.
    expect(sizes(blocksOf(randomBytes(256 * KiB, 1), small, undefined, { chunker: "gear32" }))).toEqual([
      19806, 20799, 30182, 10541, 21169, 17475, 13520, 17529, 24362, 18752, 23538, 17871, 22351, 4249
    ])
  })

  it("the default chunker is fastcdc2020", () => {
    expect(Chunker.CURRENT).toBe("fastcdc2020")
    expect(Either.getOrThrow(Chunker.make(small)).id).toBe("fastcdc2020")
    expect(sizes(blocksOf(image, { min: 4096, avg: 16384, max: 65535 }))).toEqual([21325, 17140, 28084, 18217, 24700])
  })

  for (const chunker of ["fastcdc2020", "gear32"] as const) {
    it(`${chunker}: boundaries and block bytes depend only on the content, not on how it was split`, () => {
      const bytes = randomBytes(MiB + 123, 5)
      const whole = blocksOf(bytes, small, undefined, { chunker })
      const reference = whole.map(digest)
      expect(reference.length).toBeGreaterThan(10)
      for (const piece of [1, 2, 7, 4095, 4096, 16 * KiB + 1, 100_003, randomPieces(2000, 2 * KiB, 7), randomPieces(50, 200 * KiB, 8)]) {
        const label = typeof piece === "number" ? `pieces of ${piece}` : `random pieces up to ${Math.max(...piece)}`
        expect(blocksOf(bytes, small, piece, { chunker }).map(digest), label).toEqual(reference)
      }
    })
  }

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
    expect(Chunker.defaults).toEqual({ min: 128 * KiB, avg: 512 * KiB, max: 2 * MiB })
    // fastcdc2020's mask table covers avg from 256 bytes to 4 MiB; gear32 takes any avg.
    expect(Either.isLeft(Chunker.make({ min: 64, avg: 128, max: 1024 }))).toBe(true)
    expect(Either.isLeft(Chunker.make({ min: MiB, avg: 8 * MiB, max: 16 * MiB }))).toBe(true)
    expect(Either.isRight(Chunker.make({ min: MiB, avg: 8 * MiB, max: 16 * MiB }, { chunker: "gear32" }))).toBe(true)
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
