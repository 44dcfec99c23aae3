import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Stream from "effect/Stream"
import { PassThrough, Readable } from "node:stream"
import { fromBody } from "../../../src/backends/s3/internal/body.js"

const pieces = (count: number, size: number) =>
  Array.from({ length: count }, (_, i) => Buffer.alloc(size, i % 251))

const concat = (chunks: Iterable<Uint8Array>) => Buffer.concat(Array.from(chunks))

describe("s3 body stream", () => {
  it.effect("emits every byte in order, gathered into steps of at least `gather` bytes (but the last)", () =>
    Effect.gen(function*() {
      const input = pieces(40, 1000)
      const steps: Array<number> = []
      const out = yield* fromBody(Readable.from(input, { objectMode: false }), (e) => e, 8000).pipe(
        Stream.mapChunks((chunk) => {
          steps.push(Chunk.reduce(chunk, 0, (n, c) => n + c.length))
          return chunk
        }),
        Stream.runCollect
      )
      expect(concat(out).equals(concat(input))).toBe(true)
      expect(steps.reduce((a, b) => a + b, 0)).toBe(40_000)
      for (const s of steps.slice(0, -1)) expect(s).toBeGreaterThanOrEqual(8000)
      expect(steps.length).toBeLessThanOrEqual(5)
    }))

  it.effect("an empty body is an empty stream", () =>
    Effect.gen(function*() {
      const out = yield* Stream.runCollect(fromBody(Readable.from([], { objectMode: false }), (e) => e))
      expect(Chunk.size(out)).toBe(0)
    }))

  it.effect("a body that fails midway fails the stream with the mapped error", () =>
    Effect.gen(function*() {
      const body = new PassThrough()
      body.write(Buffer.alloc(100, 1))
      setTimeout(() => body.destroy(new Error("connection reset")), 10)
      const result = yield* Effect.either(Stream.runCollect(fromBody(body, (e) => `mapped: ${(e as Error).message}`)))
      expect(result).toEqual(Either.left("mapped: connection reset"))
    }))

  it.effect("a consumer that stops early destroys the body (its socket is released)", () =>
    Effect.gen(function*() {
      const body = new PassThrough()
      for (const p of pieces(10, 1000)) body.write(p)
      const first = yield* Stream.runHead(fromBody(body, (e) => e, 2000))
      expect(first._tag).toBe("Some")
      expect(body.destroyed).toBe(true)
    }))
})
