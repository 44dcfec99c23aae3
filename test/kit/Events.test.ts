import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { BackendEvents, ObjectDeleted } from "../../src/ports/BackendEvents.js"
import * as Events from "../../src/kit/Events.js"

const deleted = (i: number) => new ObjectDeleted({ backend: "test", at: new Date(0), locator: `mem://b/${i}` })
const locators = (events: Iterable<{ readonly _tag: string }>) =>
  Array.from(events, (e) => (e as ObjectDeleted).locator)
const take = <A>(stream: Stream.Stream<A>, n: number) => Effect.map(Stream.runCollect(Stream.take(stream, n)), Chunk.toArray)

describe("Events", () => {
  it.scoped("every subscriber receives every event, in publication order", () =>
    Effect.gen(function*() {
      const bus = yield* BackendEvents
      const a = yield* bus.subscribe
      const b = yield* bus.subscribe
      for (let i = 0; i < 5; i++) yield* bus.publish(deleted(i))
      const expected = ["mem://b/0", "mem://b/1", "mem://b/2", "mem://b/3", "mem://b/4"]
      expect(locators(yield* take(a, 5))).toEqual(expected)
      expect(locators(yield* take(b, 5))).toEqual(expected)
    }).pipe(Effect.provide(Events.layer)))

  it.scoped("a subscription sees only events published after subscribe ran", () =>
    Effect.gen(function*() {
      const bus = yield* Events.make
      yield* bus.publish(deleted(0))
      const s = yield* bus.subscribe
      yield* bus.publish(deleted(1))
      expect(locators(yield* take(s, 1))).toEqual(["mem://b/1"])
    }))

  it.scoped("publishing with no subscriber succeeds", () =>
    Effect.gen(function*() {
      const bus = yield* Events.make
      for (let i = 0; i < 10_000; i++) yield* bus.publish(deleted(i))
      const s = yield* bus.subscribe
      yield* bus.publish(deleted(-1))
      expect(locators(yield* take(s, 1))).toEqual(["mem://b/-1"])
    }))

  it.scoped("a slow subscriber never blocks publishers nor makes a fast one miss events", () =>
    Effect.gen(function*() {
      const bus = yield* Events.makeWith({ capacity: 4 })
      const slow = yield* bus.subscribe // never read until the end
      const fast = yield* bus.subscribe
      const received: Array<string> = []
      // 10 rounds of 3 events (under the capacity), the fast subscriber keeping up between rounds.
      for (let round = 0; round < 10; round++) {
        for (let i = 0; i < 3; i++) yield* bus.publish(deleted(round * 3 + i))
        received.push(...locators(yield* take(fast, 3)))
      }
      expect(received).toEqual(Array.from({ length: 30 }, (_, i) => `mem://b/${i}`))
      // The slow subscriber lost the oldest events and keeps the most recent `capacity`.
      expect(locators(yield* take(slow, 4))).toEqual(["mem://b/26", "mem://b/27", "mem://b/28", "mem://b/29"])
    }), 20_000)

  it.effect("closing the bus ends subscriber streams; later publishes are ignored", () =>
    Effect.gen(function*() {
      const busScope = yield* Scope.make()
      const bus = yield* Scope.extend(Events.make, busScope)
      const subscriberScope = yield* Scope.make()
      const stream = yield* Scope.extend(bus.subscribe, subscriberScope)
      const collected = yield* Effect.fork(Stream.runCollect(stream))
      yield* Scope.close(busScope, Exit.void)
      // Would never complete if the stream did not end with the bus.
      expect(Exit.isSuccess(yield* Fiber.await(collected))).toBe(true)
      expect(yield* Effect.exit(bus.publish(deleted(2)))).toEqual(Exit.void)
      yield* Scope.close(subscriberScope, Exit.void)
    }), 20_000)
})
