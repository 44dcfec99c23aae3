/**
 * Conformance suite for the BlobStore port. Every BlobStore (memory, the
 * CAS runtime over each object store, S3 ...) runs it from its own test file:
 *
 * ```ts
 * import { testBlobStore } from "../../conformance/BlobStore.js"
 * testBlobStore("cas over fs", CasBlobStore.layer().pipe(Layer.provide(fs)), {
 *   concurrentDedup: unsupported("two racing puts may both write")
 * })
 * ```
 *
 * The layer is shared by the suite's tests; each test uses content of its
 * own (seeded by a random number), so no test depends on what another
 * stored. Tests run with the live clock. `skipAll` registers every test as
 * skipped, with the reason in its title. New optional features get a flag
 * in `BlobStoreCapabilities` (absent = supported).
 *
 * Covers: round trips of 0 B, 1 B, 1 MiB + 1 and 20 MiB written in uneven
 * chunks, whose key equals an independently computed sha256 / BLAKE3;
 * deduplication (`deduplicated: true` the second time, and concurrent puts
 * of the same content storing it once); `expectedKey` (a mismatch stores
 * nothing); `maxSize` (exceeding it fails, also on an endless stream, and
 * stores nothing); a failing input stream stores nothing; ranged reads and
 * invalid ranges; stat/get/delete of missing keys; `list`.
 */
import { describe, expect, it as baseIt, layer as sharedLayer, type Vitest } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { blake3 } from "hash-wasm"
import { createHash } from "node:crypto"
import { BinaryKey, type HashAlgorithm } from "../core/BinaryKey.js"
import type { BlobError } from "../core/Errors.js"
import type { BlobWritePlan } from "../core/Models.js"
import { BlobStore } from "../ports/BlobStore.js"
import { chunked, collect, firstDifference, KiB, MiB, randomBytes, sameBytes } from "./bytes.js"
import { type Capabilities, type Capability, gate } from "./capabilities.js"

/** Optional features of a BlobStore; absent means supported. */
export interface BlobStoreCapabilities extends Capabilities {
  /** BLAKE3 keys (`plan.algorithm: "blake3"`). */
  readonly blake3?: Capability
  /** Of N concurrent puts of the same new content, exactly one reports `deduplicated: false`. */
  readonly concurrentDedup?: Capability
  /** `list` streams the stored blobs. */
  readonly list?: Capability
}

/** Hex digest computed without Graviton's code, to check keys independently. */
const independentDigest = (algorithm: HashAlgorithm, bytes: Uint8Array): Effect.Effect<string> =>
  algorithm === "sha256"
    ? Effect.sync(() => createHash("sha256").update(bytes).digest("hex"))
    : Effect.promise(() => blake3(bytes))

/** A random seed, so that each test (and each run) stores content nobody else did. */
const freshSeed = (): number => 1 + Math.floor(Math.random() * 0x7ffffff0)

/** Fails the test unless `effect` fails with BlobError of `reason` (a defect fails the test too). */
const expectFailure = <A, R>(effect: Effect.Effect<A, BlobError, R>, reason: BlobError["reason"], what: string) =>
  Effect.gen(function*() {
    const error = yield* Effect.flip(effect)
    expect(error._tag, what).toBe("BlobError")
    expect(error.reason, `${what}: ${error.message}`).toBe(reason)
  })

/** Registers the BlobStore conformance suite for one backend. */
export const testBlobStore = <E>(
  name: string,
  layer: Layer.Layer<BlobStore, E>,
  capabilities: BlobStoreCapabilities = {}
): void => {
  const title = `BlobStore[${name}]`
  if (capabilities.skipAll !== undefined) {
    // Registered as skipped (never run), so the layer is never built.
    describe(title, () => suite(baseIt as unknown as Vitest.MethodsNonLive<BlobStore, true>, capabilities))
  } else {
    sharedLayer(layer, { excludeTestServices: true })(title, (it) => suite(it, capabilities))
  }
}

