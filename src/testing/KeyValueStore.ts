/**
 * Conformance suite for the KeyValueStore port. Every backend that provides
 * KeyValueStore runs it from its own test file:
 *
 * ```ts
 * import { NAMESPACES, testKeyValueStore } from "graviton/testing"
 * testKeyValueStore("level", LevelLayers.metadata({ path, namespaces: NAMESPACES }))
 * testKeyValueStore("pg", layer, { skipAll: serverMissing ? "no PostgreSQL server" : undefined })
 * ```
 *
 * The layer is built once for the whole suite (and shared by its tests), so
 * every test works under its own random key prefix and never assumes the
 * store is empty. Tests run with the live clock (real backends time out and
 * back off in real time). `skipAll` registers every test as skipped, with
 * the reason in its title, without building the layer.
 *
 * Covers: put/get/overwrite/idempotent delete; byte-exact values (empty,
 * every byte value, 1 MiB) that callers cannot mutate once stored; `list` in
 * UTF-8 byte order over 2,500+ keys (several pages) with no leaks from
 * sibling prefixes; keys with quotes, `%`, `_`, backslashes and non-ASCII
 * behaving like plain ones (no LIKE/glob leaks); compareAndSet semantics and
 * 50 concurrent CAS incrementers; all-or-nothing `commit` across
 * namespaces; malformed keys failing with MetadataError InvalidInput on
 * every method, never a defect.
 */
import { describe, expect, it as baseIt, layer as sharedLayer, type Vitest } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import type { MetadataError } from "../core/Errors.js"
import * as KvKey from "../core/KvKey.js"
import { del, KeyValueStore, put } from "../ports/KeyValueStore.js"
import { MiB, randomBytes, sameBytes, utf8 } from "./bytes.js"
import { type Capabilities, gate } from "./capabilities.js"

/** Optional features of a KeyValueStore backend (none yet beyond `skipAll`). */
export interface KeyValueStoreCapabilities extends Capabilities {}

/** The namespaces the suite writes in (a backend that declares namespaces must declare these). */
export const NAMESPACES: ReadonlyArray<string> = ["conformance", "conformance-other", "conformance-third"]

/** A fresh random key prefix `<namespace>/<random>/`, so tests sharing one store never collide. */
export const uniquePrefix = (namespace = "conformance"): string =>
  `${namespace}/${Math.random().toString(36).slice(2, 10)}${Date.now().toString(36)}/`

const text = (bytes: Uint8Array): string => new TextDecoder().decode(bytes)

/** Fails the test unless `effect` fails with MetadataError InvalidInput (a defect fails the test too). */
export const expectInvalid = <A, R>(effect: Effect.Effect<A, MetadataError, R>, what: string) =>
  Effect.gen(function*() {
    const error = yield* Effect.flip(effect)
    expect(error._tag, what).toBe("MetadataError")
    expect(error.reason, what).toBe("InvalidInput")
  })

/** Registers the KeyValueStore conformance suite for one backend. */
export const testKeyValueStore = <E>(
  name: string,
  layer: Layer.Layer<KeyValueStore, E>,
  capabilities: KeyValueStoreCapabilities = {}
): void => {
  const title = `KeyValueStore[${name}]`
  if (capabilities.skipAll !== undefined) {
    // Registered as skipped (never run), so the layer is never built.
    describe(title, () => suite(baseIt as unknown as Vitest.MethodsNonLive<KeyValueStore, true>, capabilities))
  } else {
    sharedLayer(layer, { excludeTestServices: true })(title, (it) => suite(it, capabilities))
  }
}

