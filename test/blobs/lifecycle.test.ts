/**
 * What an unfinished put leaves behind: nothing. Interrupted, failed input,
 * size limit, expected key mismatch, a failing port: no staging object, no
 * block, no record, and the error keeps the port's reason.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import * as NFS from "node:fs"
import * as Path from "node:path"
import * as MemoryLayers from "../../src/backends/memory/MemoryLayers.js"
import * as MemoryObjectStore from "../../src/backends/memory/MemoryObjectStore.js"
import { BinaryKey } from "../../src/core/BinaryKey.js"
import { ObjectStoreError } from "../../src/core/Errors.js"
import * as Hashing from "../../src/core/Hashing.js"
import { BlobStore } from "../../src/ports/BlobStore.js"
import { MutableObjectStore } from "../../src/ports/ObjectStore.js"
import * as CasBlobStore from "../../src/blobs/CasBlobStore.js"
import { chunked, collect, KiB, MiB, randomBytes, sameBytes } from "../../src/testing/bytes.js"
import { embedded, type Env, kvEntries, memory, objectsUnder, smallBlocks, tempDir } from "./fixtures.js"

/** Fails the test unless nothing at all is stored: no object, no KV entry. */
const expectNothingStored = Effect.gen(function*() {
  expect((yield* objectsUnder()).map((o) => String(o.locator))).toEqual([])
  expect((yield* kvEntries("")).map(([k]) => k)).toEqual([])
})

