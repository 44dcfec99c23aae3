/**
 * The blob record's state machine under contention: puts waiting on a
 * concurrent put, taking over abandoned claims and unfinished deletes, and
 * random concurrent puts, deletes and reads keeping every invariant.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as MemoryLayers from "../../src/backends/memory/MemoryLayers.js"
import * as MemoryObjectStore from "../../src/backends/memory/MemoryObjectStore.js"
import type * as BinaryKey from "../../src/core/BinaryKey.js"
import * as BlobLocator from "../../src/core/BlobLocator.js"
import { ObjectStoreError } from "../../src/core/Errors.js"
import * as Hashing from "../../src/core/Hashing.js"
import { BlobStore } from "../../src/ports/BlobStore.js"
import { KeyValueStore } from "../../src/ports/KeyValueStore.js"
import { MutableObjectStore } from "../../src/ports/ObjectStore.js"
import { ReplicaIndex } from "../../src/ports/ReplicaIndex.js"
import * as BlobMeta from "../../src/blobs/BlobMeta.js"
import * as CasBlobStore from "../../src/blobs/CasBlobStore.js"
import { chunked, collect, KiB, randomBytes, sameBytes } from "../../src/testing/bytes.js"
import { embedded, kvEntries, memory, objectsUnder, smallBlocks, tempDir } from "./fixtures.js"

const put = (bytes: Uint8Array) => Effect.flatMap(BlobStore, (store) => Stream.run(chunked(bytes), store.put()))

const addressOf = (key: BinaryKey.BinaryKey) =>
  Either.getOrThrow(BlobLocator.make("file", "blobs", BlobMeta.contentPath(key)))

const writeObject = (locator: BlobLocator.BlobLocator, bytes: Uint8Array) =>
  Effect.flatMap(MutableObjectStore, (objects) => Stream.run(Stream.make(bytes), objects.put(locator)))

const setRecord = (key: BinaryKey.BinaryKey, record: BlobMeta.BlobRecord) =>
  Effect.flatMap(KeyValueStore, (kv) => kv.put(BlobMeta.blobKey(key), BlobMeta.encodeBlob(key, record)))

const stateOf = (key: BinaryKey.BinaryKey) =>
  Effect.map(kvEntries(BlobMeta.blobKey(key)), (entries) => entries.map(([, v]) => (v as { state: string }).state))

const liveAt = (locator: BlobLocator.BlobLocator): BlobMeta.Live => ({
  _tag: "Live",
  id: "other",
  createdAt: Date.now(),
  contentType: undefined,
  storage: { _tag: "Monolithic", locator }
})

describe("CasBlobStore races", () => {
  it.live("a put waits while another put holds a fresh claim, then deduplicates against it", () =>
    Effect.gen(function*() {
      const bytes = randomBytes(64 * KiB, 1)
      const key = yield* Hashing.hashBytes("sha256", bytes)
      const address = addressOf(key)
      yield* setRecord(key, { _tag: "Pending", token: "other", since: Date.now(), locator: address })
      const fiber = yield* Effect.fork(put(bytes))
      yield* Effect.sleep("50 millis")
      // Still waiting: it must not store the content while the claim is fresh.
      expect(Option.isNone(yield* Fiber.poll(fiber))).toBe(true)
      expect(yield* objectsUnder("sha256/")).toEqual([])
      // The other put finishes.
      yield* writeObject(address, bytes)
      yield* setRecord(key, liveAt(address))
      const result = yield* Fiber.join(fiber)
      expect(result.deduplicated).toBe(true)
      expect(BlobLocator.render(result.locator)).toBe(BlobLocator.render(address))
      expect(yield* objectsUnder("staging/")).toEqual([])
    }).pipe(Effect.provide(memory())))

  it.live("an abandoned claim (older than the lease) is taken over", () =>
    Effect.gen(function*() {
      const store = yield* BlobStore
      const bytes = randomBytes(64 * KiB, 2)
      const key = yield* Hashing.hashBytes("sha256", bytes)
      yield* setRecord(key, { _tag: "Pending", token: "crashed", since: Date.now() - 60_000, locator: addressOf(key) })
      const result = yield* put(bytes)
      expect(result.deduplicated).toBe(false)
      expect(BlobLocator.render(result.locator)).toBe(BlobLocator.render(addressOf(key)))
      expect(yield* stateOf(key)).toEqual(["live"])
      expect(sameBytes(yield* collect(store.get(key)), bytes)).toBe(true)
    }).pipe(Effect.provide(memory({ lease: "1 second" }))))

  it.live("a put over an unfinished delete stores at an alternate address the delete cannot remove", () =>
    Effect.gen(function*() {
      const store = yield* BlobStore
      const objects = yield* MutableObjectStore
      const bytes = randomBytes(64 * KiB, 3)
      const key = yield* Hashing.hashBytes("sha256", bytes)
      const address = addressOf(key)
      // Another process hid the blob and has not removed its object yet.
      yield* writeObject(address, bytes)
      yield* setRecord(key, { _tag: "Deleting", token: "deleter", since: Date.now(), blob: liveAt(address) })
      expect(Option.isNone(yield* store.stat(key))).toBe(true)
      const result = yield* put(bytes)
      expect(result.deduplicated).toBe(false)
      const alternate = BlobLocator.render(result.locator)
      expect(alternate.startsWith(`${BlobLocator.render(address)}.`)).toBe(true)
      // The delete now removes the usual address: the blob is unaffected.
      yield* objects.delete(address)
      expect(sameBytes(yield* collect(store.get(key)), bytes)).toBe(true)
      expect((yield* (yield* ReplicaIndex).replicas(key)).map(BlobLocator.render)).toEqual([alternate])
      yield* store.delete(key)
      expect(yield* objectsUnder()).toEqual([])
      expect(yield* kvEntries("")).toEqual([])
    }).pipe(Effect.provide(memory())))

  it.live("delete leaves a fresh tombstone of another delete alone, and finishes an abandoned one", () =>
    Effect.gen(function*() {
      const store = yield* BlobStore
      const bytes = randomBytes(64 * KiB, 4)
      const { key, locator } = yield* put(bytes)
      const live = liveAt(locator)
      yield* setRecord(key, { _tag: "Deleting", token: "busy", since: Date.now(), blob: live })
      yield* store.delete(key)
      expect(yield* stateOf(key)).toEqual(["deleting"])
      expect(yield* objectsUnder()).toHaveLength(1)
      yield* setRecord(key, { _tag: "Deleting", token: "crashed", since: Date.now() - 60_000, blob: live })
      yield* store.delete(key)
      expect(yield* stateOf(key)).toEqual([])
      expect(yield* objectsUnder()).toEqual([])
      expect(yield* (yield* ReplicaIndex).replicas(key)).toEqual([])
    }).pipe(Effect.provide(memory({ lease: "1 second" }))))

  it.live("a delete whose object removal fails keeps the blob hidden, and the next delete finishes it at once", () => {
    let failing = true
    const flaky = Layer.effect(
      MutableObjectStore,
      Effect.map(MemoryObjectStore.make, (objects) => ({
        ...objects,
        delete: (locator: BlobLocator.BlobLocator) =>
          failing
            ? Effect.fail(new ObjectStoreError({ reason: "Unavailable", backend: "memory", method: "delete", description: "busy" }))
            : objects.delete(locator)
      }))
    )
    return Effect.gen(function*() {
      const store = yield* BlobStore
      const { key } = yield* put(randomBytes(64 * KiB, 5))
      const error = yield* Effect.flip(store.delete(key))
      expect([error.reason, error.backend, error.method]).toEqual(["Unavailable", "cas", "delete"])
      expect(Option.isNone(yield* store.stat(key))).toBe(true)
      expect(yield* stateOf(key)).toEqual(["deleting"])
      failing = false
      // Well within the (default, 30 s) lease: the failed delete marked its tombstone abandoned.
      yield* store.delete(key)
      expect(yield* stateOf(key)).toEqual([])
      expect(yield* objectsUnder()).toEqual([])
    }).pipe(Effect.provide(CasBlobStore.layer().pipe(Layer.provideMerge(Layer.merge(flaky, MemoryLayers.metadata)))))
  })

  const stress = Effect.gen(function*() {
    const store = yield* BlobStore
    const contents = [randomBytes(40 * KiB, 10), randomBytes(90 * KiB, 11), randomBytes(130 * KiB, 12)]
    const keys = yield* Effect.forEach(contents, (c) => Hashing.hashBytes("sha256", c))
    // A fixed pseudo-random schedule of puts, deletes and reads.
    let seed = 12345
    const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0)
    const ops = Array.from({ length: 150 }, () => [next() % 3, next() % 3] as const)
    yield* Effect.forEach(ops, ([op, i]) => {
      const bytes = contents[i]!
      const key = keys[i]!
      return op === 0
        ? Effect.map(put(bytes), (r) => expect(String(r.key)).toBe(String(key)))
        : op === 1
        ? store.delete(key)
        // A read either sees the whole verified blob or NotFound; never a corruption.
        : Effect.match(collect(store.get(key)), {
          onFailure: (e) => expect(e.reason).toBe("NotFound"),
          onSuccess: (got) => expect(sameBytes(got, bytes)).toBe(true)
        })
    }, { concurrency: 8, discard: true })

    // Invariants once everything settled.
    const records = yield* kvEntries("blobs/")
    expect(records.every(([, v]) => (v as { state: string }).state === "live")).toBe(true)
    expect(yield* objectsUnder("staging/")).toEqual([])
    const replicas = yield* ReplicaIndex
    const liveLocators = new Set<string>()
    for (const [i, key] of keys.entries()) {
      const stat = yield* store.stat(key)
      if (Option.isSome(stat)) {
        expect(sameBytes(yield* collect(store.get(key)), contents[i]!)).toBe(true)
        const manifest = records.find(([k]) => k === BlobMeta.blobKey(key))![1] as { layout: string; locator?: string }
        if (manifest.layout === "monolithic") {
          liveLocators.add(manifest.locator!)
          expect((yield* replicas.replicas(key)).map(BlobLocator.render)).toEqual([manifest.locator])
        }
      } else {
        expect(yield* replicas.replicas(key)).toEqual([])
      }
    }
    // Blocks: each referenced once per live blob using it, and nothing else is stored.
    const blocks = yield* kvEntries("blocks/")
    const expectedRefs = new Map<string, number>()
    for (const [, v] of records) {
      const r = v as { layout: string; blocks?: ReadonlyArray<[number, string]> }
      if (r.layout !== "chunked") continue
      for (const k of new Set(r.blocks!.map(([size, digest]) => `blocks/sha256:${digest}:${size}`))) {
        expectedRefs.set(k, (expectedRefs.get(k) ?? 0) + 1)
      }
    }
    expect(new Map(blocks.map(([k, v]) => [k, (v as { refs: number }).refs]))).toEqual(expectedRefs)
    for (const [, v] of blocks) liveLocators.add((v as { locator: string }).locator)
    expect(new Set((yield* objectsUnder()).map((o) => BlobLocator.render(o.locator)))).toEqual(liveLocators)
  })

  it.live("random concurrent puts, deletes and reads over memory keep every invariant (monolithic)", () =>
    stress.pipe(Effect.provide(memory())))

  it.live("random concurrent puts, deletes and reads over memory keep every invariant (chunked)", () =>
    stress.pipe(Effect.provide(memory({ layout: smallBlocks }))))

  it.live("random concurrent puts, deletes and reads over fs + LevelDB keep every invariant (both layouts)", () =>
    Effect.gen(function*() {
      const home = tempDir("cas-races-")
      yield* stress.pipe(Effect.provide(embedded(home)))
      yield* stress.pipe(Effect.provide(embedded(home, { layout: smallBlocks })))
    }))
})