const suite = (it: Vitest.MethodsNonLive<KeyValueStore, true>, capabilities: KeyValueStoreCapabilities): void => {
  const test = gate(it.effect, capabilities.skipAll)

  test("get of a missing key is None; put, overwrite, delete and repeated delete", () =>
    Effect.gen(function*() {
      const kv = yield* KeyValueStore
      const key = `${uniquePrefix()}k`
      expect(Option.isNone(yield* kv.get(key))).toBe(true)
      yield* kv.put(key, utf8("one"))
      expect(Option.map(yield* kv.get(key), text)).toEqual(Option.some("one"))
      yield* kv.put(key, utf8("two, longer"))
      expect(Option.map(yield* kv.get(key), text)).toEqual(Option.some("two, longer"))
      yield* kv.put(key, utf8("3"))
      expect(Option.map(yield* kv.get(key), text)).toEqual(Option.some("3"))
      yield* kv.delete(key)
      expect(Option.isNone(yield* kv.get(key))).toBe(true)
      yield* kv.delete(key)
      yield* kv.delete(`${key}-never-written`)
      expect(Option.isNone(yield* kv.get(key))).toBe(true)
    }))

  test("values are byte-exact: empty, every byte value, 1 MiB", () =>
    Effect.gen(function*() {
      const kv = yield* KeyValueStore
      const p = uniquePrefix()
      const everyByte = Uint8Array.from({ length: 512 }, (_, i) => i % 256)
      const big = randomBytes(MiB, 42)
      yield* kv.put(`${p}empty`, new Uint8Array(0))
      yield* kv.put(`${p}bytes`, everyByte)
      yield* kv.put(`${p}big`, big)
      const empty = yield* kv.get(`${p}empty`)
      // An empty value is present, not absent.
      expect(Option.isSome(empty)).toBe(true)
      expect(Option.getOrThrow(empty).length).toBe(0)
      expect(sameBytes(Option.getOrThrow(yield* kv.get(`${p}bytes`)), everyByte)).toBe(true)
      expect(sameBytes(Option.getOrThrow(yield* kv.get(`${p}big`)), big)).toBe(true)
      const listed = Chunk.toReadonlyArray(yield* Stream.runCollect(kv.list(p)))
      expect(listed.map(([k]) => k)).toEqual([`${p}big`, `${p}bytes`, `${p}empty`])
      expect(sameBytes(listed[0]![1], big)).toBe(true)
      expect(listed[2]![1].length).toBe(0)
    }))

  test("stored values cannot be changed through the caller's arrays", () =>
    Effect.gen(function*() {
      const kv = yield* KeyValueStore
      const key = `${uniquePrefix()}k`
      const value = utf8("original")
      yield* kv.put(key, value)
      value[0] = 0x58
      const read = Option.getOrThrow(yield* kv.get(key))
      expect(text(read)).toBe("original")
      read[0] = 0x59
      expect(Option.map(yield* kv.get(key), text)).toEqual(Option.some("original"))
      const listed = yield* Stream.runCollect(kv.list(key))
      Chunk.unsafeGet(listed, 0)[1][0] = 0x5a
      expect(Option.map(yield* kv.get(key), text)).toEqual(Option.some("original"))
      const next = utf8("via cas")
      expect(yield* kv.compareAndSet(key, Option.some(utf8("original")), Option.some(next))).toBe(true)
      next[0] = 0x5a
      expect(Option.map(yield* kv.get(key), text)).toEqual(Option.some("via cas"))
      const committed = utf8("via commit")
      expect(yield* kv.commit([], [put(key, committed)])).toBe(true)
      committed[0] = 0x5a
      expect(Option.map(yield* kv.get(key), text)).toEqual(Option.some("via commit"))
    }))

  test("list streams a prefix in UTF-8 byte order across many pages, without sibling keys", () =>
    Effect.gen(function*() {
      const kv = yield* KeyValueStore
      const p = uniquePrefix()
      const dir = `${p}d/`
      // Plain keys in shuffled order, plus keys whose UTF-16 and UTF-8 orders differ
      // (U+FFFD sorts after U+1F600 in UTF-16 code units, before it in UTF-8).
      const inside = Array.from({ length: 2500 }, (_, i) => `${dir}${((i * 7919) % 2500).toString().padStart(5, "0")}`)
      inside.push(`${dir}`, `${dir}\uFFFD`, `${dir}\u{1F600}`, `${dir}é`, `${dir}Z`, `${dir}~`, `${dir}a/b/c`)
      const siblings = [`${p}d`, `${p}d0`, `${p}d.`, `${p}c/x`, `${p}e/x`, `${p}D/x`, `${p}d\u00e9/x`]
      yield* Effect.forEach([...inside, ...siblings], (k) => kv.put(k, utf8(k)), { concurrency: 16, discard: true })

      const listed = Chunk.toReadonlyArray(yield* Stream.runCollect(kv.list(dir)))
      const expected = [...inside].sort(KvKey.compare)
      expect(listed.length).toBe(expected.length)
      expect(listed.map(([k]) => k)).toEqual(expected)
      for (const [k, v] of listed) expect(text(v)).toBe(k)

      // The whole test prefix: every key, still in byte order.
      const all = Chunk.toReadonlyArray(yield* Stream.runCollect(kv.list(p))).map(([k]) => k)
      expect(all).toEqual([...inside, ...siblings].sort(KvKey.compare))
      // Taking a few entries does not require reading the rest.
      const firstThree = Chunk.toReadonlyArray(yield* Stream.runCollect(Stream.take(kv.list(dir), 3))).map(([k]) => k)
      expect(firstThree).toEqual(expected.slice(0, 3))
      expect(Chunk.size(yield* Stream.runCollect(kv.list(`${p}nothing/`)))).toBe(0)
    }), 120_000)

  test("list with the empty prefix streams every key in UTF-8 byte order", () =>
    Effect.gen(function*() {
      const kv = yield* KeyValueStore
      const p = uniquePrefix()
      const mine = [`${p}a`, `${p}\u{1F600}`, `${p}\uFFFD`, `${p}b`]
      yield* Effect.forEach(mine, (k) => kv.put(k, utf8("x")), { discard: true })
      // Other tests share the store: check the order of everything and that ours are there.
      const all = Chunk.toReadonlyArray(yield* Stream.runCollect(kv.list(""))).map(([k]) => k)
      expect(all).toEqual([...all].sort(KvKey.compare))
      expect(all.filter((k) => k.startsWith(p))).toEqual([...mine].sort(KvKey.compare))
    }), 120_000)

  test("quotes, %, _, *, backslashes and non-ASCII keys behave like plain keys", () =>
    Effect.gen(function*() {
      const kv = yield* KeyValueStore
      const p = uniquePrefix()
      const names = [
        "it's",
        "say \"hi\"",
        "100%",
        "1000",
        "a_b",
        "aXb",
        "a%b",
        "back\\slash",
        "back\\\\double",
        "backXslash",
        "star*",
        "starry",
        "[x]",
        "x",
        "ünïcödé/日本語/😀",
        "trailing space ",
        "semi;colon--",
        "$1 {x} (y) ?",
        "%_\\'\""
      ]
      const keys = names.map((n) => p + n)
      yield* Effect.forEach(keys, (k, i) => kv.put(k, utf8(`v${i}`)), { discard: true })
      for (let i = 0; i < keys.length; i++) {
        expect(Option.map(yield* kv.get(keys[i]!), text), keys[i]).toEqual(Option.some(`v${i}`))
      }
      const listPrefix = (prefix: string) =>
        Effect.map(Stream.runCollect(kv.list(p + prefix)), (c) => Chunk.toReadonlyArray(c).map(([k]) => k.slice(p.length)))
      expect(yield* listPrefix("")).toEqual([...names].sort(KvKey.compare))
      // Pattern characters are literal: none of these may match more than the literal prefix.
      expect(yield* listPrefix("a_")).toEqual(["a_b"])
      expect(yield* listPrefix("100%")).toEqual(["100%"])
      expect(yield* listPrefix("a%")).toEqual(["a%b"])
      expect(yield* listPrefix("back\\")).toEqual(["back\\\\double", "back\\slash"])
      expect(yield* listPrefix("star*")).toEqual(["star*"])
      expect(yield* listPrefix("[")).toEqual(["[x]"])
      expect(yield* listPrefix("%_\\")).toEqual(["%_\\'\""])
      expect(yield* listPrefix("ünï")).toEqual(["ünïcödé/日本語/😀"])
      yield* kv.delete(`${p}a_b`)
      expect(Option.isSome(yield* kv.get(`${p}aXb`))).toBe(true)
      expect(yield* listPrefix("a")).toEqual(["a%b", "aXb"])
    }))

  test("compareAndSet: absent to value, value to value, value to absent; a wrong expectation changes nothing", () =>
    Effect.gen(function*() {
      const kv = yield* KeyValueStore
      const key = `${uniquePrefix()}cas`
      const current = Effect.map(kv.get(key), Option.map(text))
      // Expecting a value on an absent key fails.
      expect(yield* kv.compareAndSet(key, Option.some(utf8("x")), Option.some(utf8("y")))).toBe(false)
      expect(yield* current).toEqual(Option.none())
      expect(yield* kv.compareAndSet(key, Option.none(), Option.some(utf8("a")))).toBe(true)
      expect(yield* current).toEqual(Option.some("a"))
      // Expecting absence on a present key fails.
      expect(yield* kv.compareAndSet(key, Option.none(), Option.some(utf8("b")))).toBe(false)
      expect(yield* current).toEqual(Option.some("a"))
      // Wrong bytes, a prefix of the right bytes, and the empty value are all wrong expectations.
      expect(yield* kv.compareAndSet(key, Option.some(utf8("b")), Option.some(utf8("c")))).toBe(false)
      expect(yield* kv.compareAndSet(key, Option.some(utf8("aa")), Option.some(utf8("c")))).toBe(false)
      expect(yield* kv.compareAndSet(key, Option.some(new Uint8Array(0)), Option.some(utf8("c")))).toBe(false)
      expect(yield* kv.compareAndSet(key, Option.some(utf8("a")), Option.none())).toBe(true)
      expect(yield* current).toEqual(Option.none())
      expect(yield* kv.compareAndSet(key, Option.none(), Option.some(utf8("a")))).toBe(true)
      expect(yield* kv.compareAndSet(key, Option.some(utf8("a")), Option.some(utf8("b")))).toBe(true)
      expect(yield* current).toEqual(Option.some("b"))
      expect(yield* kv.compareAndSet(key, Option.some(utf8("a")), Option.none())).toBe(false)
      expect(yield* current).toEqual(Option.some("b"))
      expect(yield* kv.compareAndSet(key, Option.some(utf8("b")), Option.none())).toBe(true)
      expect(yield* current).toEqual(Option.none())
      // Absent to absent holds trivially and leaves the key absent.
      expect(yield* kv.compareAndSet(key, Option.none(), Option.none())).toBe(true)
      expect(yield* current).toEqual(Option.none())
      // The empty value is a value: it matches only an empty expectation.
      expect(yield* kv.compareAndSet(key, Option.none(), Option.some(new Uint8Array(0)))).toBe(true)
      expect(yield* kv.compareAndSet(key, Option.none(), Option.some(utf8("z")))).toBe(false)
      expect(yield* kv.compareAndSet(key, Option.some(new Uint8Array(0)), Option.some(utf8("z")))).toBe(true)
      expect(yield* current).toEqual(Option.some("z"))
    }))

  test("50 fibers incrementing one counter with compareAndSet loops end at exactly 50", () =>
    Effect.gen(function*() {
      const kv = yield* KeyValueStore
      const key = `${uniquePrefix()}counter`
      const increment: Effect.Effect<void, MetadataError> = Effect.gen(function*() {
        const current = yield* kv.get(key)
        const n = Option.match(current, { onNone: () => 0, onSome: (b) => Number(text(b)) })
        const ok = yield* kv.compareAndSet(key, current, Option.some(utf8(String(n + 1))))
        if (!ok) {
          yield* Effect.yieldNow()
          return yield* increment
        }
      })
      yield* Effect.all(Array.from({ length: 50 }, () => increment), { concurrency: "unbounded", discard: true })
      expect(Option.map(yield* kv.get(key), text)).toEqual(Option.some("50"))
    }), 120_000)

  test("commit applies every write across namespaces, or none when a check fails", () =>
    Effect.gen(function*() {
      const kv = yield* KeyValueStore
      const a = `${uniquePrefix("conformance")}a`
      const b = `${uniquePrefix("conformance-other")}b`
      const c = `${uniquePrefix("conformance-third")}c`
      const value = (k: string) => Effect.map(kv.get(k), Option.map(text))

      // No checks: a plain batch.
      expect(yield* kv.commit([], [put(a, utf8("a1")), put(b, utf8("b1")), put(c, utf8("c1"))])).toBe(true)
      expect([yield* value(a), yield* value(b), yield* value(c)]).toEqual([
        Option.some("a1"),
        Option.some("b1"),
        Option.some("c1")
      ])

      // Checks that hold: puts and deletes in several namespaces land together.
      expect(
        yield* kv.commit(
          [{ key: a, expected: Option.some(utf8("a1")) }, { key: `${c}-absent`, expected: Option.none() }],
          [put(a, utf8("a2")), del(b), put(`${c}-new`, utf8("n"))]
        )
      ).toBe(true)
      expect([yield* value(a), yield* value(b), yield* value(`${c}-new`)]).toEqual([
        Option.some("a2"),
        Option.none(),
        Option.some("n")
      ])

      // One failing check among holding ones: nothing is written, nothing deleted.
      for (
        const failing of [
          { key: b, expected: Option.some(utf8("b1")) }, // b is gone
          { key: a, expected: Option.none() }, // a exists
          { key: c, expected: Option.some(utf8("c2")) } // wrong bytes
        ]
      ) {
        expect(
          yield* kv.commit(
            [{ key: a, expected: Option.some(utf8("a2")) }, failing],
            [put(a, utf8("a3")), put(b, utf8("b3")), del(c), put(`${c}-other`, utf8("o"))]
          )
        ).toBe(false)
        expect([yield* value(a), yield* value(b), yield* value(c), yield* value(`${c}-other`)]).toEqual([
          Option.some("a2"),
          Option.none(),
          Option.some("c1"),
          Option.none()
        ])
      }

      // Writes to the same key apply in order: the last one wins.
      expect(yield* kv.commit([], [put(a, utf8("x")), del(a), put(a, utf8("last"))])).toBe(true)
      expect(yield* value(a)).toEqual(Option.some("last"))
      // An empty commit succeeds and changes nothing.
      expect(yield* kv.commit([], [])).toBe(true)
      expect(yield* value(a)).toEqual(Option.some("last"))
    }))

  test("malformed keys fail with MetadataError InvalidInput on every method, and change nothing", () =>
    Effect.gen(function*() {
      const kv = yield* KeyValueStore
      const p = uniquePrefix()
      const bad: ReadonlyArray<readonly [string, string]> = [
        ["empty", ""],
        ["NUL", `${p}a\u0000b`],
        ["control character", `${p}line\nbreak`],
        ["longer than 1024 bytes", `${p}${"x".repeat(1025)}`],
        ["1025 bytes of multi-byte characters", "é".repeat(512) + "x"],
        ["lone high surrogate", `${p}\uD83D`],
        ["lone low surrogate", `${p}\uDE00x`]
      ]
      const good = `${p}good`
      for (const [what, key] of bad) {
        yield* expectInvalid(kv.get(key), `get: ${what}`)
        yield* expectInvalid(kv.put(key, utf8("v")), `put: ${what}`)
        yield* expectInvalid(kv.delete(key), `delete: ${what}`)
        yield* expectInvalid(kv.compareAndSet(key, Option.none(), Option.some(utf8("v"))), `compareAndSet: ${what}`)
        yield* expectInvalid(kv.commit([], [put(good, utf8("v")), put(key, utf8("v"))]), `commit write: ${what}`)
        yield* expectInvalid(kv.commit([], [del(key)]), `commit delete: ${what}`)
        yield* expectInvalid(kv.commit([{ key, expected: Option.none() }], [put(good, utf8("v"))]), `commit check: ${what}`)
        if (key !== "") yield* expectInvalid(Stream.runDrain(kv.list(key)), `list: ${what}`)
      }
      // The valid write bundled with an invalid one was not applied.
      expect(Option.isNone(yield* kv.get(good))).toBe(true)

      // The limits themselves are fine: exactly 1024 bytes, in ASCII and in multi-byte characters.
      const ascii = p + "x".repeat(1024 - p.length)
      const multi = "conformance/" + "é".repeat(506)
      expect(Buffer.byteLength(ascii)).toBe(1024)
      expect(Buffer.byteLength(multi)).toBe(1024)
      yield* kv.put(ascii, utf8("ok"))
      yield* kv.put(multi, utf8("ok"))
      expect(Option.map(yield* kv.get(ascii), text)).toEqual(Option.some("ok"))
      expect(Option.map(yield* kv.get(multi), text)).toEqual(Option.some("ok"))
      yield* kv.delete(multi)
    }))
}
