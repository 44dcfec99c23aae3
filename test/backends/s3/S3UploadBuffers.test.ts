/**
 * How a streamed put holds its bytes, on every S3 server: the first part is
 * kept as the caller's chunks (a put within one part is sent as its own
 * chunk, tiny chunks are copied together byte-exactly), later parts go out as
 * soon as they are full, and the input is pulled at most `concurrency` parts
 * ahead of S3's answers.
 */
import type { S3Client } from "@aws-sdk/client-s3"
import { expect } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { randomUUID } from "node:crypto"
import { S3ClientInstance } from "../../../src/backends/s3/S3Client.js"
import { MutableObjectStore } from "../../../src/ports/ObjectStore.js"
import { firstDifference, MiB, randomBytes, sameBytes } from "../../../src/testing/bytes.js"
import { eachServer, locatorMaker, read, storeLayer, useServers } from "./fixtures.js"
import { spy } from "./sdk.js"

useServers()

/** Part size of the test servers (S3's minimum); the layer sends 3 parts at once. */
const P = 5 * MiB
const CONCURRENCY = 3

const expectSame = (got: Uint8Array, want: Uint8Array) => {
  if (!sameBytes(got, want)) expect.fail(firstDifference(got, want))
}

/** Streams `bytes` cut at the given sizes, repeated until the end, one piece per element. */
const cutBy = (bytes: Uint8Array, sizes: ReadonlyArray<number>): Stream.Stream<Uint8Array> =>
  Stream.suspend(() => {
    const pieces: Array<Uint8Array> = []
    for (let at = 0, i = 0; at < bytes.length; i++) {
      const end = Math.min(bytes.length, at + sizes[i % sizes.length]!)
      pieces.push(bytes.subarray(at, end))
      at = end
    }
    return Stream.fromIterable(pieces)
  })

/** Whether `body` is `chunk`'s own memory (no copy); compared without printing megabytes on failure. */
const sameMemory = (body: unknown, chunk: Uint8Array): boolean =>
  body instanceof Uint8Array && body.buffer === chunk.buffer && body.byteOffset === chunk.byteOffset &&
  body.length === chunk.length

/** Sizes of every UploadPart body, in part order. */
const partSizes = (calls: ReadonlyArray<{ readonly command: string; readonly input: Readonly<Record<string, unknown>> }>) =>
  calls
    .filter((c) => c.command === "UploadPart")
    .sort((a, b) => Number(a.input.PartNumber) - Number(b.input.PartNumber))
    .map((c) => (c.input.Body as Uint8Array).length)

/** Holds every UploadPart request before it is sent, until `open` (or the scope's end); `waiting` counts them. */
const holdParts = (client: S3Client): Effect.Effect<{
  readonly waiting: () => number
  readonly open: Effect.Effect<void>
}, never, Scope.Scope> =>
  Effect.gen(function*() {
    const gate = yield* Deferred.make<void>()
    let waiting = 0
    type Middleware = Parameters<S3Client["middlewareStack"]["add"]>[0]
    const middleware: Middleware = (next, context) => async (args) => {
      if (context.commandName === "UploadPartCommand") {
        waiting++
        await Effect.runPromise(Deferred.await(gate))
      }
      return next(args)
    }
    const name = `graviton-test-hold-${randomUUID()}`
    // The stack's overloads are per step; this one takes the handler shape above.
    const add = client.middlewareStack.add as unknown as (m: Middleware, o: Record<string, unknown>) => void
    yield* Effect.acquireRelease(
      Effect.sync(() => add.call(client.middlewareStack, middleware, { step: "initialize", priority: "high", name })),
      () => Effect.zipRight(Deferred.succeed(gate, undefined), Effect.sync(() => client.middlewareStack.remove(name)))
    )
    return { waiting: () => waiting, open: Deferred.succeed(gate, undefined).pipe(Effect.asVoid) }
  })

/** Waits until `condition` holds; if it never does (the put would hang), fails the test with `message`. */
const eventually = (condition: () => boolean, message: string) =>
  Effect.suspend(() => (condition() ? Effect.void : Effect.fail("not yet" as const))).pipe(
    Effect.retry(Schedule.spaced("5 millis").pipe(Schedule.upTo("20 seconds"))),
    Effect.catchAll(() => Effect.dieMessage(message))
  )

