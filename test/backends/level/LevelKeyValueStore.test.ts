/**
 * Behaviour of the LevelDB KeyValueStore beyond the conformance suite:
 * durability across close and reopen, namespaces as sublevels, atomic
 * batches across namespaces under an injected failure, concurrent
 * read-modify-write, listings merged across sublevels, the namespace view,
 * and use after close.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { MetadataError } from "../../../src/core/Errors.js"
import * as KvKey from "../../../src/core/KvKey.js"
import { LevelDatabase } from "../../../src/backends/level/LevelDatabase.js"
import * as LevelKeyValueStore from "../../../src/backends/level/LevelKeyValueStore.js"
import * as LevelLayers from "../../../src/backends/level/LevelLayers.js"
import { del, KeyValueStore, type KvWrite, put } from "../../../src/ports/KeyValueStore.js"
import { utf8 } from "../../../src/testing/bytes.js"

const root = mkdtempSync(join(tmpdir(), "graviton-level-kv-"))
afterAll(() => rmSync(root, { recursive: true, force: true }))
let counter = 0
const freshPath = () => join(root, `db-${counter++}`)

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes)
/** The application's namespaces these tests write besides Graviton's own (always declared). */
const NAMESPACES = ["misc", "other", "elsewhere"]

/** KeyValueStore and LevelDatabase of a fresh (or given) database, for the current scope. */
const open = (path = freshPath(), namespaces = NAMESPACES) =>
  Effect.map(Layer.build(LevelLayers.live({ path, namespaces })), (context) => ({
    kv: context.unsafeMap.get(KeyValueStore.key) as KeyValueStore["Type"],
    database: context.unsafeMap.get(LevelDatabase.key) as LevelDatabase["Type"],
    path
  }))

const valueOf = (kv: KeyValueStore["Type"], key: string) => Effect.map(kv.get(key), Option.map(text))
const keysOf = (kv: KeyValueStore["Type"], prefix: string) =>
  Effect.map(Stream.runCollect(kv.list(prefix)), (c) => Chunk.toReadonlyArray(c).map(([k]) => k))

