/**
 * Who is writing a tus upload, kept in the store's KeyValueStore so that
 * every gateway process over one store (PostgreSQL, S3+PostgreSQL) sees it:
 * a lease record `uploads/<id>/lease` holding a random owner token and the
 * time it runs out. A PATCH (or termination) takes it with compareAndSet
 * (absent, or run out), renews it while it runs, and removes it when done;
 * a request that finds it held gets 423. A holder that crashed stops
 * renewing, so its lease runs out after `duration` and the upload can be
 * resumed elsewhere. A holder that fails to renew (the lease was taken
 * over after it ran out) is cut at once, so two writers never overlap.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import { randomUUID } from "node:crypto"
import type { KeyValueStore } from "../ports/KeyValueStore.js"
import { fail, fromReason, HttpFailure } from "./responses.js"

/** Where the lease of upload `id` lives (Uploads' own listing ignores it). */
export const leaseKey = (id: string) => `uploads/${id}/lease`

const Lease = Schema.Struct({ owner: Schema.String, until: Schema.NonNegativeInt })
type Lease = typeof Lease.Type
const decodeLease = Schema.decodeUnknownEither(Schema.parseJson(Lease))
const encodeLease = (l: Lease) => new TextEncoder().encode(JSON.stringify(l))

/** The lease's record, or undefined when the bytes do not parse (treated as run out). */
export const parse = (raw: Uint8Array): Lease | undefined =>
  Either.getOrUndefined(decodeLease(new TextDecoder().decode(raw)))

const tusHeaders = { "tus-resumable": "1.0.0" }

/**
 * Runs `body` holding the lease of upload `id`: 423 when another request
 * (in any process) holds it. The lease lasts `duration` and is renewed
 * every third of it while `body` runs.
 */
export const withLease = <A, E, R>(
  kv: KeyValueStore["Type"],
  id: string,
  duration: Duration.Duration,
  body: Effect.Effect<A, E, R>
): Effect.Effect<A, E | HttpFailure, R> => {
  const key = leaseKey(id)
  const owner = randomUUID()
  const millis = Duration.toMillis(duration)
  const busy = fail(423, `upload ${id} is being written by another request`, tusHeaders)
  // The bytes stored now: renewals and the release compare against them.
  let held: Uint8Array | undefined
  const take = Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    const current = yield* Effect.mapError(kv.get(key), fromReason)
    if (Option.isSome(current)) {
      const lease = parse(current.value)
      if (lease !== undefined && lease.until >= now) return yield* busy
    }
    const next = encodeLease({ owner, until: now + millis })
    const ok = yield* Effect.mapError(kv.compareAndSet(key, current, Option.some(next)), fromReason)
    if (!ok) return yield* busy
    held = next
  })
  // Uninterruptible: a renewal stored but not yet noted in `held` (the body ended meanwhile) would make the
  // release miss, and the lease would linger until it runs out.
  const renew = Effect.uninterruptible(Effect.gen(function*() {
    const next = encodeLease({ owner, until: (yield* Clock.currentTimeMillis) + millis })
    const ok = yield* Effect.mapError(kv.compareAndSet(key, Option.some(held!), Option.some(next)), fromReason)
    if (!ok) {
      return yield* Effect.fail(new HttpFailure({ status: 423, message: `upload ${id} was taken over by another request`, headers: tusHeaders }))
    }
    held = next
  }))
  const renewing = Effect.zipRight(
    Effect.sleep(Duration.millis(millis / 3)),
    Effect.repeat(renew, Schedule.spaced(Duration.millis(millis / 3)))
  ).pipe(Effect.zipRight(Effect.never))
  const release = Effect.suspend(() =>
    held === undefined ? Effect.void : Effect.ignore(kv.compareAndSet(key, Option.some(held), Option.none()))
  )
  return Effect.acquireUseRelease(take, () => Effect.raceFirst(body, renewing), () => release)
}