eachServer("S3 upload buffers", (c) => storeLayer(c, "buffers", { concurrency: CONCURRENCY }), (test) => {
  test.scoped()("a put within one part given as one chunk is sent as that very chunk", () =>
    Effect.gen(function*() {
      const { client } = yield* S3ClientInstance
      const store = yield* MutableObjectStore
      const f = yield* locatorMaker
      const seen = yield* spy(client)
      const bytes = randomBytes(P - 3, 41)
      yield* Stream.run(Stream.make(bytes), store.put(f.at("one")))
      expect(seen.commands()).toEqual(["PutObject"])
      expect(sameMemory(seen.calls[0]!.input.Body, bytes)).toBe(true)
      expectSame(yield* read(f.at("one")), bytes)
    }), 60_000)

  test.scoped()("tiny chunks and chunks around the copy threshold make one byte-exact PutObject", () =>
    Effect.gen(function*() {
      const { client } = yield* S3ClientInstance
      const store = yield* MutableObjectStore
      const f = yield* locatorMaker
      const seen = yield* spy(client)
      const bytes = randomBytes(3 * MiB + 17, 42)
      yield* Stream.run(cutBy(bytes, [1, 7, 16383, 16384, 16385, 3, 40000, 65535, 65536, 2]), store.put(f.at("tiny")))
      expect(seen.commands()).toEqual(["PutObject"])
      expect((seen.calls[0]!.input.Body as Uint8Array).length).toBe(bytes.length)
      expectSame(yield* read(f.at("tiny")), bytes)
    }), 60_000)

  test.scoped()("a first part gathered from mixed chunks goes out whole when the upload turns multipart", () =>
    Effect.gen(function*() {
      const { client } = yield* S3ClientInstance
      const store = yield* MutableObjectStore
      const f = yield* locatorMaker
      const seen = yield* spy(client)
      const bytes = randomBytes(2 * P + 123, 43)
      yield* Stream.run(cutBy(bytes, [1, 16384, 5, 300000, 16383, 1024 * 1024 + 1]), store.put(f.at("mixed")))
      expect(partSizes(seen.calls)).toEqual([P, P, 123])
      expectSame(yield* read(f.at("mixed")), bytes)
    }), 60_000)

  test.scoped()("a first part given as one chunk is sent as that chunk", () =>
    Effect.gen(function*() {
      const { client } = yield* S3ClientInstance
      const store = yield* MutableObjectStore
      const f = yield* locatorMaker
      const seen = yield* spy(client)
      const first = randomBytes(P, 44)
      const rest = randomBytes(P / 2, 45)
      yield* Stream.run(Stream.make(first, rest), store.put(f.at("whole")))
      const part1 = seen.calls.find((c) => c.command === "UploadPart" && c.input.PartNumber === 1)
      expect(sameMemory(part1?.input.Body, first)).toBe(true)
      expect(partSizes(seen.calls)).toEqual([P, P / 2])
      const both = new Uint8Array(first.length + rest.length)
      both.set(first)
      both.set(rest, first.length)
      expectSame(yield* read(f.at("whole")), both)
    }), 60_000)

  test.scoped()("a full part after the first is sent before any more input arrives", () =>
    Effect.gen(function*() {
      const { client } = yield* S3ClientInstance
      const store = yield* MutableObjectStore
      const f = yield* locatorMaker
      const seen = yield* spy(client)
      const more = yield* Deferred.make<void>()
      const bytes = randomBytes(2 * P + 10, 46)
      // Two whole parts, then nothing until `more`; part 1 goes out once part 2 has a byte, part 2 once full.
      const input = Stream.concat(
        cutBy(bytes.subarray(0, 2 * P), [MiB]),
        Stream.fromEffect(Deferred.await(more)).pipe(Stream.drain, Stream.concat(Stream.make(bytes.subarray(2 * P))))
      )
      const put = yield* Effect.fork(Stream.run(input, store.put(f.at("eager"))))
      yield* eventually(() => seen.count("UploadPart", (i) => i.PartNumber === 2) === 1, "part 2 was not sent before more input arrived")
      expect(seen.count("UploadPart")).toBe(2)
      yield* Deferred.succeed(more, undefined)
      const stat = yield* Fiber.join(put)
      expect(stat.size).toBe(bytes.length)
      expect(partSizes(seen.calls)).toEqual([P, P, 10])
      expectSame(yield* read(f.at("eager")), bytes)
    }), 60_000)

  test.scoped()(`the input is pulled at most ${CONCURRENCY} parts ahead of S3's answers`, () =>
    Effect.gen(function*() {
      const { client } = yield* S3ClientInstance
      const store = yield* MutableObjectStore
      const f = yield* locatorMaker
      const seen = yield* spy(client)
      const held = yield* holdParts(client)
      const bytes = randomBytes(6 * P, 47)
      let pulled = 0
      const input = cutBy(bytes, [MiB]).pipe(Stream.tap((c) => Effect.sync(() => (pulled += c.length))))
      const put = yield* Effect.fork(Stream.run(input, store.put(f.at("bounded"))))
      yield* eventually(() => held.waiting() >= CONCURRENCY, `${CONCURRENCY} parts were never sent`)
      // A pause for the writer to take whatever it still could without an answer (nothing, if bounded).
      yield* Effect.sleep("200 millis")
      expect(held.waiting()).toBe(CONCURRENCY)
      // The parts in flight, and the one chunk that waits for a part to be answered.
      expect(pulled).toBeLessThanOrEqual(CONCURRENCY * P + MiB)
      yield* held.open
      const stat = yield* Fiber.join(put)
      expect(stat.size).toBe(bytes.length)
      expect(seen.maxInFlight("UploadPart")).toBeLessThanOrEqual(CONCURRENCY)
      expectSame(yield* read(f.at("bounded")), bytes)
    }), 60_000)
})
