/**
 * Fault injection for tests, after OpenDAL's `ChaosLayer`: a wrapper around
 * any object store or KeyValueStore that, deterministically from a seed,
 * fails calls with transient errors (Unavailable, Throttled, Timeout), delays
 * them, and hands reads back truncated or with one bit flipped. Code above
 * the wrapped store (the CAS, uploads, an app) must then retry what is
 * transient, never return a corrupted body as data, and leave nothing
 * visible from a put that failed.
 *
 *   const objects = Chaos.layerObjectStore({ seed: 7, failure: 0.2, corruption: 0.1 })
 *     .pipe(Layer.provide(MemoryObjectStore.layer))
 *
 * Where a fault strikes, so that the failure is one a real store can give:
 * a failed call never reached the store (a refused or throttled request),
 * except a streaming `put`, which fails when its 1st, 2nd or 3rd chunk
 * arrives, or at its end if it has fewer (the bytes before it were sent; the
 * store's own put sees its input fail and must discard them). `get` fails before its first byte; a
 * corrupted `get` is cut short or has one bit flipped in its first
 * non-empty chunk (copied first: the store's buffers are never touched).
 *
 * Determinism: every decision is a function of the seed, the operation kind,
 * the key or locator, and how many times that kind was called on that key
 * before. The same calls give the same faults whatever the interleaving of
 * concurrent calls on other keys.
 */
import * as Channel from "effect/Channel"
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Sink from "effect/Sink"
import * as Stream from "effect/Stream"
import * as BlobLocator from "../core/BlobLocator.js"
import { type ErrorReason, MetadataError, ObjectStoreError } from "../core/Errors.js"
import { KeyValueStore, type KvWrite } from "../ports/KeyValueStore.js"
import {
  ImmutableObjectStore,
  type ImmutableObjectStoreShape,
  MutableObjectStore,
  type MutableObjectStoreShape
} from "../ports/ObjectStore.js"

/**
 * What a call does, for the failure probabilities:
 *
 * | kind     | object store               | KeyValueStore                  |
 * | -------- | -------------------------- | ------------------------------ |
 * | `head`   | head                       |                                |
 * | `get`    | get (also corrupted)       | get                            |
 * | `list`   | list                       | list                           |
 * | `put`    | put (the streaming sink)   |                                |
 * | `write`  | write, copy, move          | put, compareAndSet, commit     |
 * | `delete` | delete                     | delete                         |
 */
export type Kind = "head" | "get" | "list" | "put" | "write" | "delete"

/** The transient reasons a failure is drawn from. */
export type TransientReason = Extract<ErrorReason, "Unavailable" | "Throttled" | "Timeout">

/** How a corrupted read is damaged. */
export type Corruption = "truncate" | "bitflip"

/** Settings of the chaos wrapper; every fault is off unless given. */
export interface Options {
  /** Seed of every decision (any integer). */
  readonly seed: number
  /** Probability (0..1) that a call fails: one for every kind, or per kind (absent kinds never fail). */
  readonly failure?: number | Partial<Record<Kind, number>> | undefined
  /** Reasons a failure is drawn from, uniformly (default all three). */
  readonly reasons?: ReadonlyArray<TransientReason> | undefined
  /** Delay added before every call, drawn uniformly in [min, max] (default none); it sleeps on the Clock, so test with the live clock (`it.live`). */
  readonly latency?: { readonly min?: Duration.DurationInput; readonly max: Duration.DurationInput } | undefined
  /** Probability (0..1) that a successful object `get` returns a damaged body (default 0). */
  readonly corruption?: number | undefined
  /** How a damaged body is damaged, drawn uniformly (default both). */
  readonly corruptions?: ReadonlyArray<Corruption> | undefined
}

/** What a chaos wrapper injected so far (mutable counters, for tests to report). */
export interface Stats {
  /** Calls seen, faulted or not. */
  calls: number
  /** Failures injected, by reason. */
  readonly failures: Record<TransientReason, number>
  /** Failures injected, by kind. */
  readonly failuresByKind: Record<Kind, number>
  /** Reads cut short. */
  truncated: number
  /** Reads with one bit flipped. */
  flipped: number
  /** Total delay added, in milliseconds. */
  delayedMillis: number
}

