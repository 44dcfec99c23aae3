/**
 * RangeTracker on top of any KeyValueStore, so that every KV backend
 * (memory, LevelDB, PostgreSQL) gets resumable-upload bookkeeping for free.
 *
 * The normalized RangeSet of upload `id` lives under `ranges/<id>`, encoded
 * compactly (see `encodeRanges`). `merge` is a read / merge / compareAndSet
 * loop: never a bare get-then-put, so concurrent merges never lose a span.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import { MetadataError, toPortError } from "../core/Errors.js"
import * as KvKey from "../core/KvKey.js"
import * as RangeSet from "../core/RangeSet.js"
import { KeyValueStore } from "../ports/KeyValueStore.js"
import { RangeTracker } from "../ports/RangeTracker.js"
import * as TracingPorts from "./TracingPorts.js"

/** Backend name in errors raised here (errors of the underlying store keep their own). */
const BACKEND = "kv"

/** Namespace of range records in the key-value store. */
export const NAMESPACE = "ranges/"

/** Format tag, first byte of every record, so that the encoding can evolve. */
const VERSION = 1

/** The KV key of upload `id`, or InvalidInput when `id` (or the whole key) breaks the KvKey rules. */
export const keyOf = (method: string, id: string): Either.Either<string, MetadataError> =>
  Either.mapLeft(
    Either.flatMap(KvKey.validate(id), () => KvKey.validate(NAMESPACE + id)),
    toPortError(MetadataError, BACKEND, method)
  )

const pushVarint = (out: Array<number>, n: number): void => {
  // Division, not bit shifts: offsets go up to 2^53, past 32-bit operators.
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80)
    n = Math.floor(n / 0x80)
  }
  out.push(n)
}

/**
 * Encodes a normalized set: a version byte, then per span two LEB128
 * varints, the gap since the previous span's end and the span's length.
 * A typical upload (a few spans) takes a handful of bytes.
 */
export const encodeRanges = (set: RangeSet.RangeSet): Uint8Array => {
  const out: Array<number> = [VERSION]
  let cursor = 0
  for (const s of set) {
    pushVarint(out, s.start - cursor)
    pushVarint(out, s.end - s.start)
    cursor = s.end
  }
  return Uint8Array.from(out)
}

/** Decodes `encodeRanges`; undefined when the bytes are not a valid normalized set. */
export const decodeRanges = (bytes: Uint8Array): RangeSet.RangeSet | undefined => {
  if (bytes.length === 0 || bytes[0] !== VERSION) return undefined
  let i = 1
  const next = (): number | undefined => {
    let value = 0
    let scale = 1
    while (i < bytes.length) {
      const b = bytes[i++]!
      value += (b & 0x7f) * scale
      if (!Number.isSafeInteger(value)) return undefined
      if ((b & 0x80) === 0) return value
      scale *= 0x80
    }
    return undefined
  }
  const spans: Array<RangeSet.Span> = []
  let cursor = 0
  while (i < bytes.length) {
    const gap = next()
    const length = next()
    if (gap === undefined || length === undefined) return undefined
    // Normalized: spans are non-empty and never touch (a zero gap only before the first).
    if (length === 0 || (gap === 0 && spans.length > 0)) return undefined
    const start = cursor + gap
    const end = start + length
    if (!Number.isSafeInteger(end)) return undefined
    spans.push(new RangeSet.Span({ start, end }))
    cursor = end
  }
  return spans
}

const corrupted = (method: string, key: string) =>
  new MetadataError({
    reason: "Corrupted",
    backend: BACKEND,
    method,
    description: `the value under ${JSON.stringify(key)} is not an encoded RangeSet`
  })

/** What one step of `modifyKey` decided: the value to write (None = delete), or nothing to write. */
export interface Modification<A> {
  readonly write: Option.Option<Option.Option<Uint8Array>>
  readonly result: A
}

/**
 * Atomic read-modify-write of one key: reads it, lets `f` compute the next
 * value, and writes it with compareAndSet, starting over when another
 * writer got there first.
 *
 * There is no attempt cap: a failed compareAndSet means another writer's
 * compareAndSet succeeded, so every round makes global progress and a
 * writer can only lose as many times as there are writes racing with it.
 * A short randomized yield after each loss spreads out fibers that would
 * otherwise keep colliding in the same order (livelock in lockstep); a
 * remote store already separates attempts by a round trip.
 */
export const modifyKey = <A, E, R>(
  kv: KeyValueStore["Type"],
  key: string,
  f: (current: Option.Option<Uint8Array>) => Effect.Effect<Modification<A>, E, R>
): Effect.Effect<A, MetadataError | E, R> => {
  const attempt = (n: number): Effect.Effect<A, MetadataError | E, R> =>
    Effect.flatMap(kv.get(key), (current) =>
      Effect.flatMap(f(current), ({ result, write }) =>
        Option.match(write, {
          onNone: () => Effect.succeed(result),
          onSome: (next) =>
            Effect.flatMap(kv.compareAndSet(key, current, next), (ok) =>
              ok ? Effect.succeed(result) : Effect.zipRight(backoff(n), Effect.suspend(() => attempt(n + 1))))
        })))
  return attempt(0)
}

/** Between 0 and 2^min(n, 6) - 1 scheduler yields, chosen at random. */
const backoff = (n: number): Effect.Effect<void> =>
  Effect.flatMap(Random.nextIntBetween(0, 1 << Math.min(n + 1, 6)), (yields) =>
    yields === 0 ? Effect.void : Effect.repeatN(Effect.yieldNow(), yields - 1))

/** A RangeTracker over the KeyValueStore in the context. */
export const make: Effect.Effect<RangeTracker["Type"], never, KeyValueStore> = Effect.gen(function*() {
  const kv = yield* KeyValueStore

  const decode = (method: string, key: string, value: Option.Option<Uint8Array>) =>
    Option.match(value, {
      onNone: () => Effect.succeed(RangeSet.empty),
      onSome: (bytes) => {
        const set = decodeRanges(bytes)
        return set === undefined ? Effect.fail(corrupted(method, key)) : Effect.succeed(set)
      }
    })

  const current = (id: string) =>
    Effect.flatMap(keyOf("current", id), (key) => Effect.flatMap(kv.get(key), (value) => decode("current", key, value)))

  const merge = (id: string, span: RangeSet.Span) =>
    Effect.gen(function*() {
      const key = yield* keyOf("merge", id)
      // Re-checked: a Span built without `RangeSet.span` may be empty or reversed.
      const s = yield* Either.mapLeft(
        RangeSet.span(span?.start, span?.end),
        toPortError(MetadataError, BACKEND, "merge")
      )
      return yield* modifyKey(kv, key, (value) =>
        Effect.map(decode("merge", key, value), (set): Modification<RangeSet.RangeSet> => {
          // Already covered: skip the write, a re-sent chunk costs one read.
          if (RangeSet.contains(set, s)) return { result: set, write: Option.none() }
          const next = RangeSet.merge(set, s)
          return { result: next, write: Option.some(Option.some(encodeRanges(next))) }
        }))
    })

  const clear = (id: string) => Effect.flatMap(keyOf("clear", id), (key) => kv.delete(key))

  return TracingPorts.rangeTracker(BACKEND, RangeTracker.of({ current, merge, clear }))
})

/** RangeTracker backed by the KeyValueStore in the context. */
export const layer: Layer.Layer<RangeTracker, never, KeyValueStore> = Layer.effect(RangeTracker, make)
