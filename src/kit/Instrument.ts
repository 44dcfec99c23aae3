/**
 * What every backend wraps its calls in: latency, outcome and failure
 * metrics, `OperationFailed` / `RetryAttempted` events, and retries of
 * transient errors. MetricsRegistry and BackendEvents are optional: a backend
 * built without them works unchanged (and pays nothing), one built with them
 * reports.
 *
 * Typical use, retries inside the observation so that one call is counted
 * once, with its total latency and final outcome:
 *
 *   const instrument = yield* Instrument.make("pg", "KeyValueStore")
 *   const get = (key) => query(key).pipe(instrument.retry("get"), instrument.observe("get"))
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Sink from "effect/Sink"
import * as Stream from "effect/Stream"
import { type ErrorReason, isStorageError } from "../core/Errors.js"
import { type BackendEvent, BackendEvents, OperationFailed, RetryAttempted } from "../ports/BackendEvents.js"
import { MetricsRegistry, type MetricTags } from "../ports/MetricsRegistry.js"
import * as Events from "./Events.js"
import * as MetricKeys from "./MetricKeys.js"
import * as Metrics from "./Metrics.js"
import * as Retry from "./Retry.js"

/** The instrumentation of one backend's implementation of one port. */
export interface Instrument {
  readonly backend: string
  readonly port: string
  /** Records latency, the outcome and any failure (metrics + OperationFailed) of the effect. Interruption is not recorded. */
  readonly observe: (method: string) => <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /**
   * Like `observe` for a stream, from its start to its end. A consumer that
   * stops early (take, head) counts as success; an error raised downstream
   * of the stream, or interruption, is not the backend's and is not recorded.
   */
  readonly observeStream: (method: string) => <A, E, R>(self: Stream.Stream<A, E, R>) => Stream.Stream<A, E, R>
  /**
   * Like `observe` for a sink (a put), from its start to its result. A failure
   * of the upstream stream, or interruption, is not the backend's and is not recorded.
   */
  readonly observeSink: (
    method: string
  ) => <A, In, L, E, R>(self: Sink.Sink<A, In, L, E, R>) => Sink.Sink<A, In, L, E, R>
  /**
   * Only the failure half of `observe` (failures counter and OperationFailed):
   * for a backend that records its own, finer latency and operation counts.
   */
  readonly observeFailures: (method: string) => <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** What `observeFailures` records for one failure cause, for a backend that matches outcomes itself. */
  readonly failed: (method: string, cause: Cause.Cause<unknown>) => Effect.Effect<void>
  /** Retries transient failures (see Retry), counting each retry and publishing RetryAttempted. */
  readonly retry: (
    method: string,
    schedule?: Retry.RetrySchedule
  ) => <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** `retry` inside `observe`: the usual wrapping of a call that is safe to repeat. */
  readonly observeRetry: (
    method: string,
    schedule?: Retry.RetrySchedule
  ) => <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** Publishes an event; does nothing without BackendEvents. */
  readonly publish: (event: BackendEvent) => Effect.Effect<void>
  /** Adds to a counter, tagged with `backend`; does nothing without a MetricsRegistry. */
  readonly counter: (name: string, value?: number, tags?: MetricTags) => Effect.Effect<void>
  /** Records a histogram observation, tagged with `backend`; does nothing without a MetricsRegistry. */
  readonly histogram: (name: string, value: number, tags?: MetricTags) => Effect.Effect<void>
  /** Sets a gauge, tagged with `backend`; does nothing without a MetricsRegistry. */
  readonly gauge: (name: string, value: number, tags?: MetricTags) => Effect.Effect<void>
}

/** Reason and sentence for a failure cause; non-storage failures and defects are "Unknown". */
const classify = (cause: Cause.Cause<unknown>): { readonly reason: ErrorReason; readonly description: string } => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure) && isStorageError(failure.value)) {
    return { reason: failure.value.reason, description: failure.value.message }
  }
  const squashed = Cause.squash(cause)
  return { reason: "Unknown", description: squashed instanceof Error ? squashed.message : String(squashed) }
}

const elapsedSeconds = (start: bigint): Effect.Effect<number> =>
  Effect.map(Clock.currentTimeNanos, (end) => Number(end - start) / 1e9)