/** Total failures injected. */
export const failures = (stats: Stats): number =>
  stats.failures.Unavailable + stats.failures.Throttled + stats.failures.Timeout

/** A source of faults: wraps stores, and counts what it injected in `stats`. */
export interface Chaos {
  readonly options: Options
  readonly stats: Stats
  /** While false, calls pass through untouched (to set up or check a store's final state); default true. */
  active: boolean
  /** The object store, faulty. */
  readonly objectStore: (store: MutableObjectStoreShape) => MutableObjectStoreShape
  /** The read-only object store, faulty. */
  readonly immutableObjectStore: (store: ImmutableObjectStoreShape) => ImmutableObjectStoreShape
  /** The key-value store, faulty. */
  readonly keyValueStore: (store: KeyValueStore["Type"]) => KeyValueStore["Type"]
}

const ALL_REASONS: ReadonlyArray<TransientReason> = ["Unavailable", "Throttled", "Timeout"]
const ALL_CORRUPTIONS: ReadonlyArray<Corruption> = ["truncate", "bitflip"]

/** FNV-1a over the text, mixed with the seed: the seed of one call's draws. */
const hash = (seed: number, text: string): number => {
  let h = (0x811c9dc5 ^ seed) >>> 0
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h
}

/** mulberry32: a small, good-enough generator of numbers in [0, 1). */
const generator = (seed: number) => {
  let state = seed >>> 0
  return (): number => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const pick = <A>(items: ReadonlyArray<A>, r: number): A => items[Math.min(items.length - 1, Math.floor(r * items.length))]!

/** What happens to one call, drawn once when it starts. */
interface Decision {
  readonly delay: number
  readonly failure: Option.Option<TransientReason>
  /** Which chunk a failing put fails at (0..2). */
  readonly atChunk: number
  readonly corruption: Option.Option<Corruption>
  /** Where in its chunk the damage goes, in [0, 1). */
  readonly where: number
  readonly bit: number
}

const newStats = (): Stats => ({
  calls: 0,
  failures: { Unavailable: 0, Throttled: 0, Timeout: 0 },
  failuresByKind: { head: 0, get: 0, list: 0, put: 0, write: 0, delete: 0 },
  truncated: 0,
  flipped: 0,
  delayedMillis: 0
})

/** Damages the first non-empty chunk of a body: cut it (and end the body there) or flip one bit of a copy. */
const damage = <E>(body: Stream.Stream<Uint8Array, E>, how: Corruption, d: Decision, stats: Stats): Stream.Stream<Uint8Array, E> =>
  Stream.suspend(() => {
    let done = false
    let cut = false
    return body.pipe(
      Stream.takeWhile(() => !cut),
      Stream.map((bytes) => {
        if (done || bytes.length === 0) return bytes
        done = true
        const at = Math.floor(d.where * bytes.length)
        if (how === "truncate") {
          cut = true
          stats.truncated++
          return bytes.slice(0, at)
        }
        const copy = Uint8Array.from(bytes)
        copy[at] = copy[at]! ^ (1 << d.bit)
        stats.flipped++
        return copy
      })
    )
  })

/**
 * `sink`, failing when chunk `at` of its input arrives or, for a shorter
 * input, when the input ends: the chunks before go to `sink`, then it sees
 * its input fail and must discard what it got, never publish it.
 */
const failingAt = <A, E>(
  sink: Sink.Sink<A, Uint8Array, never, E>,
  at: number,
  error: () => E
): Sink.Sink<A, Uint8Array, never, E> => {
  type Input = Chunk.Chunk<Uint8Array>
  let seen = 0
  const gate: Channel.Channel<Input, Input, E, never, unknown, unknown> = Channel.readWithCause({
    onInput: (input: Input) => {
      const room = at - seen
      seen += Chunk.size(input)
      return room >= Chunk.size(input)
        ? Channel.zipRight(Channel.write(input), Channel.suspend(() => gate))
        : Channel.zipRight(Channel.write(Chunk.take(input, room)), Channel.suspend(() => Channel.fail(error())))
    },
    onFailure: (cause) => Channel.failCause(cause),
    onDone: () => Channel.suspend(() => Channel.fail(error()))
  })
  // The sink reads a failing input through its own read's failure path (a put aborts).
  const downstream = Sink.toChannel(sink) as unknown as Channel.Channel<Chunk.Chunk<never>, Input, E, E, A, unknown>
  return Sink.fromChannel(Channel.pipeTo(gate, downstream))
}

/** A source of faults with its own counters. */
export const make = (options: Options): Chaos => {
  const stats = newStats()
  // Built first so that `decide` reads the `active` flag callers set on it.
  const chaos: Chaos = {
    options,
    stats,
    active: true,
    objectStore: (store) => objectStore(store),
    immutableObjectStore: (store) => immutableObjectStore(store),
    keyValueStore: (store) => keyValueStore(store)
  }
  const reasons = options.reasons !== undefined && options.reasons.length > 0 ? options.reasons : ALL_REASONS
  const corruptions = options.corruptions !== undefined && options.corruptions.length > 0
    ? options.corruptions
    : ALL_CORRUPTIONS
  const minDelay = options.latency ? Duration.toMillis(options.latency.min ?? 0) : 0
  const maxDelay = options.latency ? Duration.toMillis(options.latency.max) : 0
  const probability = (kind: Kind): number =>
    typeof options.failure === "number" ? options.failure : options.failure?.[kind] ?? 0
  // Calls so far per kind and subject: the n in "the n-th get of this locator".
  const seen = new Map<string, number>()

  const calm: Decision = { delay: 0, failure: Option.none(), atChunk: 0, corruption: Option.none(), where: 0, bit: 0 }

  const decide = (kind: Kind, subject: string): Decision => {
    if (!chaos.active) return calm
    const id = `${kind}\u0000${subject}`
    const n = seen.get(id) ?? 0
    seen.set(id, n + 1)
    stats.calls++
    const next = generator(hash(options.seed, `${id}\u0000${n}`))
    const delay = minDelay + next() * (maxDelay - minDelay)
    const fails = next() < probability(kind)
    const reason = pick(reasons, next())
    const atChunk = Math.floor(next() * 3)
    const corrupts = kind === "get" && next() < (options.corruption ?? 0)
    const how = pick(corruptions, next())
    return {
      delay,
      failure: fails ? Option.some(reason) : Option.none(),
      atChunk,
      corruption: corrupts ? Option.some(how) : Option.none(),
      where: next(),
      bit: Math.floor(next() * 8)
    }
  }

  const describe = (kind: Kind, subject: string, reason: TransientReason) =>
    `${reason} injected by the chaos layer (seed ${options.seed}) into ${kind} of ${subject}`

  const count = (kind: Kind, reason: TransientReason) => {
    stats.failures[reason]++
    stats.failuresByKind[kind]++
  }

  const sleep = (d: Decision): Effect.Effect<void> =>
    d.delay <= 0 ? Effect.void : Effect.suspend(() => {
      stats.delayedMillis += d.delay
      return Effect.sleep(Duration.millis(d.delay))
    })

  const objectError = (kind: Kind, method: string, subject: string, reason: TransientReason) => {
    count(kind, reason)
    return new ObjectStoreError({ reason, backend: "chaos", method, description: describe(kind, subject, reason) })
  }

  const metadataError = (kind: Kind, method: string, subject: string, reason: TransientReason) => {
    count(kind, reason)
    return new MetadataError({ reason, backend: "chaos", method, description: describe(kind, subject, reason) })
  }

  /** An effect behind the chaos: delayed, then failed before reaching the store, or run. */
  const call = <A, E>(
    kind: Kind,
    method: string,
    subject: string,
    fail: (kind: Kind, method: string, subject: string, reason: TransientReason) => E,
    effect: Effect.Effect<A, E>
  ): Effect.Effect<A, E> =>
    Effect.suspend(() => {
      const d = decide(kind, subject)
      return Effect.zipRight(
        sleep(d),
        Option.match(d.failure, {
          onNone: () => effect,
          onSome: (reason) => Effect.suspend(() => Effect.fail(fail(kind, method, subject, reason)))
        })
      )
    })

  /** A stream behind the chaos: delayed, failed before its first element, or (a get) damaged. */
  const stream = <A, E>(
    kind: Kind,
    method: string,
    subject: string,
    fail: (kind: Kind, method: string, subject: string, reason: TransientReason) => E,
    body: Stream.Stream<A, E>,
    corrupt: (body: Stream.Stream<A, E>, how: Corruption, d: Decision) => Stream.Stream<A, E>
  ): Stream.Stream<A, E> =>
    Stream.unwrap(Effect.suspend(() => {
      const d = decide(kind, subject)
      return Effect.as(
        sleep(d),
        Option.match(d.failure, {
          onSome: (reason) => Stream.suspend(() => Stream.fail(fail(kind, method, subject, reason))),
          onNone: () => Option.match(d.corruption, { onNone: () => body, onSome: (how) => corrupt(body, how, d) })
        })
      )
    }))

  const noDamage = <A, E>(body: Stream.Stream<A, E>) => body

  const immutableObjectStore = (store: ImmutableObjectStoreShape): ImmutableObjectStoreShape => ({
    capabilities: store.capabilities,
    head: (locator) => call("head", "head", BlobLocator.render(locator), objectError, store.head(locator)),
    list: (prefix) => stream("list", "list", prefix.toString(), objectError, store.list(prefix), noDamage),
    get: (locator, range) =>
      stream("get", "get", BlobLocator.render(locator), objectError, store.get(locator, range), (body, how, d) =>
        damage(body, how, d, stats))
  })

  const objectStore = (store: MutableObjectStoreShape): MutableObjectStoreShape => ({
      ...immutableObjectStore(store),
      put: (locator, options) =>
        Sink.unwrap(Effect.suspend(() => {
          const subject = BlobLocator.render(locator)
          const d = decide("put", subject)
          const sink = store.put(locator, options)
          return Effect.as(
            sleep(d),
            Option.match(d.failure, {
              onNone: () => sink,
              onSome: (reason) => failingAt(sink, d.atChunk, () => objectError("put", "put", subject, reason))
            })
          )
        })),
      write: (locator, bytes, options) =>
        call("write", "write", BlobLocator.render(locator), objectError, store.write(locator, bytes, options)),
      delete: (locator) => call("delete", "delete", BlobLocator.render(locator), objectError, store.delete(locator)),
      copy: (source, destination) =>
        call("write", "copy", BlobLocator.render(destination), objectError, store.copy(source, destination)),
      move: (source, destination) =>
        call("write", "move", BlobLocator.render(destination), objectError, store.move(source, destination))
  })

  const subjectOf = (writes: ReadonlyArray<KvWrite>, keys: ReadonlyArray<{ readonly key: string }>) =>
    [...writes.map((w) => w.key), ...keys.map((c) => c.key)].join(",")

  const keyValueStore = (store: KeyValueStore["Type"]): KeyValueStore["Type"] => ({
    get: (key) => call("get", "get", key, metadataError, store.get(key)),
    put: (key, value) => call("write", "put", key, metadataError, store.put(key, value)),
    delete: (key) => call("delete", "delete", key, metadataError, store.delete(key)),
    list: (prefix) => stream("list", "list", prefix, metadataError, store.list(prefix), noDamage),
    compareAndSet: (key, expected, next) =>
      call("write", "compareAndSet", key, metadataError, store.compareAndSet(key, expected, next)),
    commit: (checks, writes) =>
      call("write", "commit", subjectOf(writes, checks), metadataError, store.commit(checks, writes))
  })

  return chaos
}

const source = (chaos: Chaos | Options): Chaos => ("stats" in chaos ? chaos : make(chaos))

/**
 * The MutableObjectStore of the context, faulty, as both MutableObjectStore
 * and ImmutableObjectStore (so every user of the store sees the same faults):
 * `Chaos.layerObjectStore(options).pipe(Layer.provide(MemoryObjectStore.layer))`.
 */
export const layerObjectStore = (
  chaos: Chaos | Options
): Layer.Layer<MutableObjectStore | ImmutableObjectStore, never, MutableObjectStore> =>
  Layer.effectContext(Effect.map(MutableObjectStore, (store) => {
    const faulty = source(chaos).objectStore(store)
    return Context.make(MutableObjectStore, faulty).pipe(Context.add(ImmutableObjectStore, faulty))
  }))

/** The KeyValueStore of the context, faulty. */
export const layerKeyValueStore = (chaos: Chaos | Options): Layer.Layer<KeyValueStore, never, KeyValueStore> =>
  Layer.effect(KeyValueStore, Effect.map(KeyValueStore, (store) => source(chaos).keyValueStore(store)))
