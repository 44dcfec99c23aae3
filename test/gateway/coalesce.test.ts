/** The request body's re-chunking: whole chunks of the given size, the last shorter, the bytes unchanged. */
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { randomBytes } from "node:crypto"
import { coalesce } from "../../src/gateway/context.js"

const run = (parts: ReadonlyArray<Uint8Array>, size: number) =>
  Effect.map(Stream.runCollect(coalesce(Stream.fromIterable(parts), size)), (out) =>
    // Copied: the chunks are lent buffers, reused once given back.
    Chunk.toReadonlyArray(out).map((c) => Buffer.from(c)))

describe("coalesce", () => {
  it.effect("cuts any split of the input into chunks of the size, the last shorter, bytes unchanged", () =>
    Effect.gen(function*() {
      const bytes = randomBytes(10_000)
      for (const size of [1, 7, 1000, 4096, 10_000, 20_000]) {
        // Parts of random sizes, including empty ones and parts larger than the chunk size.
        const parts: Array<Uint8Array> = []
        for (let at = 0; at < bytes.length;) {
          const n = Math.min(bytes.length - at, Math.floor(Math.random() * 3000))
          parts.push(bytes.subarray(at, at + n))
          at += n
        }
        const out = yield* run(parts, size)
        expect(Buffer.concat(out).equals(bytes), `size ${size}`).toBe(true)
        expect(out.slice(0, -1).every((c) => c.length === size), `size ${size}`).toBe(true)
        expect(out.at(-1)!.length).toBe(bytes.length % size === 0 ? size : bytes.length % size)
      }
    }))

  it.effect("an empty body gives no chunk", () =>
    Effect.gen(function*() {
      expect(yield* run([], 1024)).toEqual([])
      expect(yield* run([new Uint8Array(0)], 1024)).toEqual([])
    }))
})
