/**
 * The LevelDB backend's building blocks on their own: key layout and
 * ordering, the fast key check, the keyed lock, and read coalescing.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as FastCheck from "effect/FastCheck"
import * as Fiber from "effect/Fiber"
import * as KvKey from "../../../src/core/KvKey.js"
import { KeyedLock, WriteGate } from "../../../src/backends/level/internal/keyedLock.js"
import { compareKeys, Layout, upperBound } from "../../../src/backends/level/internal/layout.js"
import { CoalescingReader, type PointReads } from "../../../src/backends/level/internal/reads.js"
import { isValidKey } from "../../../src/backends/level/internal/validKey.js"

/** Characters where UTF-16 and UTF-8 orders disagree, plus ASCII, separators and the extremes. */
const tricky = FastCheck.constantFrom("a", "b", "/", "~", "é", "\u{7ff}", "\u{800}", "\uD7FF", "\uE000", "\uFFFD", "\uFFFF", "\u{10000}", "\u{1F600}", "\u{10FFFF}")
const keyArb = FastCheck.array(tricky, { maxLength: 6 }).map((cs) => cs.join(""))
const sign = (n: number) => (n < 0 ? -1 : n > 0 ? 1 : 0)

describe("layout", () => {
  it.prop("compareKeys orders like the UTF-8 bytes", [keyArb, keyArb], ([a, b]) => {
    expect(sign(compareKeys(a, b))).toBe(sign(KvKey.compare(a, b)))
  })

  it.prop(
    "upperBound(p) bounds exactly the strings starting with p",
    [keyArb.filter((p) => p.length > 0), keyArb],
    ([p, s]) => {
      const bound = upperBound(p)
      const inRange = KvKey.compare(s, p) >= 0 && (bound === undefined || KvKey.compare(s, bound) < 0)
      expect(inRange).toBe(s.startsWith(p))
    }
  )

  it("upperBound skips surrogates and carries over U+10FFFF", () => {
    expect(upperBound("a\uD7FF")).toBe("a\uE000")
    expect(upperBound("ab")).toBe("ac")
    expect(upperBound("a\u{10FFFF}")).toBe("b")
    expect(upperBound("\u{10FFFF}")).toBeUndefined()
    expect(upperBound("")).toBeUndefined()
  })

  const layout = new Layout(["blobs", "ranges"], (ns) => `!${ns}!`)

  it("routes a key to its namespace's sublevel; a key outside every namespace has none", () => {
    expect(layout.physical("blobs/a/b")).toBe("!blobs!a/b")
    expect(layout.physical("blobs/")).toBe("!blobs!")
    expect(layout.namespaceOf("ranges/x")).toBe("ranges")
    expect(layout.namespaceOf("other/x")).toBeUndefined()
    expect(layout.namespaceOf("blobs")).toBeUndefined()
    expect(layout.namespaceOf("blobsx/a")).toBeUndefined()
    expect(layout.namespaceOf("/blobs/a")).toBeUndefined()
  })

  it("a prefix inside a namespace scans one sublevel; a shorter one every sublevel it may reach", () => {
    expect(layout.sources("blobs/ab")?.map((s) => [s.namespace, s.gte, s.lt])).toEqual([["blobs", "!blobs!ab", "!blobs!ac"]])
    expect(layout.sources("bl")?.map((s) => s.namespace)).toEqual(["blobs"])
    expect(layout.sources("blobs")?.map((s) => [s.namespace, s.gte])).toEqual([["blobs", "!blobs!"]])
    expect(layout.sources("")?.map((s) => s.namespace)).toEqual(["blobs", "ranges"])
    expect(layout.sources("x")).toEqual([])
    // A prefix inside an undeclared namespace has no sublevel at all.
    expect(layout.sources("x/")).toBeUndefined()
  })
})

