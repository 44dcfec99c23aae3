/**
 * Conformance suite for ImmutableObjectStore / MutableObjectStore, run
 * against every backend that provides them.
 *
 * How a backend's test file calls it (one call registers a `describe` block):
 *
 * ```ts
 * // test/backends/s3/ObjectStore.test.ts
 * import { testMutableObjectStore } from "graviton/testing"
 *
 * testMutableObjectStore("s3", S3ObjectStore.layer(options), {
 *   scheme: "s3",                 // scheme of every locator the suite uses
 *   bucket: "graviton-test",      // bucket (must exist, or be created by the layer)
 *   skipAll: serverAvailable ? undefined : "no S3 endpoint on this machine"
 * })
 * ```
 *
 * - The layer must provide both `MutableObjectStore` and
 *   `ImmutableObjectStore` (normally one instance behind both tags). It is
 *   built once per `describe` block and shared by its tests; every test
 *   works under its own random path prefix, so leftovers of other tests (or
 *   other runs, in a shared bucket) do not disturb it.
 * - Tests run with the live clock (no TestClock), so retry schedules and
 *   network timeouts in a backend behave as in production.
 * - What the store can do comes from its own declaration, the
 *   `capabilities` of the services the layer built (read side from
 *   ImmutableObjectStore, write side from MutableObjectStore). Every
 *   declared feature the port lets a caller observe is tested, so a store
 *   cannot claim one it lacks: contentType, metadata, etag, lastModified,
 *   rangedRead, fileAndPrefix, conditionalWrite and nativeMove (the object
 *   keeps its etag and lastModified). Where the port defines what a lacking
 *   store does (a ranged get or a create-only put fails with Unsupported; `a`
 *   next to `a/b` fails with Conflict), that is tested too. nativeCopy,
 *   multipart, encryption and maxObjectSize cannot be seen through the port:
 *   each backend's own tests check them (S3: server-side copies, multipart
 *   uploads, SSE headers; PostgreSQL: copies share content).
 * - A test needing a feature the store does not declare is still run up to
 *   its first step and then skipped, the reason shown next to its name
 *   (`↓ name [skipped: the store does not declare fileAndPrefix]`); the
 *   options below only carry test-only knobs, each skip with its reason in
 *   the test title.
 * - `testImmutableObjectStore` is the read-side half (head, get, ranges,
 *   list). It seeds its fixtures through `MutableObjectStore` and reads
 *   through `ImmutableObjectStore`, so a read-only backend runs it with a
 *   layer that pairs it with any writer over the same storage.
 *   `testMutableObjectStore` runs both halves.
 */
import { beforeEach, describe, expect, layer, type Vitest } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { randomUUID } from "node:crypto"
import * as BlobLocator from "../core/BlobLocator.js"
import type { ErrorReason, ObjectStoreError } from "../core/Errors.js"
import * as KvKey from "../core/KvKey.js"
import type { ObjectStat } from "../core/Models.js"
import type { ByteRange } from "../core/RangeSet.js"
import { ImmutableObjectStore, MutableObjectStore } from "../ports/ObjectStore.js"
import { type ObjectStoreCapabilities, type ObjectStoreFeature, features } from "../ports/ObjectStoreCapabilities.js"
import { chunked, collect, firstDifference, MiB, randomBytes, sameBytes, utf8 } from "./bytes.js"
import { type Capabilities, type Capability, gate } from "./capabilities.js"

/** Test-only knobs of one run of the suite; what the store can do comes from its own declaration. */
export interface ObjectStoreSuiteOptions extends Capabilities {
  /** Scheme of the locators the suite writes, e.g. "file", "s3", "mem". */
  readonly scheme: string
  /** Bucket the suite writes into (it only touches paths under a random prefix). */
  readonly bucket: string
  /** A put whose `size` option disagrees with the stream fails with InvalidInput and stores nothing. */
  readonly declaredSizeCheck?: Capability
  /** The 20 MiB round trip (turn off only for a backend or server that cannot hold it, or to save time). */
  readonly largeObjects?: Capability
  /** Objects written for the big listing test (default 2,500). */
  readonly listingSize?: number
}

type Stores = MutableObjectStore | ImmutableObjectStore

const TWENTY_MIB = 20 * MiB
let twentyMiB: Uint8Array | undefined
/** Generated once per test process, then shared: the same bytes for every backend. */
const bigBytes = () => (twentyMiB ??= randomBytes(TWENTY_MIB, 2024))

/** Flips an effect expected to fail into its error; a defect or success fails the test. */
const failure = <A, R>(effect: Effect.Effect<A, ObjectStoreError, R>) =>
  Effect.flatMap(Effect.exit(effect), (exit) =>
    Exit.match(exit, {
      onSuccess: (a) => Effect.dieMessage(`expected a failure, got success: ${String(a)}`),
      onFailure: (cause) =>
        Option.match(Cause.failureOption(cause), {
          onNone: () => Effect.dieMessage(`expected a typed failure, got: ${Cause.pretty(cause)}`),
          onSome: Effect.succeed
        })
    }))

/** Asserts the effect fails with an ObjectStoreError of `reason` (a defect fails the test). */
const expectReason = <A, R>(effect: Effect.Effect<A, ObjectStoreError, R>, reason: ErrorReason) =>
  Effect.map(failure(effect), (e) => {
    expect(e._tag).toBe("ObjectStoreError")
    expect(e.reason).toBe(reason)
    return e
  })

