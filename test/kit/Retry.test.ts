import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as TestClock from "effect/TestClock"
import { type ErrorReason, MetadataError, type StorageError } from "../../src/core/Errors.js"
import * as Retry from "../../src/kit/Retry.js"

const error = (reason: ErrorReason) => new MetadataError({ reason, backend: "test", method: "get" })

/**
 * An operation that fails with `failures[i]` on attempt i (then succeeds with
 * "ok"), recording the TestClock time of every attempt.
 */
const scripted = (failures: ReadonlyArray<ErrorReason | string>) => {
  const times: Array<number> = []
  const op = Effect.flatMap(Clock.currentTimeMillis, (t) => {
    const i = times.length
    times.push(t)
    if (i >= failures.length) return Effect.succeed("ok")
    const f = failures[i]!
    return Effect.fail(f.startsWith("plain:") ? f : error(f as ErrorReason))
  })
  return { op, times }
}

const gaps = (times: ReadonlyArray<number>) => times.slice(1).map((t, i) => t - times[i]!)

/** Runs `self` in a fiber and moves the TestClock on until it is done. */
const drive = <A, E>(self: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(self)
    yield* TestClock.adjust("10 minutes")
    return yield* Fiber.await(fiber)
  })

describe("Retry", () => {
  it.effect("retries transient errors with exponential delays and stops after maxRetries", () =>
    Effect.gen(function*() {
      const { op, times } = scripted(Array(20).fill("Unavailable"))
      const exit = yield* drive(op.pipe(Retry.retryTransient({ schedule: Retry.policy({ jitter: false }) })))
      expect(times).toHaveLength(6)
      expect(gaps(times)).toEqual([100, 200, 400, 800, 1600])
      expect(exit).toEqual(Exit.fail(error("Unavailable")))
    }))

  it.effect("honours base, factor and maxRetries", () =>
    Effect.gen(function*() {
      const { op, times } = scripted(Array(20).fill("Throttled"))
      const schedule = Retry.policy({ base: "10 millis", factor: 3, maxRetries: 3, jitter: false })
      yield* drive(op.pipe(Retry.retryTransient({ schedule })))
      expect(gaps(times)).toEqual([10, 30, 90])
    }))

  it.effect("starts no retry once maxElapsed has passed since the first failure", () =>
    Effect.gen(function*() {
      const { op, times } = scripted(Array(50).fill("Timeout"))
      const schedule = Retry.policy({ maxRetries: 40, maxElapsed: "1 second", jitter: false })
      yield* drive(op.pipe(Retry.retryTransient({ schedule })))
      // Decisions at 0, 100, 300 and 700 ms are within the second; the one at 1500 ms is not.
      expect(times).toEqual([0, 100, 300, 700, 1500])
    }))

  it.effect("the default schedule jitters each delay within 80%..120% and caps at 5 retries", () =>
    Effect.gen(function*() {
      const { op, times } = scripted(Array(20).fill("Unavailable"))
      yield* drive(op.pipe(Retry.retryTransient({})))
      expect(times).toHaveLength(6)
      gaps(times).forEach((gap, i) => {
        const nominal = 100 * 2 ** i
        expect(gap).toBeGreaterThanOrEqual(Math.floor(nominal * 0.8))
        expect(gap).toBeLessThanOrEqual(Math.ceil(nominal * 1.2))
      })
    }))

  it.effect("succeeds after two transient failures", () =>
    Effect.gen(function*() {
      const { op, times } = scripted(["Unavailable", "Throttled"])
      const exit = yield* drive(op.pipe(Retry.retryTransient({ schedule: Retry.policy({ jitter: false }) })))
      expect(exit).toEqual(Exit.succeed("ok"))
      expect(times).toEqual([0, 100, 300])
    }))

  it.effect("never retries a permanent error", () =>
    Effect.gen(function*() {
      for (const reason of ["NotFound", "InvalidInput", "Conflict", "Corrupted", "PermissionDenied"] as const) {
        const { op, times } = scripted([reason])
        const retried: Array<number> = []
        const exit = yield* drive(op.pipe(Retry.retryTransient({
          onRetry: (_, attempt) => Effect.sync(() => retried.push(attempt))
        })))
        expect(times).toHaveLength(1)
        expect(retried).toEqual([])
        expect(exit).toEqual(Exit.fail(error(reason)))
      }
    }))

  it.effect("never retries an error that is not a storage error", () =>
    Effect.gen(function*() {
      const { op, times } = scripted(["plain:Unavailable"])
      const exit = yield* drive(op.pipe(Retry.retryTransient({})))
      expect(times).toHaveLength(1)
      expect(exit).toEqual(Exit.fail("plain:Unavailable"))
    }))

  it.effect("stops at the first permanent error after transient ones", () =>
    Effect.gen(function*() {
      const { op, times } = scripted(["Unavailable", "NotFound", "Unavailable"])
      const exit = yield* drive(op.pipe(Retry.retryTransient({ schedule: Retry.policy({ jitter: false }) })))
      expect(times).toEqual([0, 100])
      expect(exit).toEqual(Exit.fail(error("NotFound")))
    }))

  it.effect("onRetry sees each transient error and attempt number, only when a retry follows", () =>
    Effect.gen(function*() {
      const { op } = scripted(["Unavailable", "Throttled", "Timeout", "Timeout"])
      const seen: Array<[ErrorReason, number, number]> = []
      const onRetry = (e: StorageError, attempt: number) =>
        Effect.map(Clock.currentTimeMillis, (t) => {
          seen.push([e.reason, attempt, t])
        })
      const exit = yield* drive(op.pipe(Retry.retryTransient({
        schedule: Retry.policy({ maxRetries: 3, jitter: false }),
        onRetry
      })))
      // Three retries allowed: the fourth failure ends it without another onRetry.
      expect(seen).toEqual([["Unavailable", 1, 0], ["Throttled", 2, 100], ["Timeout", 3, 300]])
      expect(exit).toEqual(Exit.fail(error("Timeout")))
    }))

  it.effect("maxRetries 0 never retries", () =>
    Effect.gen(function*() {
      const { op, times } = scripted(["Unavailable"])
      yield* drive(op.pipe(Retry.retryTransient({ schedule: Retry.policy({ maxRetries: 0 }) })))
      expect(times).toHaveLength(1)
    }))
})