describe("isValidKey", () => {
  const unit = FastCheck.oneof(
    tricky,
    FastCheck.constantFrom("\u0000", "\n", "\u001f", " ", "\uD83D", "\uDE00", "x")
  )
  const anyKey = FastCheck.oneof(
    FastCheck.array(unit, { maxLength: 8 }).map((cs) => cs.join("")),
    FastCheck.string({ maxLength: 8 }),
    FastCheck.integer({ min: 1020, max: 1030 }).map((n) => "x".repeat(n)),
    FastCheck.integer({ min: 338, max: 344 }).map((n) => "€".repeat(n)),
    FastCheck.integer({ min: 254, max: 258 }).map((n) => "\u{1F600}".repeat(n))
  )
  it.prop("accepts exactly what KvKey.validate accepts", [anyKey, FastCheck.boolean()], ([key, allowEmpty]) => {
    expect(isValidKey(key, allowEmpty)).toBe(Either.isRight(KvKey.validate(key, allowEmpty)))
  })
  it("rejects non-strings", () => {
    expect(isValidKey(undefined, true)).toBe(false)
    expect(isValidKey(42, true)).toBe(false)
  })
})

describe("KeyedLock", () => {
  const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

  it.live("writers of one key never overlap; different keys run side by side", () =>
    Effect.gen(function*() {
      const lock = new KeyedLock()
      let inside = 0
      let maxInside = 0
      const log: Array<string> = []
      const task = (name: string) => async () => {
        inside++
        maxInside = Math.max(maxInside, inside)
        log.push(`${name}+`)
        await sleep(2)
        log.push(`${name}-`)
        inside--
        return name
      }
      const results = yield* Effect.all(
        Array.from({ length: 20 }, (_, i) => lock.run(["k"], task(`t${i}`), String)),
        { concurrency: "unbounded" }
      )
      expect(results).toHaveLength(20)
      expect(maxInside).toBe(1)
      // Strictly alternating enter/leave, in arrival order (first come, first served).
      expect(log).toEqual(Array.from({ length: 20 }, (_, i) => [`t${i}+`, `t${i}-`]).flat())
      expect(lock.size).toBe(0)

      let together = 0
      let maxTogether = 0
      const parallel = (key: string) =>
        lock.run([key], async () => {
          together++
          maxTogether = Math.max(maxTogether, together)
          await sleep(5)
          together--
        }, String)
      yield* Effect.all([parallel("a"), parallel("b"), parallel("c")], { concurrency: "unbounded" })
      expect(maxTogether).toBe(3)
    }))

  it.live("multi-key holders in opposite orders neither deadlock nor overlap on shared keys", () =>
    Effect.gen(function*() {
      const lock = new KeyedLock()
      const holders = new Map<string, number>()
      let violations = 0
      const task = (keys: ReadonlyArray<string>) => async () => {
        for (const k of keys) if ((holders.get(k) ?? 0) > 0) violations++
        for (const k of keys) holders.set(k, (holders.get(k) ?? 0) + 1)
        await sleep(1)
        for (const k of keys) holders.set(k, holders.get(k)! - 1)
      }
      const sets = [["a", "b", "c"], ["c", "b", "a"], ["b", "a"], ["c", "a", "a"], ["a"], ["c"]]
      yield* Effect.all(
        Array.from({ length: 60 }, (_, i) => lock.run(sets[i % sets.length]!, task(sets[i % sets.length]!), String)),
        { concurrency: "unbounded" }
      )
      expect(violations).toBe(0)
      expect(lock.size).toBe(0)
      expect(lock.waiting).toBe(0)
    }))

  it.live("interrupting a waiter runs nothing and leaves no key held", () =>
    Effect.gen(function*() {
      const lock = new KeyedLock()
      let release!: () => void
      const holding = new Promise<void>((resolve) => (release = resolve))
      const first = yield* Effect.fork(lock.run(["k", "j"], () => holding, String))
      yield* Effect.sleep("5 millis")
      let ran = false
      const waiter = yield* Effect.fork(lock.run(["j"], async () => {
        ran = true
      }, String))
      yield* Effect.sleep("5 millis")
      expect(lock.waiting).toBe(1)
      yield* Fiber.interrupt(waiter)
      expect(lock.waiting).toBe(0)
      release()
      expect(Exit.isSuccess(yield* Fiber.await(first))).toBe(true)
      expect(ran).toBe(false)
      expect(lock.size).toBe(0)
    }))

  it.live("an interrupted holder keeps its keys until its task settles", () =>
    Effect.gen(function*() {
      const lock = new KeyedLock()
      let release!: () => void
      const holding = new Promise<void>((resolve) => (release = resolve))
      const holder = yield* Effect.fork(lock.run(["k"], () => holding, String))
      yield* Effect.sleep("5 millis")
      yield* Fiber.interrupt(holder)
      // The LevelDB call cannot be aborted, so the key stays taken until it returns.
      expect(lock.size).toBe(1)
      release()
      yield* Effect.sleep("5 millis")
      expect(lock.size).toBe(0)
    }))

  it.effect("a task that throws or rejects fails with the mapped error and releases its keys", () =>
    Effect.gen(function*() {
      const lock = new KeyedLock()
      const thrown = yield* Effect.flip(lock.run(["k"], () => {
        throw new Error("sync")
      }, (e) => `mapped: ${(e as Error).message}`))
      expect(thrown).toBe("mapped: sync")
      const rejected = yield* Effect.flip(lock.run(["k"], () => Promise.reject(new Error("async")), (e) => `mapped: ${(e as Error).message}`))
      expect(rejected).toBe("mapped: async")
      expect(lock.size).toBe(0)
    }))
})