/** Locator helpers bound to one test's random prefix. */
const fixture = (caps: ObjectStoreSuiteOptions) =>
  Effect.sync(() => {
    const base = `conformance/${randomUUID()}/`
    const at = (path: string) => Either.getOrThrow(BlobLocator.make(caps.scheme, caps.bucket, base + path))
    const prefix = (path = "") => Either.getOrThrow(BlobLocator.makePrefix(caps.scheme, caps.bucket, base + path))
    return { base, at, prefix }
  })

const putBytes = (l: BlobLocator.BlobLocator, bytes: Uint8Array, options?: Parameters<MutableObjectStore["Type"]["put"]>[1]) =>
  Effect.flatMap(MutableObjectStore, (s) => Stream.run(chunked(bytes), s.put(l, options)))

const read = (l: BlobLocator.BlobLocator, range?: ByteRange) =>
  Effect.flatMap(ImmutableObjectStore, (s) => collect(s.get(l, range)))

const head = (l: BlobLocator.BlobLocator) => Effect.flatMap(ImmutableObjectStore, (s) => s.head(l))

const listPaths = (p: BlobLocator.LocatorPrefix) =>
  Effect.flatMap(ImmutableObjectStore, (s) =>
    Effect.map(Stream.runCollect(s.list(p)), (stats) => Chunk.toReadonlyArray(stats).map((st) => st.locator.path)))

const expectBytes = (actual: Uint8Array, expected: Uint8Array) => {
  if (!sameBytes(actual, expected)) expect.fail(firstDifference(actual, expected))
}

/** A stream that emits `bytes`, signals `started`, then waits forever (to be interrupted). */
const stalled = (bytes: Uint8Array, started: Deferred.Deferred<void>) =>
  Stream.concat(
    chunked(bytes),
    Stream.fromEffect(Deferred.succeed(started, undefined)).pipe(Stream.drain, Stream.concat(Stream.never))
  )

class Boom {
  readonly _tag = "Boom"
}

/** The read side: head, get, ranges and listings (fixtures are written through MutableObjectStore). */
export const testImmutableObjectStore = <E>(
  name: string,
  storeLayer: Layer.Layer<Stores, E>,
  caps: ObjectStoreSuiteOptions
) =>
  describe(`ImmutableObjectStore[${name}]`, () => {
    const suite = declarations()
    layer(suite.noting(storeLayer), { excludeTestServices: true, timeout: "120 seconds" })((it) => {
      immutableTests(suite.register(it, caps, "read"), caps)
    })
  })

/** The whole port: the read side plus put, overwrite, delete, copy, move and failure atomicity. */
export const testMutableObjectStore = <E>(
  name: string,
  storeLayer: Layer.Layer<Stores, E>,
  caps: ObjectStoreSuiteOptions
) =>
  describe(`MutableObjectStore[${name}]`, () => {
    const suite = declarations()
    layer(suite.noting(storeLayer), { excludeTestServices: true, timeout: "120 seconds" })((it) => {
      immutableTests(suite.register(it, caps, "read"), caps)
      mutableTests(suite.register(it, caps, "write"), caps)
    })
  })

type It = Vitest.MethodsNonLive<Stores, true>

/** A feature a test needs the store to declare (`"etag"`), or to lack (`"!rangedRead"`). */
type Need = ObjectStoreFeature | `!${ObjectStoreFeature}`

/** Registers one test: needs on the store's declaration, then test-only knobs (skipped with their reason in the title). */
type Register = (needs?: ReadonlyArray<Need>, ...knobs: ReadonlyArray<Capability | string | undefined>) => Vitest.Test<Stores>

/** Why a test skips under `declared`; undefined when it runs. */
const unmet = (needs: ReadonlyArray<Need>, declared: ObjectStoreCapabilities): string | undefined => {
  const absent = needs.filter((n): n is ObjectStoreFeature => !n.startsWith("!") && !declared[n as ObjectStoreFeature])
  const present = needs.filter((n) => n.startsWith("!") && declared[n.slice(1) as ObjectStoreFeature]).map((n) => n.slice(1))
  if (absent.length > 0) return `skipped: the store does not declare ${absent.join(", ")}`
  if (present.length > 0) return `skipped: the store declares ${present.join(", ")}; this test is for stores without it`
  return undefined
}

/**
 * The store's declarations, noted when the suite's layer is built, and the
 * needs of each test: before each test, one whose needs the declaration
 * does not meet is skipped with the reason (test titles are fixed before
 * any layer is built, so the reason goes in vitest's skip note).
 */
const declarations = () => {
  const declared: { read?: ObjectStoreCapabilities; write?: ObjectStoreCapabilities } = {}
  const needs = new Map<string, { readonly side: "read" | "write"; readonly needs: ReadonlyArray<Need> }>()
  beforeEach((context) => {
    const entry = needs.get(context.task.name)
    const declaration = entry === undefined ? undefined : declared[entry.side]
    if (entry === undefined || declaration === undefined) return
    const reason = unmet(entry.needs, declaration)
    if (reason !== undefined) context.skip(reason)
  })
  return {
    noting: <E>(storeLayer: Layer.Layer<Stores, E>) =>
      Layer.tap(storeLayer, (context) =>
        Effect.sync(() => {
          declared.read = Context.get(context, ImmutableObjectStore).capabilities
          declared.write = Context.get(context, MutableObjectStore).capabilities
        })),
    register: (it: It, caps: ObjectStoreSuiteOptions, side: "read" | "write"): Register =>
    (required = [], ...knobs) => {
      const tester = gate(it.effect, caps.skipAll, ...knobs)
      return (name, self, timeout) => {
        if (required.length > 0) needs.set(name, { side, needs: required })
        tester(name, self, timeout)
      }
    }
  }
}

