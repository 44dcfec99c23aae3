/**
 * When spans are made: only for a tracer other than Effect's built-in one,
 * and never under `Effect.withTracerEnabled(false)`; attributes are computed
 * only for a span that is made.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as Tracer from "effect/Tracer"
import * as MemoryLayers from "../../src/backends/memory/MemoryLayers.js"
import * as Tracing from "../../src/kit/Tracing.js"
import { BlobStore } from "../../src/ports/BlobStore.js"
import { collect, randomBytes } from "../../src/testing/bytes.js"

/** A tracer that counts the spans it is asked for (and delegates to Effect's built-in one). */
const counting = Effect.map(Effect.tracer, (builtIn) => {
  const names: Array<string> = []
  const tracer = Tracer.make({
    span: (...args) => {
      names.push(args[0])
      return builtIn.span(...args)
    },
    context: (f) => f()
  })
  return { names, tracer }
})

const putAndGet = Effect.gen(function*() {
  const blobs = yield* BlobStore
  const stored = yield* Stream.run(Stream.make(randomBytes(1000, 1)), blobs.put())
  yield* collect(blobs.get(stored.key))
}).pipe(Effect.provide(MemoryLayers.live))

describe("when Graviton makes spans", () => {
  it.effect("for an installed tracer: every call; with tracing disabled: none", () =>
    Effect.gen(function*() {
      const on = yield* counting
      yield* Effect.withTracer(putAndGet, on.tracer)
      expect(on.names).toEqual(expect.arrayContaining(["graviton.BlobStore.put", "graviton.BlobStore.get"]))

      const disabled = yield* counting
      yield* Effect.withTracer(putAndGet, disabled.tracer).pipe(Effect.withTracerEnabled(false))
      expect(disabled.names.filter((n) => n.startsWith("graviton."))).toEqual([])
    }))

  it.effect("under Effect's built-in tracer: the call runs as is and no attribute is computed", () =>
    Effect.gen(function*() {
      let computed = 0
      const attributes = () => {
        computed++
        return {}
      }
      const value = yield* Tracing.effect(Effect.succeed(42), "graviton.Test.effect", { attributes })
      const streamed = yield* Stream.runCollect(Tracing.stream(Stream.make(1, 2), "graviton.Test.stream", { attributes }))
      expect([value, [...streamed], computed]).toEqual([42, [1, 2], 0])

      const on = yield* counting
      yield* Tracing.effect(Effect.void, "graviton.Test.effect", { attributes }).pipe(Effect.withTracer(on.tracer))
      expect([on.names, computed]).toEqual([["graviton.Test.effect"], 1])
    }))
})