describe("LevelKeyValueStore", () => {
  it.live("data survives closing and reopening the database", () =>
    Effect.gen(function*() {
      const path = freshPath()
      const written = ["blobs/a", "ranges/u1", "replicas/k", "other/x", "blobs/\u{1F600}"]
      yield* Effect.scoped(Effect.gen(function*() {
        const { kv } = yield* open(path)
        yield* kv.commit([], written.map((k) => put(k, utf8(`v:${k}`))))
        yield* kv.put("blobs/gone", utf8("x"))
        yield* kv.delete("blobs/gone")
        expect(yield* kv.compareAndSet("ranges/u1", Option.some(utf8("v:ranges/u1")), Option.some(utf8("cas")))).toBe(true)
      }))
      yield* Effect.scoped(Effect.gen(function*() {
        const { kv } = yield* open(path)
        for (const k of written) {
          expect(yield* valueOf(kv, k)).toEqual(Option.some(k === "ranges/u1" ? "cas" : `v:${k}`))
        }
        expect(yield* valueOf(kv, "blobs/gone")).toEqual(Option.none())
        expect(yield* keysOf(kv, "")).toEqual([...written].sort(KvKey.compare))
      }))
    }))

  it.live("each namespace is a sublevel; namespaces never see each other's keys", () =>
    Effect.scoped(Effect.gen(function*() {
      const { database, kv } = yield* open()
      yield* kv.put("blobs/k", utf8("blob"))
      yield* kv.put("ranges/k", utf8("range"))
      yield* kv.put("replicas/k", utf8("replica"))
      yield* kv.put("misc/k", utf8("misc"))

      expect(yield* keysOf(kv, "blobs/")).toEqual(["blobs/k"])
      expect(yield* keysOf(kv, "ranges/")).toEqual(["ranges/k"])
      expect(yield* keysOf(kv, "blobs")).toEqual(["blobs/k"])
      expect(yield* keysOf(kv, "r")).toEqual(["ranges/k", "replicas/k"])
      expect(yield* keysOf(kv, "")).toEqual(["blobs/k", "misc/k", "ranges/k", "replicas/k"])

      // The layout is the sublevels' own: classic-level's sublevel API reads the same data.
      const fromSublevel = (ns: string, key: string) =>
        Effect.promise(() => database.sublevel(ns).get(key)).pipe(Effect.map((v) => (v === undefined ? undefined : text(v))))
      expect(yield* fromSublevel("blobs", "k")).toBe("blob")
      expect(yield* fromSublevel("ranges", "k")).toBe("range")
      expect(yield* fromSublevel("replicas", "k")).toBe("replica")
      expect(yield* fromSublevel("misc", "k")).toBe("misc")
      expect(yield* fromSublevel("blobs", "misc/k")).toBeUndefined()
      const blobKeys = yield* Effect.promise(() => database.sublevel("blobs").keys().all())
      expect(blobKeys).toEqual(["k"])

      // Deleting in one namespace leaves the same relative key elsewhere alone.
      yield* kv.delete("blobs/k")
      expect(yield* valueOf(kv, "ranges/k")).toEqual(Option.some("range"))
      expect(yield* valueOf(kv, "blobs/k")).toEqual(Option.none())
    })))

  it.live("a key outside the declared namespaces is refused, naming its namespace, and lands in no sublevel", () =>
    Effect.scoped(Effect.gen(function*() {
      const { database, kv } = yield* open(freshPath(), [])
      const refused = (effect: Effect.Effect<unknown, MetadataError>) =>
        Effect.map(Effect.flip(effect), (error) => [error.reason, error.description])
      const [reason, description] = yield* refused(kv.put("stray/k", utf8("x")))
      expect(reason).toBe("InvalidInput")
      expect(description).toContain(`namespace "stray"`)
      for (const attempt of [
        kv.get("stray/k"),
        kv.delete("stray/k"),
        kv.compareAndSet("stray/k", Option.none(), Option.some(utf8("x"))),
        kv.commit([], [put("blobs/ok", utf8("ok")), put("stray/k", utf8("x"))]),
        Stream.runDrain(kv.list("stray/"))
      ]) {
        expect((yield* refused(attempt))[1]).toContain(`namespace "stray"`)
      }
      // A key with no namespace at all is refused the same way.
      expect((yield* refused(kv.put("plain", utf8("x"))))[1]).toContain("has no namespace")
      // Nothing landed anywhere: not in a shared sublevel, not half a commit.
      expect(yield* Effect.promise(() => database.db.keys().all())).toEqual([])
      // Declared by the application, the namespace gets its own sublevel.
      const declared = yield* open(freshPath(), ["stray"])
      yield* declared.kv.put("stray/k", utf8("x"))
      expect(yield* Effect.promise(() => declared.database.sublevel("stray").keys().all())).toEqual(["k"])
    })))

  it.live("a database holding keys in the legacy shared sublevel is refused, not read with them missing", () =>
    Effect.gen(function*() {
      const path = freshPath()
      yield* Effect.scoped(Effect.gen(function*() {
        const { database } = yield* open(path)
        // What an earlier version wrote for a key outside its namespaces.
        yield* Effect.promise(() => database.sublevel("default").put("blocks/x", utf8("old")))
      }))
      const error = yield* Effect.flip(Effect.scoped(open(path)))
      expect(error.reason).toBe("InvalidInput")
      expect(error.description).toContain(`"blocks/x"`)
    }))

  it.live("a commit spanning namespaces is all-or-nothing when LevelDB rejects the batch", () =>
    Effect.scoped(Effect.gen(function*() {
      const { database, kv } = yield* open()
      yield* kv.commit([], [put("blobs/a", utf8("a0")), put("replicas/b", utf8("b0"))])
      // Injected failure: a prewrite hook that rejects one operation of the batch, after others were queued.
      database.db.hooks.prewrite.add((op: { readonly key: unknown }) => {
        if (op.key === database.sublevel("ranges").prefix + "boom") throw new Error("injected failure")
      })
      const writes: ReadonlyArray<KvWrite> = [
        put("blobs/a", utf8("a1")),
        del("replicas/b"),
        put("elsewhere/c", utf8("c1")),
        put("ranges/boom", utf8("x")),
        put("blobs/z", utf8("z1"))
      ]
      const error = yield* Effect.flip(kv.commit([{ key: "blobs/a", expected: Option.some(utf8("a0")) }], writes))
      expect(error._tag).toBe("MetadataError")
      expect(error.method).toBe("commit")
      expect(error.reason).toBe("Unknown")
      // Nothing of the batch landed, in any namespace.
      expect(yield* valueOf(kv, "blobs/a")).toEqual(Option.some("a0"))
      expect(yield* valueOf(kv, "replicas/b")).toEqual(Option.some("b0"))
      expect(yield* valueOf(kv, "elsewhere/c")).toEqual(Option.none())
      expect(yield* valueOf(kv, "ranges/boom")).toEqual(Option.none())
      expect(yield* valueOf(kv, "blobs/z")).toEqual(Option.none())
      // The keys were released: the same commit without the poisoned write goes through.
      expect(database.internals.gate.locks.size).toBe(0)
      expect(database.internals.gate.activeModifications).toBe(0)
      expect(database.internals.gate.unlockedWrites).toBe(0)
      expect(
        yield* kv.commit([{ key: "blobs/a", expected: Option.some(utf8("a0")) }], writes.filter((w) => w.key !== "ranges/boom"))
      ).toBe(true)
      expect(yield* keysOf(kv, "")).toEqual(["blobs/a", "blobs/z", "elsewhere/c"])
    })))

  it.live("50 compareAndSet incrementers and 50 two-namespace commit incrementers all land", () =>
    Effect.scoped(Effect.gen(function*() {
      const { database, kv } = yield* open()
      const asNumber = (v: Option.Option<Uint8Array>) => Option.match(v, { onNone: () => 0, onSome: (b) => Number(text(b)) })

      const casIncrement: Effect.Effect<void, MetadataError> = Effect.gen(function*() {
        const current = yield* kv.get("blobs/counter")
        const ok = yield* kv.compareAndSet("blobs/counter", current, Option.some(utf8(String(asNumber(current) + 1))))
        if (!ok) return yield* casIncrement
      })
      // Both counters move together or not at all; the checks guard against lost updates.
      const pairIncrement: Effect.Effect<void, MetadataError> = Effect.gen(function*() {
        const a = yield* kv.get("ranges/pair")
        const b = yield* kv.get("replicas/pair")
        const ok = yield* kv.commit(
          [{ key: "ranges/pair", expected: a }, { key: "replicas/pair", expected: b }],
          [put("ranges/pair", utf8(String(asNumber(a) + 1))), put("replicas/pair", utf8(String(asNumber(b) + 1)))]
        )
        if (!ok) return yield* pairIncrement
      })
      yield* Effect.all(
        [...Array.from({ length: 50 }, () => casIncrement), ...Array.from({ length: 50 }, () => pairIncrement)],
        { concurrency: "unbounded", discard: true }
      )
      expect(yield* valueOf(kv, "blobs/counter")).toEqual(Option.some("50"))
      expect(yield* valueOf(kv, "ranges/pair")).toEqual(Option.some("50"))
      expect(yield* valueOf(kv, "replicas/pair")).toEqual(Option.some("50"))
      expect(database.internals.gate.locks.size).toBe(0)
      expect(database.internals.gate.activeModifications).toBe(0)
      expect(database.internals.gate.unlockedWrites).toBe(0)
    })))

  it.live("listings merge sublevels in UTF-8 byte order, page after page, like a sorted model", () =>
    Effect.scoped(Effect.gen(function*() {
      const { kv } = yield* open(freshPath(), ["b", "zz", "misc"])
      const model = new Map<string, string>()
      const heads = ["blobs/", "blocks/", "b/", "ranges/", "replicas/", "zz/", "misc/"]
      let x = 7
      const next = (bound: number) => {
        x = (Math.imul(x, 1103515245) + 12345) >>> 0
        return x % bound
      }
      const tails = ["", "a", "é", "\u{1F600}", "\uFFFD", "~", "0", "/x"]
      for (let i = 0; i < 3000; i++) {
        const key = `${heads[next(heads.length)]}${tails[next(tails.length)]}${next(1500).toString(36)}`
        model.set(key, String(i))
      }
      const entries = Array.from(model)
      for (let i = 0; i < entries.length; i += 500) {
        yield* kv.commit([], entries.slice(i, i + 500).map(([k, v]) => put(k, utf8(v))))
      }
      const sorted = [...model.keys()].sort(KvKey.compare)
      for (const prefix of ["", "b", "bl", "blob", "blobs", "blobs/", "blobs/a", "r", "ranges/", "re", "z", "\u{1F600}", "\uFFFD", "q"]) {
        const listed = Chunk.toReadonlyArray(yield* Stream.runCollect(kv.list(prefix)))
        expect(listed.map(([k]) => k), `prefix ${JSON.stringify(prefix)}`).toEqual(sorted.filter((k) => k.startsWith(prefix)))
        for (const [k, v] of listed) expect(text(v)).toBe(model.get(k))
      }
      // Stopping early needs only the first pages of each sublevel.
      const firstFive = Chunk.toReadonlyArray(yield* Stream.runCollect(Stream.take(kv.list(""), 5))).map(([k]) => k)
      expect(firstFive).toEqual(sorted.slice(0, 5))
    })), 60_000)

  it.live("values are plain Uint8Arrays the caller owns; concurrent gets each see their own value", () =>
    Effect.scoped(Effect.gen(function*() {
      const { kv } = yield* open()
      const keys = Array.from({ length: 300 }, (_, i) => `blobs/${i}`)
      yield* kv.commit([], keys.filter((_, i) => i % 3 !== 0).map((k) => put(k, utf8(`v${k}`))))
      const values = yield* Effect.forEach(keys, (k) => kv.get(k), { concurrency: 64 })
      values.forEach((v, i) => {
        if (i % 3 === 0) expect(Option.isNone(v)).toBe(true)
        else {
          const bytes = Option.getOrThrow(v)
          expect(Object.getPrototypeOf(bytes)).toBe(Uint8Array.prototype)
          expect(text(bytes)).toBe(`v${keys[i]}`)
        }
      })
      const [first] = Chunk.toReadonlyArray(yield* Stream.runCollect(kv.list("blobs/1")))
      expect(Object.getPrototypeOf(first![1])).toBe(Uint8Array.prototype)
    })))

  it.live("a store confined to one namespace reads and writes relative keys", () =>
    Effect.scoped(Effect.gen(function*() {
      const { database, kv } = yield* open()
      const blobs = LevelKeyValueStore.confine(kv, "blobs")
      yield* blobs.put("a", utf8("1"))
      yield* blobs.commit([{ key: "a", expected: Option.some(utf8("1")) }], [put("b", utf8("2")), put("a", utf8("3"))])
      expect(yield* blobs.compareAndSet("c", Option.none(), Option.some(utf8("4")))).toBe(true)
      yield* kv.put("ranges/a", utf8("elsewhere"))
      expect(yield* valueOf(kv, "blobs/a")).toEqual(Option.some("3"))
      expect(yield* keysOf(blobs, "")).toEqual(["a", "b", "c"])
      yield* blobs.delete("b")
      expect(yield* keysOf(kv, "blobs/")).toEqual(["blobs/a", "blobs/c"])
      const invalid = yield* Effect.flip(blobs.get("bad\u0000key"))
      expect(invalid.reason).toBe("InvalidInput")

      const viaLayer = yield* Effect.provideService(
        Layer.build(LevelKeyValueStore.layerNamespace("blobs")),
        LevelDatabase,
        database
      )
      const scoped = viaLayer.unsafeMap.get(KeyValueStore.key) as KeyValueStore["Type"]
      expect(yield* valueOf(scoped, "c")).toEqual(Option.some("4"))
      const unknown = yield* Effect.flip(
        Effect.provideService(Layer.build(LevelKeyValueStore.layerNamespace("nope")), LevelDatabase, database)
      )
      expect(unknown.reason).toBe("InvalidInput")
    })))

  it.live("after the database is closed, every method fails with MetadataError Unavailable", () =>
    Effect.gen(function*() {
      const { kv, path } = yield* Effect.scoped(open())
      const failures = [
        yield* Effect.flip(kv.get("blobs/a")),
        yield* Effect.flip(kv.put("blobs/a", utf8("x"))),
        yield* Effect.flip(kv.delete("blobs/a")),
        yield* Effect.flip(kv.compareAndSet("blobs/a", Option.none(), Option.some(utf8("x")))),
        yield* Effect.flip(kv.commit([], [put("blobs/a", utf8("x"))])),
        yield* Effect.flip(Stream.runDrain(kv.list("")))
      ]
      for (const error of failures) {
        expect(error._tag).toBe("MetadataError")
        expect(error.reason).toBe("Unavailable")
        expect(error.description).toContain(`database at ${path} is not open`)
      }
    }))

  it.live("with sync writes on, data is written and read back the same", () =>
    Effect.scoped(Effect.gen(function*() {
      const kv = Context.get(yield* Layer.build(LevelLayers.live({ path: freshPath(), sync: true })), KeyValueStore)
      yield* kv.put("blobs/s", utf8("synced"))
      yield* kv.commit([], [put("ranges/t", utf8("batched")), del("blobs/s")])
      expect(yield* valueOf(kv, "ranges/t")).toEqual(Option.some("batched"))
      expect(yield* valueOf(kv, "blobs/s")).toEqual(Option.none())
    })))
})