/** The declaration of the store behind `tag`. */
const declaredBy = (tag: typeof ImmutableObjectStore | typeof MutableObjectStore): Effect.Effect<ObjectStoreCapabilities, never, Stores> =>
  tag === ImmutableObjectStore
    ? Effect.map(ImmutableObjectStore, (store) => store.capabilities)
    : Effect.map(MutableObjectStore, (store) => store.capabilities)

const immutableTests = (test: Register, caps: ObjectStoreSuiteOptions) => {
  test()("head of a missing object is None; get is NotFound (with or without a range)", () =>
    Effect.gen(function*() {
      const f = yield* fixture(caps)
      expect(Option.isNone(yield* head(f.at("missing")))).toBe(true)
      yield* expectReason(read(f.at("missing")), "NotFound")
      if ((yield* declaredBy(ImmutableObjectStore)).rangedRead) {
        yield* expectReason(read(f.at("missing"), { start: 0, end: 0 }), "NotFound")
      }
    }))

  test()("the declaration is well formed", () =>
    Effect.gen(function*() {
      for (const tag of [ImmutableObjectStore, MutableObjectStore] as const) {
        const declared = yield* declaredBy(tag)
        for (const feature of features) expect([feature, typeof declared[feature]]).toEqual([feature, "boolean"])
        expect(["none", "sse-s3", "sse-kms", "sse-c"]).toContain(declared.encryption)
        const max = declared.maxObjectSize
        if (max !== undefined) expect(Number.isSafeInteger(max) && max > 0).toBe(true)
      }
    }))

  for (
    const [label, size] of [
      ["0 B", 0],
      ["1 B", 1],
      ["1 MiB + 1", MiB + 1]
    ] as const
  ) {
    test()(`round trip of ${label} sent in uneven chunks is byte-exact`, () =>
      Effect.gen(function*() {
        const f = yield* fixture(caps)
        const bytes = randomBytes(size, size + 1)
        const stat = yield* putBytes(f.at("obj"), bytes)
        expect(stat.size).toBe(size)
        expect(BlobLocator.render(stat.locator)).toBe(BlobLocator.render(f.at("obj")))
        expectBytes(yield* read(f.at("obj")), bytes)
        const h = yield* head(f.at("obj"))
        expect(Option.map(h, (s) => s.size)).toEqual(Option.some(size))
      }))
  }

  test()("empty chunks anywhere in the stream are harmless", () =>
    Effect.gen(function*() {
      const f = yield* fixture(caps)
      const store = yield* MutableObjectStore
      const empty = new Uint8Array(0)
      const parts = [empty, utf8("ab"), empty, empty, utf8("c"), empty]
      const stat = yield* Stream.run(Stream.fromIterable(parts), store.put(f.at("gaps")))
      expect(stat.size).toBe(3)
      expectBytes(yield* read(f.at("gaps")), utf8("abc"))
      const onlyEmpty = yield* Stream.run(Stream.make(empty, empty), store.put(f.at("nothing")))
      expect(onlyEmpty.size).toBe(0)
    }))

  test([], caps.largeObjects)("round trip of 20 MiB in ~64 KiB uneven chunks is byte-exact", () =>
    Effect.gen(function*() {
      const f = yield* fixture(caps)
      const bytes = bigBytes()
      const store = yield* MutableObjectStore
      const stat = yield* Stream.run(chunked(bytes, { min: 1, max: 128 * 1024, seed: 11 }), store.put(f.at("big")))
      expect(stat.size).toBe(TWENTY_MIB)
      expectBytes(yield* read(f.at("big")), bytes)
      // A range across the middle, to exercise offsets far into the object.
      const start = 7 * MiB + 12345
      if ((yield* declaredBy(ImmutableObjectStore)).rangedRead) {
        expectBytes(yield* read(f.at("big"), { start, end: start + 3 * MiB }), bytes.subarray(start, start + 3 * MiB))
      }
    }), 120_000)

  test(["rangedRead"])("ranged reads: start, middle, end, open-ended, empty and whole", () =>
    Effect.gen(function*() {
      const f = yield* fixture(caps)
      const bytes = randomBytes(300_001, 5)
      yield* putBytes(f.at("ranged"), bytes)
      const cases: ReadonlyArray<readonly [ByteRange, number, number]> = [
        [{ start: 0, end: 1 }, 0, 1],
        [{ start: 0, end: 70_000 }, 0, 70_000],
        [{ start: 123_456, end: 234_567 }, 123_456, 234_567],
        [{ start: 300_000, end: 300_001 }, 300_000, 300_001],
        [{ start: 299_000 }, 299_000, 300_001],
        [{ start: 0 }, 0, 300_001],
        [{ start: 1000, end: 1000 }, 1000, 1000],
        [{ start: 300_001 }, 300_001, 300_001],
        [{ start: 300_001, end: 300_001 }, 300_001, 300_001]
      ]
      for (const [range, start, end] of cases) {
        const got = yield* read(f.at("ranged"), range)
        if (!sameBytes(got, bytes.subarray(start, end))) {
          expect.fail(`range ${JSON.stringify(range)}: ${firstDifference(got, bytes.subarray(start, end))}`)
        }
      }
    }))

  test(["!rangedRead"])("without rangedRead, a ranged get fails with Unsupported and a whole get still works", () =>
    Effect.gen(function*() {
      const f = yield* fixture(caps)
      yield* putBytes(f.at("whole"), utf8("whole"))
      yield* expectReason(read(f.at("whole"), { start: 1, end: 3 }), "Unsupported")
      expectBytes(yield* read(f.at("whole")), utf8("whole"))
    }))

  test(["rangedRead"])("ranges on an empty object: [0, 0) and open-ended are empty; anything further is InvalidInput", () =>
    Effect.gen(function*() {
      const f = yield* fixture(caps)
      yield* putBytes(f.at("empty"), new Uint8Array(0))
      expect((yield* read(f.at("empty"), { start: 0, end: 0 })).length).toBe(0)
      expect((yield* read(f.at("empty"), { start: 0 })).length).toBe(0)
      yield* expectReason(read(f.at("empty"), { start: 0, end: 1 }), "InvalidInput")
      yield* expectReason(read(f.at("empty"), { start: 1 }), "InvalidInput")
    }))

  test(["rangedRead"])("bad ranges fail with InvalidInput, never a defect", () =>
    Effect.gen(function*() {
      const f = yield* fixture(caps)
      yield* putBytes(f.at("ten"), randomBytes(10, 3))
      const bad: ReadonlyArray<ByteRange> = [
        { start: 0, end: 11 }, // past the end
        { start: 11 }, // starts past the end
        { start: 10, end: 12 },
        { start: 5, end: 4 }, // reversed
        { start: -1, end: 3 }, // negative
        { start: 1.5, end: 3 }, // not an integer
        { start: 0, end: Number.NaN },
        { start: 0, end: Number.POSITIVE_INFINITY }
      ]
      for (const range of bad) {
        const e = yield* failure(read(f.at("ten"), range))
        expect([JSON.stringify(range), e.reason]).toEqual([JSON.stringify(range), "InvalidInput"])
      }
    }))

  test()("head reports the size and the locator", () =>
    Effect.gen(function*() {
      const f = yield* fixture(caps)
      yield* putBytes(f.at("sized"), randomBytes(4321, 9))
      const stat = Option.getOrThrow(yield* head(f.at("sized")))
      expect(stat.size).toBe(4321)
      expect(BlobLocator.render(stat.locator)).toBe(BlobLocator.render(f.at("sized")))
    }))

  test(["lastModified"])("head has a lastModified date", () =>
    Effect.gen(function*() {
      const f = yield* fixture(caps)
      yield* putBytes(f.at("dated"), utf8("x"))
      const stat = Option.getOrThrow(yield* head(f.at("dated")))
      expect(Option.isSome(stat.lastModified)).toBe(true)
      expect(Number.isNaN(Option.getOrThrow(stat.lastModified).getTime())).toBe(false)
    }))

  test(["contentType"])("contentType round trips through put and head", () =>
    Effect.gen(function*() {
      const f = yield* fixture(caps)
      yield* putBytes(f.at("typed"), utf8("{}"), { contentType: "application/json" })
      yield* putBytes(f.at("untyped"), utf8("{}"))
      expect(Option.flatMap(yield* head(f.at("typed")), (s) => s.contentType)).toEqual(Option.some("application/json"))
      // An overwrite without a content type does not inherit the old one.
      yield* putBytes(f.at("typed"), utf8("[]"))
      const after = Option.getOrThrow(yield* head(f.at("typed")))
      expect(Option.getOrElse(after.contentType, () => "none")).not.toBe("application/json")
    }))

  test(["metadata"])("user metadata round trips through put and head", () =>
    Effect.gen(function*() {
      const f = yield* fixture(caps)
      const metadata = { origin: "conformance", "sha-hint": "abc123" }
      yield* putBytes(f.at("meta"), utf8("m"), { metadata })
      expect(Option.getOrThrow(yield* head(f.at("meta"))).metadata).toEqual(metadata)
      yield* putBytes(f.at("meta"), utf8("n"))
      expect(Option.getOrThrow(yield* head(f.at("meta"))).metadata).toEqual({})
    }))

  test()("a path that is only a prefix of other objects is not an object", () =>
    Effect.gen(function*() {
      const f = yield* fixture(caps)
      yield* putBytes(f.at("dir/child"), utf8("c"))
      expect(Option.isNone(yield* head(f.at("dir")))).toBe(true)
      yield* expectReason(read(f.at("dir")), "NotFound")
    }))

  test(["fileAndPrefix"])("an object and objects under it as a prefix coexist (`a` and `a/b`)", () =>
    Effect.gen(function*() {
      const f = yield* fixture(caps)
      yield* putBytes(f.at("a/b"), utf8("child"))
      yield* putBytes(f.at("a"), utf8("parent"))
      expectBytes(yield* read(f.at("a")), utf8("parent"))
      expectBytes(yield* read(f.at("a/b")), utf8("child"))
      expect(yield* listPaths(f.prefix())).toEqual([f.base + "a", f.base + "a/b"])
      expect(yield* listPaths(f.prefix("a/"))).toEqual([f.base + "a/b"])
    }))

  test()("list of a prefix with nothing under it is empty", () =>
    Effect.gen(function*() {
      const f = yield* fixture(caps)
      expect(yield* listPaths(f.prefix())).toEqual([])
      expect(yield* listPaths(f.prefix("nothing/"))).toEqual([])
      expect(yield* listPaths(f.prefix("noth"))).toEqual([])
    }))

  test()("list: sizes are right and sibling prefixes (a/ vs ab/ vs a-) never leak", () =>
    Effect.gen(function*() {
      const f = yield* fixture(caps)
      const names = ["a/1", "a/2/x", "a-", "a-b", "ab/1", "ab0", "a0", "b/1", "aa/1"]
      yield* Effect.forEach(names, (n, i) => putBytes(f.at(n), randomBytes(i + 1, i)), { concurrency: 4, discard: true })
      const expected = (pre: string) =>
        names.filter((n) => n.startsWith(pre)).sort(KvKey.compare).map((n) => f.base + n)
      expect(yield* listPaths(f.prefix("a/"))).toEqual(expected("a/"))
      expect(yield* listPaths(f.prefix("ab/"))).toEqual(expected("ab/"))
      expect(yield* listPaths(f.prefix("a-"))).toEqual(expected("a-"))
      expect(yield* listPaths(f.prefix("ab"))).toEqual(expected("ab"))
      expect(yield* listPaths(f.prefix("a"))).toEqual(expected("a"))
      expect(yield* listPaths(f.prefix())).toEqual(expected(""))
      const stats = yield* Effect.flatMap(ImmutableObjectStore, (s) => Stream.runCollect(s.list(f.prefix())))
      for (const st of stats) {
        expect(st.size).toBe(names.indexOf(st.locator.path.slice(f.base.length)) + 1)
        expect(st.locator.scheme).toBe(caps.scheme)
        expect(st.locator.bucket).toBe(caps.bucket)
      }
    }))

  const listingSize = caps.listingSize ?? 2500
  test()(`list: ${listingSize} entries stream in UTF-8 byte order of path`, () =>
    Effect.gen(function*() {
      const f = yield* fixture(caps)
      // Mixed depths and characters whose UTF-16 order differs from their
      // UTF-8 order (U+FF5E sorts after U+1F600 in UTF-16, before it in UTF-8).
      const marks = ["", "-", "0", "~", "é", "\uFF5E", "😀", "A", "_"]
      const names: Array<string> = []
      for (let i = 0; i < listingSize; i++) {
        const mark = marks[i % marks.length]
        const depth = i % 5
        names.push(
          depth === 0
            ? `n${i}${mark}`
            : depth === 1
            ? `d${i % 7}${mark}/n${i}`
            : depth === 2
            ? `d${i % 7}/e${i % 3}/n${i}${mark}`
            : depth === 3
            ? `d${i % 7}-${i % 2}${mark}`
            : `d${i % 7}/${mark}x${i}`
        )
      }
      const unique = Array.from(new Set(names))
      yield* Effect.forEach(unique, (n) => putBytes(f.at(`list/${n}`), utf8(n)), { concurrency: 16, discard: true })
      // Siblings that must not leak into `list/`.
      yield* putBytes(f.at("listing"), utf8("x"))
      yield* putBytes(f.at("list-other/y"), utf8("y"))
      const expected = unique.map((n) => `${f.base}list/${n}`).sort(KvKey.compare)
      const got = yield* listPaths(f.prefix("list/"))
      expect(got.length).toBe(expected.length)
      expect(got).toEqual(expected)
    }), 120_000)
}

