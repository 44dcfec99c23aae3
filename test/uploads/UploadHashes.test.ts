/**
 * UploadHashes: the in-process hashes of an upload are offered to `complete`
 * only when every byte was hashed in order from spans that never overlapped;
 * any overlap (a re-sent span, two writers of one range) drops them.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { createHash } from "node:crypto"
import * as Hashing from "../../src/core/Hashing.js"
import * as RangeSet from "../../src/core/RangeSet.js"
import * as UploadHashes from "../../src/uploads/UploadHashes.js"
import { randomBytes } from "../../src/testing/bytes.js"

const SEG = 1000
const span = (start: number, end: number) => new RangeSet.Span({ start, end })
const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")

/** A tracked upload and a helper that writes [start, end) of `bytes` through writing/settle/landed. */
const setup = Effect.gen(function*() {
  const hashes = UploadHashes.make()
  hashes.start("u", "sha256", yield* Hashing.makeHasher("sha256"), SEG)
  const write = (bytes: Uint8Array, start: number, end: number, outcome: "lands" | "fails" = "lands") => {
    const announced = span(start, Math.min(end, (Math.floor(start / SEG) + 1) * SEG))
    const algorithm = hashes.writing("u", announced)
    if (outcome === "fails") {
      hashes.settle("u", announced, undefined)
      return algorithm
    }
    const actual = span(start, end)
    hashes.settle("u", announced, actual)
    if (algorithm !== undefined) hashes.landed("u", actual, undefined, [bytes.subarray(start, end)])
    return algorithm
  }
  return { hashes, write }
})

describe("UploadHashes", () => {
  it.effect("spans landing out of order give the whole key and every segment's span", () =>
    Effect.gen(function*() {
      const { hashes, write } = yield* setup
      const bytes = randomBytes(3 * SEG + 10, 1)
      for (const [s, e] of [[2 * SEG, 3 * SEG], [0, SEG], [3 * SEG, 3 * SEG + 10], [SEG, 2 * SEG]] as const) {
        expect(write(bytes, s, e)).toBe("sha256")
      }
      const hint = hashes.finish("u", bytes.length)
      expect(hint?.key.digest).toBe(sha256(bytes))
      expect(hint?.segments.map((x) => [x.span.start, x.span.end])).toEqual([[0, SEG], [SEG, 2 * SEG], [2 * SEG, 3 * SEG], [3 * SEG, 3 * SEG + 10]])
    }))

  it.effect("a segment written in two pieces is not an overlap", () =>
    Effect.gen(function*() {
      const { hashes, write } = yield* setup
      const bytes = randomBytes(SEG, 2)
      write(bytes, 0, 300)
      expect(write(bytes, 300, SEG)).toBe("sha256")
      expect(hashes.finish("u", SEG)?.key.digest).toBe(sha256(bytes))
    }))

  it.effect("a re-sent span drops the hashes", () =>
    Effect.gen(function*() {
      const { hashes, write } = yield* setup
      const bytes = randomBytes(2 * SEG, 3)
      write(bytes, 0, SEG)
      write(bytes, SEG, 2 * SEG)
      expect(write(bytes, 0, SEG)).toBeUndefined()
      expect(hashes.finish("u", 2 * SEG)).toBeUndefined()
    }))

  it.effect("two writers of one range at once drop the hashes, even before either landed", () =>
    Effect.gen(function*() {
      const { hashes } = yield* setup
      expect(hashes.writing("u", span(SEG, 2 * SEG))).toBe("sha256")
      expect(hashes.writing("u", span(SEG + 500, 2 * SEG))).toBeUndefined()
      expect(hashes.writing("u", span(0, SEG))).toBeUndefined()
    }))

  it.effect("a write that failed leaves its range free: sending it again keeps the hashes", () =>
    Effect.gen(function*() {
      const { hashes, write } = yield* setup
      const bytes = randomBytes(2 * SEG, 4)
      write(bytes, 0, SEG)
      write(bytes, SEG, 2 * SEG, "fails")
      expect(write(bytes, SEG, 2 * SEG)).toBe("sha256")
      expect(hashes.finish("u", 2 * SEG)?.key.digest).toBe(sha256(bytes))
    }))

  it.effect("more bytes waiting for the frontier than the budget drop the hashes", () =>
    Effect.gen(function*() {
      const hashes = UploadHashes.make()
      const big = UploadHashes.MAX_PENDING_BYTES / 2 + 1
      hashes.start("u", "sha256", yield* Hashing.makeHasher("sha256"), big)
      // Two segments past the first, never reached by the frontier: over the budget together.
      for (const start of [big, 2 * big]) {
        const s = span(start, start + big)
        hashes.writing("u", s)
        hashes.settle("u", s, s)
        hashes.landed("u", s, undefined, [new Uint8Array(big)])
      }
      expect(hashes.writing("u", span(0, big))).toBeUndefined()
    }))

  it.effect("a span at the frontier is hashed as it goes by, and spans landing meanwhile wait for it", () =>
    Effect.gen(function*() {
      const { hashes, write } = yield* setup
      const bytes = randomBytes(3 * SEG, 7)
      const first = span(0, SEG)
      expect(hashes.writing("u", first)).toBe("sha256")
      const feed = hashes.stream("u", first)
      expect(feed).toBeDefined()
      // Only one span at a time, and only at the frontier.
      expect(hashes.stream("u", span(SEG, 2 * SEG))).toBeUndefined()
      feed!(bytes.subarray(0, 400))
      // The second and third segments land (kept bytes) while the first is still being written.
      write(bytes, 2 * SEG, 3 * SEG)
      write(bytes, SEG, 2 * SEG)
      feed!(bytes.subarray(400, SEG))
      hashes.settle("u", first, first)
      hashes.landed("u", first, undefined, [], true)
      const hint = hashes.finish("u", bytes.length)
      expect(hint?.key.digest).toBe(sha256(bytes))
      expect(hint?.segments).toHaveLength(3)
    }))

  it.effect("a streamed span that does not land drops the hashes, and so does a landing never streamed", () =>
    Effect.gen(function*() {
      const { hashes } = yield* setup
      const first = span(0, SEG)
      hashes.writing("u", first)
      const feed = hashes.stream("u", first)
      feed!(randomBytes(100, 8))
      // What Uploads does when the write fails after feeding bytes.
      hashes.settle("u", first, undefined)
      hashes.forget("u")
      expect(hashes.finish("u", SEG)).toBeUndefined()

      const again = (yield* setup).hashes
      again.writing("u", first)
      again.landed("u", first, undefined, [], true)
      expect(again.finish("u", SEG)).toBeUndefined()
    }))
})
