/**
 * The BackendEvents port on a bounded `PubSub` with the SLIDING strategy.
 *
 * Why sliding: a publisher is a backend call in progress and must never
 * wait for an observer. A bounded PubSub shares one buffer among its
 * subscribers; when a slow subscriber leaves it full,
 * - "suspend" would block every publisher (ruled out),
 * - "dropping" would discard the NEW event for everyone, so a single stuck
 *   subscriber would make the healthy ones miss events,
 * - "sliding" discards the OLDEST event, which only the subscribers lagging
 *   behind have not taken yet. Up-to-date subscribers lose nothing; a slow
 *   one sees a gap and then the most recent `capacity` events.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as PubSub from "effect/PubSub"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { type BackendEvent, BackendEvents } from "../ports/BackendEvents.js"

/** Events a lagging subscriber may fall behind by before it loses the oldest ones. */
export const defaultCapacity = 4096

/** Options of an event bus. */
export interface Options {
  /** Buffer size shared by the subscribers (default `defaultCapacity`). */
  readonly capacity?: number
}

/**
 * A bus whose PubSub is shut down when the scope closes: subscriber streams
 * then end, and later publishes are ignored (publishing never fails).
 */
export const makeWith = (options: Options = {}): Effect.Effect<BackendEvents["Type"], never, Scope.Scope> =>
  Effect.gen(function*() {
    const pubsub = yield* Effect.acquireRelease(
      PubSub.sliding<BackendEvent>(options.capacity ?? defaultCapacity),
      PubSub.shutdown
    )
    return BackendEvents.of({
      // Publishing to a shut-down PubSub would interrupt the caller; a late event is simply dropped.
      publish: (event) =>
        Effect.flatMap(PubSub.isShutdown(pubsub), (down) => (down ? Effect.void : Effect.asVoid(PubSub.publish(pubsub, event)))),
      // The subscription exists once this effect has run, so events published after it are seen.
      subscribe: Effect.map(PubSub.subscribe(pubsub), (dequeue) => Stream.fromQueue(dequeue))
    })
  })

/** A bus with the default capacity (see `makeWith`). */
export const make: Effect.Effect<BackendEvents["Type"], never, Scope.Scope> = makeWith()

/** Provides BackendEvents for the lifetime of the layer. */
export const layer: Layer.Layer<BackendEvents> = Layer.scoped(BackendEvents, make)

/** Provides BackendEvents with a custom capacity. */
export const layerWith = (options: Options): Layer.Layer<BackendEvents> => Layer.scoped(BackendEvents, makeWith(options))

/** The current time as a `Date`, from the Clock service (TestClock-friendly), for an event's `at`. */
export const now: Effect.Effect<Date> = Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms))
