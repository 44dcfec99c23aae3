/**
 * PgKeyValueStore: the conformance suite, then what only a database can get
 * wrong: commits racing for the same absent key, atomic transfers between
 * keys under contention, SQL-looking keys, and joining a caller's transaction.
 */
import { expect } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import type { MetadataError } from "../../../src/core/Errors.js"
import { del, KeyValueStore, put } from "../../../src/ports/KeyValueStore.js"
import { utf8 } from "../../../src/testing/bytes.js"
import { testKeyValueStore, uniquePrefix } from "../../../src/testing/KeyValueStore.js"
import { describePg, pgLayer, skipReason, usePostgres } from "../../harness/postgres.js"
import { UnitOfWork } from "../../../src/ports/UnitOfWork.js"

/** Runs `effect` in one PostgreSQL transaction through the UnitOfWork port. */
const atomically = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.flatMap(UnitOfWork, (unit) => unit.atomically(effect))

usePostgres()

const pg = pgLayer("kv")
testKeyValueStore("pg", pg, { skipAll: skipReason() })

const text = (b: Uint8Array) => new TextDecoder().decode(b)
const value = (key: string) => Effect.flatMap(KeyValueStore, (kv) => Effect.map(kv.get(key), Option.map(text)))

describePg("PgKeyValueStore", pg, (test) => {
  test("30 commits racing to claim one absent key: exactly one wins, and its writes are the ones kept", () =>
    Effect.gen(function*() {
      const kv = yield* KeyValueStore
      const p = uniquePrefix("race")
      const wins = yield* Effect.forEach(
        Array.from({ length: 30 }, (_, i) => i),
        (i) =>
          kv.commit([{ key: `${p}claim`, expected: Option.none() }], [
            put(`${p}claim`, utf8(`owner-${i}`)),
            put(`${p}side/${i}`, utf8("written"))
          ]),
        { concurrency: "unbounded" }
      )
      expect(wins.filter(Boolean).length).toBe(1)
      const winner = wins.indexOf(true)
      expect(yield* value(`${p}claim`)).toEqual(Option.some(`owner-${winner}`))
      for (let i = 0; i < 30; i++) {
        expect(Option.isSome(yield* value(`${p}side/${i}`))).toBe(i === winner)
      }
    }), 60_000)

  test("an absence check that holds leaves no placeholder behind", () =>
    Effect.gen(function*() {
      const kv = yield* KeyValueStore
      const p = uniquePrefix("absent")
      expect(yield* kv.commit([{ key: `${p}guard`, expected: Option.none() }], [put(`${p}other`, utf8("x"))])).toBe(true)
      expect(yield* kv.get(`${p}guard`)).toEqual(Option.none())
      expect(yield* kv.commit([{ key: `${p}guard`, expected: Option.none() }], [del(`${p}guard`)])).toBe(true)
      expect(yield* kv.get(`${p}guard`)).toEqual(Option.none())
    }))

  test("40 concurrent transfers between two balances with checked commits conserve the total", () =>
    Effect.gen(function*() {
      const kv = yield* KeyValueStore
      const p = uniquePrefix("bank")
      const [a, b] = [`${p}a`, `${p}b`]
      yield* kv.commit([], [put(a, utf8("100")), put(b, utf8("100"))])
      const transfer = (amount: number): Effect.Effect<void, MetadataError> =>
        Effect.gen(function*() {
          const va = Option.getOrThrow(yield* kv.get(a))
          const vb = Option.getOrThrow(yield* kv.get(b))
          const ok = yield* kv.commit(
            [{ key: a, expected: Option.some(va) }, { key: b, expected: Option.some(vb) }],
            [put(a, utf8(String(Number(text(va)) - amount))), put(b, utf8(String(Number(text(vb)) + amount)))]
          )
          if (!ok) return yield* transfer(amount)
        })
      yield* Effect.forEach(Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? 3 : -2)), transfer, {
        concurrency: "unbounded",
        discard: true
      })
      const [fa, fb] = [Number(Option.getOrThrow(yield* value(a))), Number(Option.getOrThrow(yield* value(b)))]
      expect(fa + fb).toBe(200)
      expect(fa).toBe(100 - 20 * 3 + 20 * 2)
    }), 60_000)

  test("keys that look like SQL are stored as plain text", () =>
    Effect.gen(function*() {
      const kv = yield* KeyValueStore
      const p = uniquePrefix("sql")
      const keys = [`${p}'; DROP TABLE kv; --`, `${p}$1`, `${p}\\x00`, `${p}E'\\\\'`, `${p}"quoted"`]
      yield* Effect.forEach(keys, (k, i) => kv.put(k, utf8(String(i))), { discard: true })
      for (let i = 0; i < keys.length; i++) expect(yield* value(keys[i]!)).toEqual(Option.some(String(i)))
      expect(yield* kv.compareAndSet(keys[0]!, Option.some(utf8("0")), Option.some(utf8("changed")))).toBe(true)
      expect(yield* value(keys[0]!)).toEqual(Option.some("changed"))
    }))

  test("inside a caller's transaction, writes and commits roll back with it", () =>
    Effect.gen(function*() {
      const kv = yield* KeyValueStore
      const p = uniquePrefix("tx")
      const outcome = yield* Effect.either(atomically(Effect.gen(function*() {
        yield* kv.put(`${p}a`, utf8("a"))
        expect(yield* kv.commit([{ key: `${p}b`, expected: Option.none() }], [put(`${p}b`, utf8("b"))])).toBe(true)
        // A failing check rolls back only its own savepoint: the transaction goes on.
        expect(yield* kv.commit([{ key: `${p}b`, expected: Option.none() }], [put(`${p}c`, utf8("c"))])).toBe(false)
        expect(yield* value(`${p}b`)).toEqual(Option.some("b"))
        return yield* Effect.fail("abort" as const)
      })))
      expect(outcome).toEqual(Either.left("abort"))
      expect([yield* value(`${p}a`), yield* value(`${p}b`), yield* value(`${p}c`)]).toEqual([
        Option.none(),
        Option.none(),
        Option.none()
      ])
      yield* atomically(Effect.zipRight(kv.put(`${p}a`, utf8("a")), kv.put(`${p}b`, utf8("b"))))
      expect([yield* value(`${p}a`), yield* value(`${p}b`)]).toEqual([Option.some("a"), Option.some("b")])
    }))
})