describe("WriteGate", () => {
  /** A task whose promise the test settles by hand, recording when it started. */
  const manual = (log: Array<string>, name: string) => {
    let settle!: () => void
    const task = () => {
      log.push(`${name} started`)
      return new Promise<string>((resolve) => (settle = () => resolve(name)))
    }
    return { task, settle: () => settle() }
  }

  it.live("a modify waits for plain writes that started before it, then runs alone on its keys", () =>
    Effect.gen(function*() {
      const gate = new WriteGate()
      const log: Array<string> = []
      const w1 = manual(log, "w1")
      const m = manual(log, "m")
      const w2 = manual(log, "w2")
      const w3 = manual(log, "w3")
      const first = yield* Effect.fork(gate.write(["k"], w1.task, String))
      yield* Effect.yieldNow()
      // Lock-free while nothing modifies.
      expect(gate.unlockedWrites).toBe(1)
      expect(gate.locks.size).toBe(0)
      const modify = yield* Effect.fork(gate.modify(["k"], m.task, String))
      yield* Effect.sleep("2 millis")
      expect(log).toEqual(["w1 started"])
      // A write of the same key now queues behind the modify; one of another key does not.
      const second = yield* Effect.fork(gate.write(["k"], w2.task, String))
      const third = yield* Effect.fork(gate.write(["other"], w3.task, String))
      yield* Effect.sleep("2 millis")
      expect(log).toEqual(["w1 started", "w3 started"])
      w1.settle()
      yield* Effect.sleep("2 millis")
      expect(log).toEqual(["w1 started", "w3 started", "m started"])
      m.settle()
      yield* Effect.sleep("2 millis")
      expect(log).toEqual(["w1 started", "w3 started", "m started", "w2 started"])
      w2.settle()
      w3.settle()
      expect(yield* Fiber.joinAll([first, modify, second, third])).toEqual(["w1", "m", "w2", "w3"])
      expect([gate.unlockedWrites, gate.activeModifications, gate.locks.size]).toEqual([0, 0, 0])
    }))

  it.live("interrupting a modify that waits for earlier writes gives everything back", () =>
    Effect.gen(function*() {
      const gate = new WriteGate()
      const log: Array<string> = []
      const w = manual(log, "w")
      const writer = yield* Effect.fork(gate.write(["k"], w.task, String))
      yield* Effect.yieldNow()
      const modify = yield* Effect.fork(gate.modify(["k", "j"], manual(log, "m").task, String))
      yield* Effect.sleep("2 millis")
      expect(gate.activeModifications).toBe(1)
      expect(gate.locks.size).toBe(2)
      yield* Fiber.interrupt(modify)
      expect([gate.activeModifications, gate.locks.size]).toEqual([0, 0])
      w.settle()
      yield* Fiber.join(writer)
      expect(log).toEqual(["w started"])
      // Back to lock-free writes.
      yield* gate.write(["k"], async () => "again", String)
      expect([gate.unlockedWrites, gate.locks.size]).toEqual([0, 0])
    }))

  it.effect("a failing write or modify still gives back its keys and counters", () =>
    Effect.gen(function*() {
      const gate = new WriteGate()
      expect(yield* Effect.flip(gate.write(["k"], () => Promise.reject(new Error("w")), () => "write failed"))).toBe("write failed")
      expect(yield* Effect.flip(gate.modify(["k"], () => {
        throw new Error("m")
      }, () => "modify failed"))).toBe("modify failed")
      expect([gate.unlockedWrites, gate.activeModifications, gate.locks.size]).toEqual([0, 0, 0])
    }))
})