/** Regular files under a directory (the fs store's own temp files included). */
const filesUnder = (dir: string): ReadonlyArray<string> =>
  NFS.existsSync(dir)
    ? NFS.readdirSync(dir, { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => Path.join(e.parentPath, e.name))
    : []

/** Starts a put, waits until all of `bytes` went in (the input has not ended), checks `during`, then interrupts it. */
const interruptMidway = (bytes: Uint8Array, during: Effect.Effect<void, never, Env> = Effect.void) =>
  Effect.gen(function*() {
    const store = yield* BlobStore
    const reached = yield* Deferred.make<void>()
    const input = Stream.concat(
      chunked(bytes),
      Stream.drain(Stream.fromEffect(Deferred.succeed(reached, undefined)))
    ).pipe(Stream.concat(Stream.never))
    const fiber = yield* Effect.fork(Stream.run(input, store.put()))
    yield* Deferred.await(reached)
    yield* during
    const exit = yield* Fiber.interrupt(fiber)
    expect(Exit.isInterrupted(exit)).toBe(true)
  })

/** Every failure mode of the input, each leaving nothing behind. */
const failedPutsLeaveNothing = Effect.gen(function*() {
  const store = yield* BlobStore
  const bytes = randomBytes(600 * KiB, 11)
  const key = yield* Hashing.hashBytes("sha256", bytes)

  yield* interruptMidway(bytes)
  yield* expectNothingStored

  const broken = Stream.concat(chunked(bytes), Stream.fail("network down" as const))
  expect(yield* Effect.flip(Stream.run(broken, store.put()))).toBe("network down")
  yield* expectNothingStored

  const endless = Stream.repeatValue(randomBytes(10 * KiB, 12))
  expect((yield* Effect.flip(Stream.run(endless, store.put({ maxSize: 300 * KiB })))).reason).toBe("InvalidInput")
  yield* expectNothingStored

  const wrong = new BinaryKey({ algorithm: "sha256", digest: "ab".repeat(32), size: bytes.length })
  const mismatch = yield* Effect.flip(Stream.run(chunked(bytes), store.put({ expectedKey: wrong })))
  expect(mismatch.reason).toBe("InvalidInput")
  // The message names both keys.
  expect(mismatch.message).toContain(String(key))
  expect(mismatch.message).toContain(String(wrong))
  yield* expectNothingStored
  expect(Option.isNone(yield* store.stat(key))).toBe(true)

  // And then the content goes in as new.
  const stored = yield* Stream.run(chunked(bytes), store.put({ expectedKey: key }))
  expect(stored.deduplicated).toBe(false)
  expect(sameBytes(yield* collect(store.get(key)), bytes)).toBe(true)
})

/** A MutableObjectStore over memory whose `move` is slowed down or fails, to reach the finishing step. */
const objectsWithMove = (
  move: (original: MutableObjectStore["Type"]["move"]) => MutableObjectStore["Type"]["move"]
): Layer.Layer<MutableObjectStore> =>
  Layer.effect(MutableObjectStore, Effect.map(MemoryObjectStore.make, (store) => ({ ...store, move: move(store.move) })))

const storeOver = (objects: Layer.Layer<MutableObjectStore>) =>
  CasBlobStore.layer().pipe(Layer.provideMerge(Layer.merge(objects, MemoryLayers.metadata)))

describe("CasBlobStore unfinished puts", () => {
  it.live("monolithic over memory: interrupted, failed, too large or mismatched puts store nothing", () =>
    failedPutsLeaveNothing.pipe(Effect.provide(memory())))

  it.live("chunked over memory: the same, and the blocks already stored are released", () =>
    failedPutsLeaveNothing.pipe(Effect.provide(memory({ layout: smallBlocks }))))

  it.live("monolithic over fs + LevelDB: nothing stored, no file left on disk", () => {
    const home = tempDir("cas-unfinished-")
    return Effect.gen(function*() {
      // The bytes are on disk, in the fs store's temp file, when the put is interrupted.
      yield* interruptMidway(randomBytes(3 * MiB, 13), Effect.sync(() => expect(filesUnder(Path.join(home, "blobs")).length).toBe(1)))
      yield* expectNothingStored
      expect(filesUnder(Path.join(home, "blobs"))).toEqual([])
      yield* failedPutsLeaveNothing
    }).pipe(Effect.provide(embedded(home)))
  })

  it.live("chunked over fs + LevelDB: nothing stored, no block file left on disk", () => {
    const home = tempDir("cas-unfinished-chunked-")
    return Effect.gen(function*() {
      // Most blocks are stored and referenced when the put is interrupted.
      yield* interruptMidway(
        randomBytes(3 * MiB, 14),
        Effect.gen(function*() {
          // Blocks are hashed and stored in the background (in batches): wait until many are.
          yield* kvEntries("blocks/").pipe(
            Effect.repeat({ until: (entries) => entries.length > 50, schedule: Schedule.spaced("5 millis") })
          )
          expect(filesUnder(Path.join(home, "blobs")).length).toBeGreaterThan(50)
        }).pipe(Effect.orDie)
      )
      yield* expectNothingStored
      expect(filesUnder(Path.join(home, "blobs"))).toEqual([])
    }).pipe(Effect.provide(embedded(home, { layout: smallBlocks })))
  })

  it.live("an interruption while the bytes are being moved into place lets the put finish consistently", () =>
    Effect.gen(function*() {
      const store = yield* BlobStore
      const bytes = randomBytes(100 * KiB, 15)
      const fiber = yield* Effect.fork(Stream.run(chunked(bytes), store.put()))
      // Wait for the claim: the put is now inside its uninterruptible finishing step.
      yield* kvEntries("blobs/").pipe(
        Effect.repeat({ until: (entries) => entries.some(([, v]) => (v as { state: string }).state === "pending"), schedule: Schedule.spaced("1 millis") })
      )
      expect(Exit.isInterrupted(yield* Fiber.interrupt(fiber))).toBe(true)
      const records = yield* kvEntries("blobs/")
      expect(records.map(([, v]) => (v as { state: string }).state)).toEqual(["live"])
      expect(yield* objectsUnder("staging/")).toEqual([])
      const key = yield* Hashing.hashBytes("sha256", bytes)
      expect(sameBytes(yield* collect(store.get(key)), bytes)).toBe(true)
    }).pipe(Effect.provide(storeOver(objectsWithMove((move) => (a, b) => Effect.zipRight(Effect.sleep("100 millis"), move(a, b)))))))

  it.live("a port failure keeps its reason, releases the claim and removes the staged bytes", () =>
    Effect.gen(function*() {
      const store = yield* BlobStore
      const bytes = randomBytes(50 * KiB, 16)
      const error = yield* Effect.flip(Stream.run(chunked(bytes), store.put()))
      expect([error._tag, error.reason, error.backend, error.method]).toEqual(["BlobError", "Unavailable", "cas", "put"])
      expect(error.cause).toBeInstanceOf(ObjectStoreError)
      expect(error.message).toContain("disk went away")
      yield* expectNothingStored
    }).pipe(Effect.provide(storeOver(objectsWithMove(() => (_, destination) =>
      Effect.fail(
        new ObjectStoreError({
          reason: "Unavailable",
          backend: "memory",
          method: "move",
          description: `disk went away before ${destination}`
        })
      ))))))

  it.live("invalid options refuse puts with InvalidInput; reads still work", () =>
    Effect.gen(function*() {
      const good = yield* CasBlobStore.make()
      const { key } = yield* Stream.run(Stream.make(randomBytes(KiB, 17)), good.put())
      const invalid: ReadonlyArray<CasBlobStore.Options> = [
        { layout: CasBlobStore.chunked({ min: 10, avg: 5, max: 1 }) },
        { scheme: "Not A Scheme" },
        { bucket: "" },
        { stagingPrefix: "sha256/tmp" },
        { stagingPrefix: "blocks", blockPrefix: "blocks" },
        { algorithm: "md5" as "sha256" }
      ]
      for (const options of invalid) {
        const store = yield* CasBlobStore.make(options)
        const error = yield* Effect.flip(Stream.run(Stream.make(new Uint8Array(1)), store.put()))
        expect(error.reason, JSON.stringify(options)).toBe("InvalidInput")
        expect(Option.isSome(yield* store.stat(key))).toBe(true)
      }
    }).pipe(Effect.provide(memory())))
})