/** An Instrument over explicitly given services (`make` looks them up in the context). */
export const fromServices = (
  backend: string,
  port: string,
  services: {
    readonly metrics: Option.Option<MetricsRegistry["Type"]>
    readonly events: Option.Option<BackendEvents["Type"]>
  }
): Instrument => {
  const metrics = Option.getOrUndefined(services.metrics)
  const events = Option.getOrUndefined(services.events)
  const enabled = metrics !== undefined || events !== undefined
  const now = Events.now

  const publish = (event: BackendEvent): Effect.Effect<void> =>
    events === undefined ? Effect.void : events.publish(event)

  const withBackend = (tags: MetricTags | undefined): MetricTags => ({ ...tags, backend })

  const counter = (name: string, value = 1, tags?: MetricTags): Effect.Effect<void> =>
    metrics === undefined ? Effect.void : metrics.counter(name, value, withBackend(tags))
  const histogram = (name: string, value: number, tags?: MetricTags): Effect.Effect<void> =>
    metrics === undefined ? Effect.void : metrics.histogram(name, value, withBackend(tags))
  const gauge = (name: string, value: number, tags?: MetricTags): Effect.Effect<void> =>
    metrics === undefined ? Effect.void : metrics.gauge(name, value, withBackend(tags))

  // One tags object per method and outcome, reused so the registry finds its series by identity.
  const tagCache = new Map<string, MetricTags>()
  const tagsOf = (method: string, extra: "" | "success" | "failure" | `reason:${string}`): MetricTags => {
    const id = `${method}\u0000${extra}`
    let tags = tagCache.get(id)
    if (tags === undefined) {
      tags = extra === ""
        ? { backend, port, method }
        : extra.startsWith("reason:")
        ? { backend, port, method, reason: extra.slice(7) }
        : { backend, port, method, outcome: extra }
      tagCache.set(id, tags)
    }
    return tags
  }

  const succeeded = (method: string, start: bigint): Effect.Effect<void> =>
    metrics === undefined ? Effect.void : Effect.flatMap(elapsedSeconds(start), (seconds) =>
      Effect.zipRight(
        metrics.histogram(MetricKeys.backendLatencySeconds, seconds, tagsOf(method, "")),
        metrics.counter(MetricKeys.backendOperationsTotal, 1, tagsOf(method, "success"))
      ))

  const failedOnly = (method: string, cause: Cause.Cause<unknown>): Effect.Effect<void> => {
    const { description, reason } = classify(cause)
    const recordMetrics = metrics === undefined
      ? Effect.void
      : metrics.counter(MetricKeys.backendFailuresTotal, 1, tagsOf(method, `reason:${reason}`))
    const announce = events === undefined
      ? Effect.void
      : Effect.flatMap(now, (at) => events.publish(new OperationFailed({ backend, at, method, reason, description })))
    return Effect.zipRight(recordMetrics, announce)
  }

  const observeFailures = (method: string) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    enabled
      ? Effect.onError(self, (cause) => (Cause.isInterruptedOnly(cause) ? Effect.void : failedOnly(method, cause)))
      : self

  const failed = (method: string, start: bigint, cause: Cause.Cause<unknown>): Effect.Effect<void> => {
    const { description, reason } = classify(cause)
    const recordMetrics = metrics === undefined ? Effect.void : Effect.flatMap(elapsedSeconds(start), (seconds) =>
      Effect.all([
        metrics.histogram(MetricKeys.backendLatencySeconds, seconds, tagsOf(method, "")),
        metrics.counter(MetricKeys.backendOperationsTotal, 1, tagsOf(method, "failure")),
        metrics.counter(MetricKeys.backendFailuresTotal, 1, tagsOf(method, `reason:${reason}`))
      ], { discard: true }))
    const announce = events === undefined
      ? Effect.void
      : Effect.flatMap(now, (at) => events.publish(new OperationFailed({ backend, at, method, reason, description })))
    return Effect.zipRight(recordMetrics, announce)
  }

  /** Accounts for one finished call; `own` = the failure came from the observed call itself. */
  const finish = (method: string, start: bigint, exit: Exit.Exit<unknown, unknown>, own: boolean) => {
    if (Exit.isSuccess(exit)) return succeeded(method, start)
    if (Cause.isInterruptedOnly(exit.cause)) return Effect.void
    return own ? failed(method, start, exit.cause) : Effect.void
  }

  const direct = metrics === undefined ? undefined : Metrics.direct(metrics)

  const observe = (method: string) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => {
    if (!enabled) return self
    if (direct === undefined) {
      return Effect.flatMap(Clock.currentTimeNanos, (start) => Effect.onExit(self, (exit) => finish(method, start, exit, true)))
    }
    // Our own registry: the clock reads and a success's two observations happen synchronously in
    // the steps the call runs anyway, instead of a fiber step each (see Metrics.direct). No closure
    // made per call is a named one (under esbuild's keepNames, as tsx runs the tests and the
    // benchmarks, each would cost a defineProperty).
    return Effect.withFiberRuntime<A, E, R>((fiber) => {
      const clock = Context.get(fiber.currentDefaultServices, Clock.Clock)
      const start = clock.unsafeCurrentTimeNanos()
      return Effect.catchAllCause(
        Effect.flatMap(self, (a) => {
          const pending = succeededNow(fiber, method, Number(clock.unsafeCurrentTimeNanos() - start) / 1e9)
          return pending === Effect.void ? Effect.succeed(a) : Effect.as(pending, a)
        }),
        (cause) =>
          Cause.isInterruptedOnly(cause)
            ? Effect.failCause(cause)
            : Effect.zipRight(failed(method, start, cause), Effect.failCause(cause))
      )
    })
  }

  /** A success's latency and count, recorded now (Effect.void unless a warning is due). */
  function succeededNow(fiber: Fiber.RuntimeFiber<unknown, unknown>, method: string, seconds: number): Effect.Effect<void> {
    const first = direct!.record(fiber, "histogram", MetricKeys.backendLatencySeconds, seconds, tagsOf(method, ""))
    const second = direct!.record(fiber, "counter", MetricKeys.backendOperationsTotal, 1, tagsOf(method, "success"))
    return first === Effect.void ? second : Effect.zipRight(first, second)
  }

  const observeStream = (method: string) => <A, E, R>(self: Stream.Stream<A, E, R>): Stream.Stream<A, E, R> => {
    if (!enabled) return self
    return Stream.suspend(() => {
      // The stream's finalizer also sees failures raised downstream of it; only
      // causes that flowed through the stream itself are the backend's.
      let own: Cause.Cause<E> | undefined
      return Stream.unwrap(Effect.map(Clock.currentTimeNanos, (start) =>
        self.pipe(
          Stream.tapErrorCause((cause) =>
            Effect.sync(() => {
              own = cause
            })
          ),
          Stream.ensuringWith((exit) =>
            own !== undefined && !Cause.isInterruptedOnly(own)
              ? failed(method, start, own)
              : finish(method, start, exit, false)
          )
        )))
    })
  }

  const observeSink =
    (method: string) => <A, In, L, E, R>(self: Sink.Sink<A, In, L, E, R>): Sink.Sink<A, In, L, E, R> => {
      if (!enabled) return self
      return Sink.suspend(() => {
        // As for streams, the sink's exit also carries upstream failures; remember our own.
        let own = false
        return Sink.unwrap(Effect.map(Clock.currentTimeNanos, (start) =>
          self.pipe(
            Sink.mapError((e) => {
              own = true
              return e
            }),
            // A defect has no typed error to tag; it is counted as the sink's own.
            Sink.ensuringWith((exit) =>
              finish(method, start, exit, own || (Exit.isFailure(exit) && Cause.isDie(exit.cause)))
            )
          )))
      })
    }

  const retry = (method: string, schedule?: Retry.RetrySchedule) => {
    const onRetry = (error: { readonly reason: ErrorReason }, attempt: number): Effect.Effect<void> =>
      Effect.zipRight(
        counter(MetricKeys.backendRetriesTotal, 1, { port, method, reason: error.reason }),
        events === undefined
          ? Effect.void
          : Effect.flatMap(now, (at) =>
            events.publish(new RetryAttempted({ backend, at, method, attempt, reason: error.reason })))
      )
    return Retry.retryTransient(
      schedule === undefined ? { onRetry } : { schedule, onRetry }
    )
  }

  const observeRetry = (method: string, schedule?: Retry.RetrySchedule) => {
    const retrying = retry(method, schedule)
    const observing = observe(method)
    return <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => observing(retrying(self))
  }

  return { backend, port, observe, observeFailures, failed: failedOnly, observeStream, observeSink, retry, observeRetry, publish, counter, histogram, gauge }
}

/**
 * The Instrument of `backend`'s implementation of `port`. MetricsRegistry
 * and BackendEvents are looked up now, when the backend is built; either may
 * be absent.
 */
export const make = (backend: string, port: string): Effect.Effect<Instrument> =>
  Effect.map(
    Effect.all([Effect.serviceOption(MetricsRegistry), Effect.serviceOption(BackendEvents)]),
    ([metrics, events]) => fromServices(backend, port, { metrics, events })
  )

/** An Instrument that records nothing (for code paths built without any services). */
export const noop = (backend: string, port: string): Instrument =>
  fromServices(backend, port, { metrics: Option.none(), events: Option.none() })