describe("CoalescingReader", () => {
  const fakeDb = (store: Map<string, Uint8Array>) => {
    const calls = { get: 0, getMany: 0, keysInGetMany: 0 }
    const db: PointReads = {
      get: (key) => {
        calls.get++
        return new Promise((resolve) => setTimeout(() => resolve(store.get(key)), 1))
      },
      getMany: (keys) => {
        calls.getMany++
        calls.keysInGetMany += keys.length
        return new Promise((resolve) => setTimeout(() => resolve(keys.map((k) => store.get(k))), 1))
      }
    }
    return { db, calls }
  }
  const read = (reader: CoalescingReader, key: string) =>
    new Promise<Uint8Array | undefined>((resolve, reject) => reader.read(key, resolve, reject))

  it("a lone reader goes straight to get; concurrent readers share getMany calls and get their own values", async () => {
    const store = new Map(Array.from({ length: 100 }, (_, i) => [`k${i}`, Uint8Array.of(i)] as const))
    const { calls, db } = fakeDb(store)
    const reader = new CoalescingReader(db, 2)
    expect(await read(reader, "k7")).toEqual(Uint8Array.of(7))
    expect(await read(reader, "missing")).toBeUndefined()
    expect(calls).toEqual({ get: 2, getMany: 0, keysInGetMany: 0 })

    const keys = Array.from({ length: 100 }, (_, i) => (i % 10 === 9 ? `absent${i}` : `k${i}`))
    const values = await Promise.all(keys.map((k) => read(reader, k)))
    values.forEach((v, i) => expect(v).toEqual(i % 10 === 9 ? undefined : Uint8Array.of(i)))
    // Two slots: two direct gets, the other 98 reads in one getMany.
    expect(calls.get).toBe(4)
    expect(calls.getMany).toBe(1)
    expect(calls.keysInGetMany).toBe(98)
  })

  it("a failed getMany fails every read it carried, and later reads still work", async () => {
    let failing = true
    const db: PointReads = {
      get: () => new Promise((resolve) => setTimeout(() => resolve(Uint8Array.of(1)), 1)),
      getMany: (keys) =>
        failing ? Promise.reject(new Error("boom")) : Promise.resolve(keys.map(() => Uint8Array.of(2)))
    }
    const reader = new CoalescingReader(db, 1)
    const outcomes = await Promise.allSettled([read(reader, "a"), read(reader, "b"), read(reader, "c")])
    expect(outcomes.map((o) => o.status)).toEqual(["fulfilled", "rejected", "rejected"])
    failing = false
    const again = await Promise.all([read(reader, "a"), read(reader, "b")])
    expect(again).toEqual([Uint8Array.of(1), Uint8Array.of(2)])
  })
})
