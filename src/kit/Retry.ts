/**
 * Retry policies for backend calls: exponential backoff with jitter, capped
 * in attempts and in elapsed time, applied only to storage errors whose
 * `reason` is transient (Unavailable, Throttled, Timeout). Permanent errors
 * (NotFound, InvalidInput, Conflict ...) fail at once. Only wrap operations
 * that are safe to repeat.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import { isTransient, type StorageError } from "../core/Errors.js"

/** A retry schedule; its input is the error of the failed attempt. */
export type RetrySchedule = Schedule.Schedule<unknown, unknown>

/** Parameters of an exponential backoff policy. */
export interface PolicyOptions {
  /** Delay before the first retry (default 100 millis). */
  readonly base?: Duration.DurationInput
  /** Growth of the delay per retry (default 2). */
  readonly factor?: number
  /** Retries after the first attempt (default 5; 0 = never retry). */
  readonly maxRetries?: number
  /** No retry is started once this much time has passed since the first failure (default 30 seconds). */
  readonly maxElapsed?: Duration.DurationInput
  /** Randomize each delay to 80%–120% so that many clients do not retry in lockstep (default true). */
  readonly jitter?: boolean
}

/** Builds an exponential backoff schedule: `base * factor^n`, jittered, capped in retries and elapsed time. */
export const policy = (options: PolicyOptions = {}): RetrySchedule => {
  const exponential = Schedule.exponential(options.base ?? Duration.millis(100), options.factor ?? 2)
  const delays = options.jitter === false ? exponential : Schedule.jittered(exponential)
  return delays.pipe(
    Schedule.intersect(Schedule.recurs(Math.max(0, options.maxRetries ?? 5))),
    Schedule.upTo(options.maxElapsed ?? Duration.seconds(30))
  )
}

/** 100 ms, 200 ms, 400 ms, 800 ms, 1.6 s (each ±20%), at most 5 retries and 30 s. */
export const defaultSchedule: RetrySchedule = policy()

/** Options of `retryTransient`. */
export interface RetryOptions {
  /** When to retry (default `defaultSchedule`). */
  readonly schedule?: RetrySchedule
  /** Runs before each retry with the transient error and the number of the attempt that failed (1 = the first). */
  readonly onRetry?: (error: StorageError, attempt: number) => Effect.Effect<void>
}

/**
 * The schedule `retryTransient` runs: `schedule`, stopped by any error that
 * is not transient, calling `onRetry` only when a retry will really happen.
 * `Effect.retry` checks its `while` predicate after stepping the schedule, so
 * the guard must sit inside, before the hook.
 */
const guarded = (schedule: RetrySchedule, onRetry: RetryOptions["onRetry"]): RetrySchedule => {
  const transientOnly = schedule.pipe(
    Schedule.intersect(Schedule.identity<unknown>()),
    Schedule.whileInput(isTransient)
  )
  if (onRetry === undefined) return transientOnly
  return transientOnly.pipe(
    Schedule.intersect(Schedule.count),
    // Runs only for a decision to continue, i.e. just before a retry; the delay is kept.
    Schedule.modifyDelayEffect(([[, error], retries], delay) =>
      Effect.as(onRetry(error as StorageError, retries + 1), delay)
    )
  )
}

/** Retries the effect on transient storage errors following `schedule`; anything else fails at once. */
export const retryTransient = (options: RetryOptions = {}) => {
  const schedule = guarded(options.schedule ?? defaultSchedule, options.onRetry)
  return <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.retry(self, { schedule, while: isTransient })
}