const suite = (it: Vitest.MethodsNonLive<BlobStore, true>, capabilities: BlobStoreCapabilities): void => {
  const test = gate(it.effect, capabilities.skipAll)
  const put = (bytes: Uint8Array, plan?: BlobWritePlan, seed = 7) =>
    Effect.flatMap(BlobStore, (store) => Stream.run(chunked(bytes, { seed }), store.put(plan)))

  const roundTrip = (size: number, algorithm: HashAlgorithm, chunks: { min?: number; max?: number }) =>
    Effect.gen(function*() {
      const store = yield* BlobStore
      const bytes = randomBytes(size, freshSeed())
      const result = yield* Stream.run(chunked(bytes, { ...chunks, seed: size + 3 }), store.put({ algorithm }))
      expect(result.key.algorithm).toBe(algorithm)
      expect(result.key.digest).toBe(yield* independentDigest(algorithm, bytes))
      expect(result.key.size).toBe(size)
      expect(result.size).toBe(size)
      expect(result.deduplicated).toBe(false)
      const back = yield* collect(store.get(result.key))
      expect(sameBytes(back, bytes), firstDifference(back, bytes)).toBe(true)
      const stat = yield* store.stat(result.key)
      expect(Option.map(stat, (s) => [String(s.key), s.size])).toEqual(Option.some([String(result.key), size]))
      // Keys are structural values: a key rebuilt from its text finds the blob.
      const rebuilt = new BinaryKey({ algorithm, digest: result.key.digest, size })
      expect(Option.isSome(yield* store.stat(rebuilt))).toBe(true)
    })

  test("round trips 0 B and 1 B", () =>
    Effect.gen(function*() {
      const store = yield* BlobStore
      // The empty blob may already exist (shared store): check the key and the bytes, not the dedup flag.
      const empty = yield* Stream.run(Stream.empty, store.put())
      expect(String(empty.key)).toBe(`sha256:${createHash("sha256").digest("hex")}:0`)
      expect((yield* collect(store.get(empty.key))).length).toBe(0)
      expect(Option.map(yield* store.stat(empty.key), (s) => s.size)).toEqual(Option.some(0))
      // One chunk holding zero bytes is still the empty blob.
      const again = yield* Stream.run(Stream.make(new Uint8Array(0)), store.put())
      expect(String(again.key)).toBe(String(empty.key))
      expect(again.deduplicated).toBe(true)
      // 1 B: there are only 256 such blobs, so it may exist already too.
      const one = Uint8Array.of(freshSeed() & 0xff)
      const r = yield* Stream.run(Stream.make(one), store.put())
      expect(r.key.digest).toBe(createHash("sha256").update(one).digest("hex"))
      expect(r.size).toBe(1)
      expect(sameBytes(yield* collect(store.get(r.key)), one)).toBe(true)
    }))

  test("round trips 1 MiB + 1 in uneven chunks (sha256)", () => roundTrip(MiB + 1, "sha256", { min: 1, max: 64 * KiB }))

  test("round trips 20 MiB in uneven chunks (sha256)", () => roundTrip(20 * MiB, "sha256", {}), 120_000)

  gate(it.effect, capabilities.skipAll, capabilities.blake3)(
    "round trips 1 MiB + 1 in uneven chunks (blake3)",
    () => roundTrip(MiB + 1, "blake3", { min: 1, max: 64 * KiB })
  )

  gate(it.effect, capabilities.skipAll, capabilities.blake3)("the same bytes under both algorithms are two blobs", () =>
    Effect.gen(function*() {
      const store = yield* BlobStore
      const bytes = randomBytes(10 * KiB, freshSeed())
      const sha = yield* put(bytes, { algorithm: "sha256" })
      const b3 = yield* put(bytes, { algorithm: "blake3" })
      expect(sha.key.algorithm).toBe("sha256")
      expect(b3.key.algorithm).toBe("blake3")
      expect(b3.key.digest).toBe(yield* independentDigest("blake3", bytes))
      expect(b3.deduplicated).toBe(false)
      // The default algorithm is sha256.
      expect(String((yield* put(bytes)).key)).toBe(String(sha.key))
      yield* store.delete(sha.key)
      expect(Option.isNone(yield* store.stat(sha.key))).toBe(true)
      expect(sameBytes(yield* collect(store.get(b3.key)), bytes)).toBe(true)
    }))

  test("the same content twice is stored once: the second put reports deduplicated", () =>
    Effect.gen(function*() {
      const store = yield* BlobStore
      const bytes = randomBytes(200 * KiB, freshSeed())
      const first = yield* put(bytes, undefined, 1)
      // Different chunk boundaries, same content, same key.
      const second = yield* put(bytes, undefined, 2)
      expect(first.deduplicated).toBe(false)
      expect(second.deduplicated).toBe(true)
      expect(String(second.key)).toBe(String(first.key))
      expect(second.size).toBe(bytes.length)
      expect(sameBytes(yield* collect(store.get(first.key)), bytes)).toBe(true)
    }))

  test("concurrent puts of the same content all yield its key, and store it once", () =>
    Effect.gen(function*() {
      const store = yield* BlobStore
      const bytes = randomBytes(256 * KiB, freshSeed())
      const results = yield* Effect.forEach(
        Array.from({ length: 8 }, (_, i) => i),
        (i) => put(bytes, undefined, i + 1),
        { concurrency: "unbounded" }
      )
      expect(new Set(results.map((r) => String(r.key))).size).toBe(1)
      const fresh = results.filter((r) => !r.deduplicated).length
      if (capabilities.concurrentDedup === undefined || capabilities.concurrentDedup === true) {
        expect(fresh).toBe(1)
      } else {
        expect(fresh).toBeGreaterThanOrEqual(1)
      }
      expect(sameBytes(yield* collect(store.get(results[0]!.key)), bytes)).toBe(true)
      if (capabilities.list === undefined || capabilities.list === true) {
        const listed = yield* Stream.runCollect(
          Stream.filter(store.list, (s) => String(s.key) === String(results[0]!.key))
        )
        expect(Chunk.size(listed)).toBe(1)
      }
    }))

  test("an expectedKey that does not match fails with InvalidInput and stores nothing", () =>
    Effect.gen(function*() {
      const store = yield* BlobStore
      const bytes = randomBytes(50 * KiB, freshSeed())
      const other = randomBytes(50 * KiB, freshSeed())
      const digest = yield* independentDigest("sha256", bytes)
      const otherKey = new BinaryKey({ algorithm: "sha256", digest: yield* independentDigest("sha256", other), size: other.length })
      const key = new BinaryKey({ algorithm: "sha256", digest, size: bytes.length })
      // Same size, other digest.
      yield* expectFailure(put(bytes, { expectedKey: otherKey }), "InvalidInput", "digest mismatch")
      // Right digest, wrong size.
      yield* expectFailure(
        put(bytes, { expectedKey: new BinaryKey({ algorithm: "sha256", digest, size: bytes.length + 1 }) }),
        "InvalidInput",
        "size mismatch (longer expected)"
      )
      yield* expectFailure(
        put(bytes, { expectedKey: new BinaryKey({ algorithm: "sha256", digest, size: bytes.length - 1 }) }),
        "InvalidInput",
        "size mismatch (shorter expected)"
      )
      expect(Option.isNone(yield* store.stat(key))).toBe(true)
      expect(Option.isNone(yield* store.stat(otherKey))).toBe(true)
      // The matching expectation stores it.
      const ok = yield* put(bytes, { expectedKey: key })
      expect(String(ok.key)).toBe(String(key))
      expect(Option.isSome(yield* store.stat(key))).toBe(true)
    }))

  gate(it.effect, capabilities.skipAll, capabilities.blake3)("an expectedKey picks its algorithm when the plan names none", () =>
    Effect.gen(function*() {
      const bytes = randomBytes(4 * KiB, freshSeed())
      const key = new BinaryKey({ algorithm: "blake3", digest: yield* independentDigest("blake3", bytes), size: bytes.length })
      const result = yield* put(bytes, { expectedKey: key })
      expect(String(result.key)).toBe(String(key))
    }))

  test("maxSize: the limit itself passes, one byte more fails with InvalidInput and stores nothing", () =>
    Effect.gen(function*() {
      const store = yield* BlobStore
      const bytes = randomBytes(100 * KiB + 1, freshSeed())
      const key = new BinaryKey({ algorithm: "sha256", digest: yield* independentDigest("sha256", bytes), size: bytes.length })
      yield* expectFailure(put(bytes, { maxSize: bytes.length - 1 }), "InvalidInput", "one byte over")
      expect(Option.isNone(yield* store.stat(key))).toBe(true)
      const ok = yield* put(bytes, { maxSize: bytes.length })
      expect(ok.size).toBe(bytes.length)
      // An endless stream fails instead of running forever.
      const endless = Stream.repeatValue(randomBytes(1000, freshSeed()))
      yield* expectFailure(Stream.run(endless, store.put({ maxSize: 64 * KiB })), "InvalidInput", "endless stream")
    }))

  test("a failing input stream stores nothing", () =>
    Effect.gen(function*() {
      const store = yield* BlobStore
      const bytes = randomBytes(300 * KiB, freshSeed())
      const key = new BinaryKey({ algorithm: "sha256", digest: yield* independentDigest("sha256", bytes), size: bytes.length })
      const broken = Stream.concat(chunked(bytes.subarray(0, 200 * KiB)), Stream.fail("network down" as const))
      const error = yield* Effect.flip(Stream.run(broken, store.put()))
      expect(error).toBe("network down")
      expect(Option.isNone(yield* store.stat(key))).toBe(true)
      // Nor does an interrupted one.
      const stalled = Stream.concat(chunked(bytes.subarray(0, 200 * KiB)), Stream.never)
      yield* Stream.run(stalled, store.put()).pipe(Effect.timeout("50 millis"), Effect.ignore)
      expect(Option.isNone(yield* store.stat(key))).toBe(true)
      // The whole content, afterwards, is new.
      expect((yield* put(bytes)).deduplicated).toBe(false)
    }))

  test("ranged reads return exactly the requested bytes; invalid ranges fail with InvalidInput", () =>
    Effect.gen(function*() {
      const store = yield* BlobStore
      const size = 300 * KiB + 17
      const bytes = randomBytes(size, freshSeed())
      const { key } = yield* put(bytes, undefined, 5)
      const ranges: ReadonlyArray<readonly [number, number | undefined]> = [
        [0, 0],
        [0, 1],
        [10, 20],
        [64 * KiB - 1, 64 * KiB + 1],
        [1000, undefined],
        [size - 1, undefined],
        [size, undefined],
        [size, size],
        [0, size],
        [12345, 200 * KiB]
      ]
      for (const [start, end] of ranges) {
        const got = yield* collect(store.get(key, end === undefined ? { start } : { start, end }))
        const want = bytes.subarray(start, end ?? size)
        expect(sameBytes(got, want), `[${start}, ${end}) ${firstDifference(got, want)}`).toBe(true)
      }
      for (const [start, end] of [[-1, 10], [10, 5], [0, size + 1], [size + 1, undefined], [0.5, 3]] as const) {
        yield* expectFailure(
          Stream.runDrain(store.get(key, end === undefined ? { start } : { start, end })),
          "InvalidInput",
          `range [${start}, ${end})`
        )
      }
    }))

  test("missing keys: stat is None, get fails with NotFound, delete succeeds; delete is idempotent", () =>
    Effect.gen(function*() {
      const store = yield* BlobStore
      const bytes = randomBytes(3 * KiB, freshSeed())
      const missing = new BinaryKey({ algorithm: "sha256", digest: yield* independentDigest("sha256", bytes), size: bytes.length })
      expect(Option.isNone(yield* store.stat(missing))).toBe(true)
      yield* expectFailure(Stream.runDrain(store.get(missing)), "NotFound", "get missing")
      yield* expectFailure(Stream.runDrain(store.get(missing, { start: 0, end: 1 })), "NotFound", "ranged get missing")
      yield* store.delete(missing)
      const { key } = yield* put(bytes)
      expect(String(key)).toBe(String(missing))
      yield* store.delete(key)
      expect(Option.isNone(yield* store.stat(key))).toBe(true)
      yield* expectFailure(Stream.runDrain(store.get(key)), "NotFound", "get deleted")
      yield* store.delete(key)
      // Storing it again after a delete is a fresh write.
      expect((yield* put(bytes)).deduplicated).toBe(false)
    }))

  gate(it.effect, capabilities.skipAll, capabilities.list)("list streams every stored blob's stat", () =>
    Effect.gen(function*() {
      const store = yield* BlobStore
      const blobs = [randomBytes(1, freshSeed()), randomBytes(KiB, freshSeed()), randomBytes(70 * KiB, freshSeed())]
      const keys = yield* Effect.forEach(blobs, (b) => Effect.map(put(b), (r) => r.key))
      const listedSizes = (wanted: ReadonlyArray<BinaryKey>) =>
        Effect.map(Stream.runCollect(store.list), (all) => {
          const texts = new Set(wanted.map(String))
          return Chunk.toReadonlyArray(all)
            .filter((s) => texts.has(String(s.key)))
            .map((s) => [String(s.key), s.size] as const)
            .sort(([a], [b]) => (a < b ? -1 : 1))
        })
      expect(yield* listedSizes(keys)).toEqual(
        keys.map((k) => [String(k), k.size] as const).sort(([a], [b]) => (a < b ? -1 : 1))
      )
      yield* store.delete(keys[1]!)
      expect((yield* listedSizes(keys)).map(([k]) => k)).not.toContain(String(keys[1]))
      expect(yield* listedSizes(keys)).toHaveLength(2)
    }))
}
