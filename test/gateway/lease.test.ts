/**
 * The upload lease on its own (over the in-memory KeyValueStore, with the
 * test clock): a held lease refuses another holder with 423; one that ran
 * out (its holder crashed) is taken over; a holder whose lease was taken
 * over is cut at its next renewal; the lease is removed when done.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import * as MemoryKeyValueStore from "../../src/backends/memory/MemoryKeyValueStore.js"
import { leaseKey, parse, withLease } from "../../src/gateway/lease.js"
import { HttpFailure } from "../../src/gateway/responses.js"

const ID = "0123456789abcdef0123456789abcdef"
const LEASE = Duration.seconds(3)

/** "ok", the HTTP status of the failure, or what else ended it. */
const statusOf = <A>(exit: Exit.Exit<A, unknown>): "ok" | number | string =>
  Exit.isSuccess(exit)
    ? "ok"
    : Option.match(Cause.failureOption(exit.cause), {
      onNone: () => "interrupted or died",
      onSome: (e) => (e instanceof HttpFailure ? e.status : String(e))
    })

describe("upload lease", () => {
  it.effect("a held lease refuses a second holder (423); it is removed when done", () =>
    Effect.gen(function*() {
      const kv = yield* MemoryKeyValueStore.make
      const inside = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const first = yield* Effect.fork(withLease(kv, ID, LEASE, Effect.zipRight(Deferred.succeed(inside, undefined), Deferred.await(release))))
      yield* Deferred.await(inside)
      expect(statusOf(yield* Effect.exit(withLease(kv, ID, LEASE, Effect.void)))).toBe(423)
      // Renewed while it runs: still held well past one lease duration.
      yield* TestClock.adjust(Duration.seconds(10))
      expect(statusOf(yield* Effect.exit(withLease(kv, ID, LEASE, Effect.void)))).toBe(423)
      yield* Deferred.succeed(release, undefined)
      expect(Exit.isSuccess(yield* Fiber.await(first))).toBe(true)
      expect(Option.isNone(yield* kv.get(leaseKey(ID)))).toBe(true)
      expect(statusOf(yield* Effect.exit(withLease(kv, ID, LEASE, Effect.void)))).toBe("ok")
    }))

  it.effect("a lease left by a crashed holder is taken once it ran out; a holder that lost it is cut", () =>
    Effect.gen(function*() {
      const kv = yield* MemoryKeyValueStore.make
      // What a killed process leaves: a lease nobody renews.
      const now = yield* Clock.currentTimeMillis
      yield* kv.put(leaseKey(ID), new TextEncoder().encode(JSON.stringify({ owner: "gone", until: now + 3000 })))
      expect(statusOf(yield* Effect.exit(withLease(kv, ID, LEASE, Effect.void)))).toBe(423)
      yield* TestClock.adjust(Duration.seconds(4))
      const inside = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(withLease(kv, ID, LEASE, Effect.zipRight(Deferred.succeed(inside, undefined), Effect.never)))
      yield* Deferred.await(inside)
      expect(parse((yield* kv.get(leaseKey(ID))).pipe(Option.getOrThrow))?.owner).not.toBe("gone")
      // Someone else writes the lease (as after this holder stalled past its expiry): its next renewal fails and it is cut.
      yield* kv.put(leaseKey(ID), new TextEncoder().encode(JSON.stringify({ owner: "other", until: now + 60_000 })))
      yield* TestClock.adjust(Duration.seconds(2))
      expect(statusOf(yield* Fiber.await(holder))).toBe(423)
      // The other's lease stays.
      expect(parse((yield* kv.get(leaseKey(ID))).pipe(Option.getOrThrow))?.owner).toBe("other")
    }))
})