const mutableTests = (test: Register, caps: ObjectStoreSuiteOptions) => {
  test()("overwrite replaces the content and the size", () =>
    Effect.gen(function*() {
      const f = yield* fixture(caps)
      yield* putBytes(f.at("o"), randomBytes(5000, 1))
      const second = randomBytes(1234, 2)
      const stat = yield* putBytes(f.at("o"), second)
      expect(stat.size).toBe(1234)
      expectBytes(yield* read(f.at("o")), second)
      expect(Option.map(yield* head(f.at("o")), (s) => s.size)).toEqual(Option.some(1234))
      expect(yield* listPaths(f.prefix())).toEqual([f.base + "o"])
    }))

  test(["etag"])("etag is present and changes when the content changes", () =>
    Effect.gen(function*() {
      const f = yield* fixture(caps)
      yield* putBytes(f.at("e"), utf8("one"))
      const first = Option.getOrThrow(yield* head(f.at("e"))).etag
      yield* putBytes(f.at("e"), utf8("two!"))
      const second = Option.getOrThrow(yield* head(f.at("e"))).etag
      expect(Option.isSome(first)).toBe(true)
      expect(Option.isSome(second)).toBe(true)
      expect(second).not.toEqual(first)
    }))

  test()("delete removes the object and is idempotent", () =>
    Effect.gen(function*() {
      const store = yield* MutableObjectStore
      const f = yield* fixture(caps)
      yield* putBytes(f.at("d/x"), utf8("x"))
      yield* putBytes(f.at("d/y"), utf8("y"))
      yield* store.delete(f.at("d/x"))
      expect(Option.isNone(yield* head(f.at("d/x")))).toBe(true)
      yield* expectReason(read(f.at("d/x")), "NotFound")
      expect(yield* listPaths(f.prefix())).toEqual([f.base + "d/y"])
      yield* store.delete(f.at("d/x"))
      yield* store.delete(f.at("never/existed"))
      // Deleting a name that is only a prefix of other objects removes nothing.
      yield* store.delete(f.at("d"))
      expectBytes(yield* read(f.at("d/y")), utf8("y"))
    }))

  test()("copy: destination gets the bytes, source stays, existing destination is replaced", () =>
    Effect.gen(function*() {
      const store = yield* MutableObjectStore
      const f = yield* fixture(caps)
      const bytes = randomBytes(200_000, 4)
      yield* putBytes(f.at("src"), bytes)
      yield* putBytes(f.at("deep/dst"), utf8("old content"))
      const stat = yield* store.copy(f.at("src"), f.at("deep/dst"))
      expect(stat.size).toBe(bytes.length)
      expect(BlobLocator.render(stat.locator)).toBe(BlobLocator.render(f.at("deep/dst")))
      expectBytes(yield* read(f.at("deep/dst")), bytes)
      expectBytes(yield* read(f.at("src")), bytes)
      const fresh = yield* store.copy(f.at("src"), f.at("new/place"))
      expect(fresh.size).toBe(bytes.length)
      expect(yield* listPaths(f.prefix())).toEqual([f.base + "deep/dst", f.base + "new/place", f.base + "src"])
    }))

  test()("copy and move of a missing source fail with NotFound and leave the destination alone", () =>
    Effect.gen(function*() {
      const store = yield* MutableObjectStore
      const f = yield* fixture(caps)
      yield* putBytes(f.at("dst"), utf8("keep"))
      yield* expectReason(store.copy(f.at("nope"), f.at("dst")), "NotFound")
      yield* expectReason(store.move(f.at("nope"), f.at("dst")), "NotFound")
      yield* expectReason(store.copy(f.at("nope"), f.at("other")), "NotFound")
      expectBytes(yield* read(f.at("dst")), utf8("keep"))
      expect(Option.isNone(yield* head(f.at("other")))).toBe(true)
    }))

  test()("move: destination gets the bytes, the source is gone", () =>
    Effect.gen(function*() {
      const store = yield* MutableObjectStore
      const f = yield* fixture(caps)
      const bytes = randomBytes(70_000, 6)
      yield* putBytes(f.at("from/here"), bytes)
      yield* putBytes(f.at("to/there"), utf8("replaced"))
      const stat = yield* store.move(f.at("from/here"), f.at("to/there"))
      expect(stat.size).toBe(bytes.length)
      expectBytes(yield* read(f.at("to/there")), bytes)
      expect(Option.isNone(yield* head(f.at("from/here")))).toBe(true)
      yield* expectReason(read(f.at("from/here")), "NotFound")
      expect(yield* listPaths(f.prefix())).toEqual([f.base + "to/there"])
      yield* store.move(f.at("to/there"), f.at("elsewhere"))
      expect(yield* listPaths(f.prefix())).toEqual([f.base + "elsewhere"])
    }))

  test(["contentType", "metadata"])("copy and move keep contentType and metadata", () =>
    Effect.gen(function*() {
      const store = yield* MutableObjectStore
      const f = yield* fixture(caps)
      const options = { contentType: "text/plain", metadata: { k: "v" } }
      yield* putBytes(f.at("m"), utf8("hello"), options)
      yield* putBytes(f.at("c"), utf8("old"))
      yield* store.copy(f.at("m"), f.at("c"))
      const copied = Option.getOrThrow(yield* head(f.at("c")))
      expect([copied.contentType, copied.metadata]).toEqual([Option.some("text/plain"), { k: "v" }])
      yield* store.move(f.at("c"), f.at("moved"))
      const moved = Option.getOrThrow(yield* head(f.at("moved")))
      expect([moved.contentType, moved.metadata]).toEqual([Option.some("text/plain"), { k: "v" }])
    }))

  test(["nativeMove"])("a native move keeps the object as it was: the etag and lastModified it declares", () =>
    Effect.gen(function*() {
      const store = yield* MutableObjectStore
      const declared = yield* declaredBy(MutableObjectStore)
      if (!declared.etag && !declared.lastModified) {
        return expect.fail("nativeMove is declared, but neither etag nor lastModified: nothing shows that the move was a rename")
      }
      const f = yield* fixture(caps)
      yield* putBytes(f.at("from"), randomBytes(100_000, 8), { contentType: "text/plain" })
      const before = Option.getOrThrow(yield* head(f.at("from")))
      // A copy made after this pause would carry a later date, even where dates count whole seconds (S3).
      yield* Effect.sleep("1100 millis")
      yield* store.move(f.at("from"), f.at("to"))
      const after = Option.getOrThrow(yield* head(f.at("to")))
      if (declared.etag) expect(after.etag).toEqual(before.etag)
      if (declared.lastModified) expect(after.lastModified).toEqual(before.lastModified)
    }))

  test(["!fileAndPrefix"])("without fileAndPrefix, `a` and `a/b` cannot coexist: the later put fails with Conflict", () =>
    Effect.gen(function*() {
      const f = yield* fixture(caps)
      yield* putBytes(f.at("a/b"), utf8("child"))
      yield* expectReason(putBytes(f.at("a"), utf8("parent")), "Conflict")
      yield* putBytes(f.at("c"), utf8("parent"))
      yield* expectReason(putBytes(f.at("c/d"), utf8("child")), "Conflict")
      expect(yield* listPaths(f.prefix())).toEqual([f.base + "a/b", f.base + "c"])
    }))

  test(["conditionalWrite"])("a create-only put stores where nothing is and refuses (AlreadyExists) to replace an object", () =>
    Effect.gen(function*() {
      const store = yield* MutableObjectStore
      const f = yield* fixture(caps)
      const first = randomBytes(MiB + 1, 31)
      const stat = yield* putBytes(f.at("once"), first, { ifAbsent: true })
      expect(stat.size).toBe(first.length)
      yield* expectReason(putBytes(f.at("once"), randomBytes(MiB + 1, 32), { ifAbsent: true }), "AlreadyExists")
      yield* expectReason(putBytes(f.at("once"), utf8("small"), { ifAbsent: true }), "AlreadyExists")
      yield* expectReason(store.write(f.at("once"), utf8("small"), { ifAbsent: true }), "AlreadyExists")
      expectBytes(yield* read(f.at("once")), first)
      yield* store.write(f.at("written"), utf8("w"), { ifAbsent: true })
      expectBytes(yield* read(f.at("written")), utf8("w"))
      // Without the option a put still replaces.
      yield* putBytes(f.at("once"), utf8("replaced"))
      expectBytes(yield* read(f.at("once")), utf8("replaced"))
      expect(yield* listPaths(f.prefix())).toEqual([f.base + "once", f.base + "written"])
    }))

  test(["conditionalWrite"])("of concurrent create-only puts to one locator exactly one succeeds", () =>
    Effect.gen(function*() {
      const f = yield* fixture(caps)
      const versions = [randomBytes(150_000, 41), randomBytes(150_000, 42), randomBytes(90_000, 43)]
      const outcomes = yield* Effect.forEach(versions, (v) => Effect.either(putBytes(f.at("first"), v, { ifAbsent: true })), {
        concurrency: "unbounded"
      })
      const won = outcomes.flatMap((o, i) => (Either.isRight(o) ? [i] : []))
      expect(won.length).toBe(1)
      for (const o of outcomes) if (Either.isLeft(o)) expect(o.left.reason).toBe("AlreadyExists")
      expectBytes(yield* read(f.at("first")), versions[won[0]!]!)
    }))

  test(["!conditionalWrite"])("without conditionalWrite, a create-only put fails with Unsupported and stores nothing", () =>
    Effect.gen(function*() {
      const store = yield* MutableObjectStore
      const f = yield* fixture(caps)
      yield* expectReason(putBytes(f.at("new"), utf8("x"), { ifAbsent: true }), "Unsupported")
      yield* expectReason(store.write(f.at("new"), utf8("x"), { ifAbsent: true }), "Unsupported")
      expect(yield* listPaths(f.prefix())).toEqual([])
    }))

  test()("a put is invisible until its stream completes", () =>
    Effect.gen(function*() {
      const store = yield* MutableObjectStore
      const f = yield* fixture(caps)
      const started = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const first = randomBytes(100_000, 1)
      const rest = randomBytes(50_000, 2)
      const input = Stream.concat(
        chunked(first),
        Stream.fromEffect(Effect.zipRight(Deferred.succeed(started, undefined), Deferred.await(release))).pipe(
          Stream.drain,
          Stream.concat(chunked(rest))
        )
      )
      const fiber = yield* Effect.fork(Stream.run(input, store.put(f.at("pending"))))
      yield* Deferred.await(started)
      expect(Option.isNone(yield* head(f.at("pending")))).toBe(true)
      expect(yield* listPaths(f.prefix())).toEqual([])
      yield* Deferred.succeed(release, undefined)
      const stat = yield* Fiber.join(fiber)
      expect(stat.size).toBe(150_000)
      const all = new Uint8Array(150_000)
      all.set(first, 0)
      all.set(rest, 100_000)
      expectBytes(yield* read(f.at("pending")), all)
    }))

  test()("an interrupted put leaves nothing visible, and an existing object intact", () =>
    Effect.gen(function*() {
      const store = yield* MutableObjectStore
      const f = yield* fixture(caps)
      const started = yield* Deferred.make<void>()
      const fiber = yield* Effect.fork(Stream.run(stalled(randomBytes(300_000, 1), started), store.put(f.at("new"))))
      yield* Deferred.await(started)
      yield* Fiber.interrupt(fiber)
      expect(Option.isNone(yield* head(f.at("new")))).toBe(true)
      yield* expectReason(read(f.at("new")), "NotFound")
      expect(yield* listPaths(f.prefix())).toEqual([])

      // Interrupting an overwrite keeps the previous content.
      yield* putBytes(f.at("old"), utf8("previous"))
      const again = yield* Deferred.make<void>()
      const overwrite = yield* Effect.fork(Stream.run(stalled(randomBytes(300_000, 2), again), store.put(f.at("old"))))
      yield* Deferred.await(again)
      yield* Fiber.interrupt(overwrite)
      expectBytes(yield* read(f.at("old")), utf8("previous"))
      expect(yield* listPaths(f.prefix())).toEqual([f.base + "old"])
    }))

  test()("a put whose stream fails leaves nothing and surfaces the stream's error", () =>
    Effect.gen(function*() {
      const store = yield* MutableObjectStore
      const f = yield* fixture(caps)
      const failing = Stream.concat(chunked(randomBytes(200_000, 3)), Stream.fail(new Boom()))
      const exit = yield* Effect.exit(Stream.run(failing, store.put(f.at("broken"))))
      expect(Exit.isFailure(exit)).toBe(true)
      if (Exit.isFailure(exit)) {
        expect(Option.map(Cause.failureOption(exit.cause), (e) => e._tag)).toEqual(Option.some("Boom"))
      }
      expect(Option.isNone(yield* head(f.at("broken")))).toBe(true)
      expect(yield* listPaths(f.prefix())).toEqual([])

      yield* putBytes(f.at("kept"), utf8("kept"))
      yield* Effect.exit(Stream.run(failing, store.put(f.at("kept"))))
      expectBytes(yield* read(f.at("kept")), utf8("kept"))
    }))

  test([], caps.declaredSizeCheck)("a put whose declared size disagrees with the stream fails with InvalidInput", () =>
    Effect.gen(function*() {
      const f = yield* fixture(caps)
      yield* expectReason(putBytes(f.at("short"), randomBytes(100, 1), { size: 101 }), "InvalidInput")
      yield* expectReason(putBytes(f.at("long"), randomBytes(100, 1), { size: 99 }), "InvalidInput")
      expect(yield* listPaths(f.prefix())).toEqual([])
      const ok = yield* putBytes(f.at("exact"), randomBytes(100, 1), { size: 100 })
      expect(ok.size).toBe(100)
    }))

  for (const [label, size] of [["0 B", 0], ["1 KiB", 1024], ["1 MiB + 1", MiB + 1]] as const) {
    test()(`write of ${label} in one call reads back byte-exact, with its options, like a put`, () =>
      Effect.gen(function*() {
        const store = yield* MutableObjectStore
        const f = yield* fixture(caps)
        const bytes = randomBytes(size, size + 7)
        const metadata = { origin: "write" }
        const stat = yield* store.write(f.at("w"), bytes, { contentType: "application/x-test", metadata, size })
        expect(stat.size).toBe(size)
        expect(BlobLocator.render(stat.locator)).toBe(BlobLocator.render(f.at("w")))
        expectBytes(yield* read(f.at("w")), bytes)
        const found = Option.getOrThrow(yield* head(f.at("w")))
        expect(found.size).toBe(size)
        const declared = yield* declaredBy(ImmutableObjectStore)
        if (declared.contentType) expect(found.contentType).toEqual(Option.some("application/x-test"))
        if (declared.metadata) expect(found.metadata).toEqual(metadata)
      }))
  }

  test()("write replaces a put object and a put replaces a written one, metadata included", () =>
    Effect.gen(function*() {
      const store = yield* MutableObjectStore
      const f = yield* fixture(caps)
      yield* putBytes(f.at("x"), randomBytes(5000, 1), { metadata: { v: "put" } })
      yield* store.write(f.at("x"), utf8("written"))
      expectBytes(yield* read(f.at("x")), utf8("written"))
      expect(Option.getOrThrow(yield* head(f.at("x"))).metadata).toEqual({})
      yield* putBytes(f.at("x"), utf8("put again"))
      expectBytes(yield* read(f.at("x")), utf8("put again"))
    }))

  test([], caps.declaredSizeCheck)("a write whose declared size disagrees with its bytes fails with InvalidInput and writes nothing", () =>
    Effect.gen(function*() {
      const store = yield* MutableObjectStore
      const f = yield* fixture(caps)
      yield* expectReason(store.write(f.at("short"), randomBytes(100, 1), { size: 101 }), "InvalidInput")
      yield* expectReason(store.write(f.at("long"), randomBytes(100, 1), { size: 99 }), "InvalidInput")
      expect(yield* listPaths(f.prefix())).toEqual([])
    }))

  test()("concurrent puts to one locator leave one whole version, never a mix", () =>
    Effect.gen(function*() {
      const f = yield* fixture(caps)
      const versions = [randomBytes(150_000, 21), randomBytes(150_000, 22), randomBytes(90_000, 23)]
      yield* Effect.forEach(versions, (v) => putBytes(f.at("race"), v), { concurrency: "unbounded", discard: true })
      const got = yield* read(f.at("race"))
      expect(versions.some((v) => sameBytes(v, got))).toBe(true)
      expect(yield* listPaths(f.prefix())).toEqual([f.base + "race"])
    }))

  test()("malformed locators, prefixes and options fail with InvalidInput, never a defect", () =>
    Effect.gen(function*() {
      const store = yield* MutableObjectStore
      const f = yield* fixture(caps)
      yield* putBytes(f.at("fine"), utf8("fine"))
      // `new X(props, true)` skips validation, as untyped callers can: a backend must not trust a locator's shape.
      const bad = [
        new BlobLocator.BlobLocator({ scheme: caps.scheme, bucket: caps.bucket, path: `${f.base}../../escape` }, true),
        new BlobLocator.BlobLocator({ scheme: caps.scheme, bucket: caps.bucket, path: `/${f.base}abs` }, true),
        new BlobLocator.BlobLocator({ scheme: caps.scheme, bucket: caps.bucket, path: `${f.base}a//b` }, true),
        new BlobLocator.BlobLocator({ scheme: caps.scheme, bucket: caps.bucket, path: `${f.base}nul\u0000` }, true),
        new BlobLocator.BlobLocator({ scheme: caps.scheme, bucket: "..", path: "x" }, true),
        new BlobLocator.BlobLocator({ scheme: caps.scheme, bucket: caps.bucket, path: "" }, true)
      ]
      for (const l of bad) {
        yield* expectReason(store.head(l), "InvalidInput")
        yield* expectReason(collect(store.get(l)), "InvalidInput")
        yield* expectReason(Stream.run(chunked(utf8("x")), store.put(l)), "InvalidInput")
        yield* expectReason(store.delete(l), "InvalidInput")
        yield* expectReason(store.copy(f.at("fine"), l), "InvalidInput")
        yield* expectReason(store.move(l, f.at("other")), "InvalidInput")
      }
      const badPrefix = new BlobLocator.LocatorPrefix({ scheme: caps.scheme, bucket: caps.bucket, path: "../" }, true)
      yield* expectReason(Stream.runDrain(store.list(badPrefix)), "InvalidInput")
      yield* expectReason(putBytes(f.at("neg"), utf8("x"), { size: -1 }), "InvalidInput")
      for (const l of bad) yield* expectReason(store.write(l, utf8("x")), "InvalidInput")
      yield* expectReason(store.write(f.at("neg"), utf8("x"), { size: -1 }), "InvalidInput")
      // Nothing was written or moved by any of it.
      expect(yield* listPaths(f.prefix())).toEqual([f.base + "fine"])
      expectBytes(yield* read(f.at("fine")), utf8("fine"))
    }))
}

/** Re-exported for backends that build their own extra tests on the same helpers. */
export const helpers = { expectReason, failure, fixture, putBytes, read, head, listPaths, stalled }

/** The stats of a listing, for backend-specific tests. */
export type { ObjectStat }
