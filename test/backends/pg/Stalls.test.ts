/**
 * Stalled and crowding writers (issue 15, finding 5): a put holds a
 * connection and a transaction while its caller sends the bytes.
 * - Writers that stall cannot starve readers: with as many stalled puts as
 *   the pool has connections, `head` and a small `get` still answer (only
 *   `maxWriters` of them hold a connection; the rest wait their turn).
 * - A writer idle in its transaction longer than `idleInTransactionTimeout`
 *   loses its session (Timeout), and its connection and permit go back at
 *   once, so the next writer proceeds while it is still stalled.
 * - Many concurrent puts on a small pool with a short connect timeout all
 *   complete: puts wait for a writer's permit, not in the pool's queue,
 *   and acquisitions that time out are retried.
 * The only timing bound is a generous one (5 s while writers stall for 30 s);
 * the p99 is measured by bench/pg.ts.
 */
import { expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as Pg from "pg"
import * as PgLayers from "../../../src/backends/pg/PgLayers.js"
import * as BlobLocator from "../../../src/core/BlobLocator.js"
import { ImmutableObjectStore, MutableObjectStore } from "../../../src/ports/ObjectStore.js"
import { chunked, collect, MiB, randomBytes, sameBytes } from "../../../src/testing/bytes.js"
import { gate } from "../../../src/testing/capabilities.js"
import { freshDatabase, skipReason, usePostgres } from "../../harness/postgres.js"
import { recordFault } from "../../harness/reliability.js"

usePostgres()
const test = gate(it.scopedLive, skipReason())

const at = (path: string) => Either.getOrThrow(BlobLocator.make("pg", "graviton", path))

/** The store over a fresh database of its own; yields the database's URL too. */
const store = (label: string, options: Omit<PgLayers.Options, "url">) =>
  Effect.gen(function*() {
    const db = yield* freshDatabase(label)
    const context = yield* Layer.build(PgLayers.live({ migrate: true, ...options, url: Redacted.make(db.url) }))
    return {
      url: db.url,
      objects: Effect.provide(MutableObjectStore, context),
      run: <A, E>(effect: Effect.Effect<A, E, MutableObjectStore | ImmutableObjectStore>) => Effect.provide(effect, context)
    }
  })

/** Sessions of the database at `url` idle inside a transaction (as seen from a connection of its own). */
const idleInTransaction = (url: string) =>
  Effect.promise(async () => {
    const client = new Pg.Client({ connectionString: url })
    client.on("error", () => {})
    await client.connect()
    try {
      const { rows } = await client.query(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle in transaction'"
      )
      return rows[0].n as number
    } finally {
      await client.end().catch(() => {})
    }
  })

/** Polls until `count` reaches `n` (or 20 s pass); returns the last count. */
const waitFor = (count: Effect.Effect<number>, n: number) =>
  Effect.gen(function*() {
    const deadline = Date.now() + 20_000
    let last = yield* count
    while (last < n && Date.now() < deadline) {
      yield* Effect.sleep("100 millis")
      last = yield* count
    }
    return last
  })

/** A put that sends one chunk and a byte (so it has opened its transaction), then waits for `resume`. */
const stalledPut = (
  objects: Effect.Effect<MutableObjectStore["Type"]>,
  l: BlobLocator.BlobLocator,
  resume: Effect.Effect<void>
) =>
  Effect.flatMap(objects, (s) =>
    Stream.run(
      Stream.concat(chunked(randomBytes(MiB + 1)), Stream.drain(Stream.fromEffect(resume))).pipe(
        Stream.concat(Stream.make(new Uint8Array([1])))
      ),
      s.put(l)
    ))

const elapsed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.map(Effect.timed(effect), ([d, a]) => [Math.round(Duration.toMillis(d)), a] as const)

test("stat and a small get answer within 5 s while as many writers as the pool stall for 30 s", () =>
  Effect.gen(function*() {
    const poolSize = 6
    const maxWriters = 3
    const pg = yield* store("stalled_writers", { poolSize, maxWriters })
    const small = randomBytes(1000)
    yield* pg.run(Effect.flatMap(MutableObjectStore, (s) => s.write(at("small"), small)))
    const writers = yield* Effect.forEach(
      Array.from({ length: poolSize }, (_, i) => i),
      (i) => Effect.fork(stalledPut(pg.objects, at(`stalled/${i}`), Effect.sleep("30 seconds")))
    )
    // `maxWriters` of them hold a transaction; the other writers wait for a permit.
    const holding = yield* waitFor(idleInTransaction(pg.url), maxWriters)
    const bound = "5 seconds"
    const [statMs, stat] = yield* elapsed(
      pg.run(Effect.flatMap(ImmutableObjectStore, (s) => s.head(at("small")))).pipe(Effect.timeoutOption(bound))
    )
    const [getMs, got] = yield* elapsed(
      pg.run(Effect.flatMap(ImmutableObjectStore, (s) => collect(s.get(at("small"))))).pipe(Effect.timeoutOption(bound))
    )
    expect(Option.map(Option.flatten(stat), (st) => st.size)).toEqual(Option.some(1000))
    expect(Option.isSome(got) && sameBytes(got.value, small)).toBe(true)
    // Still only the bound's worth of writers hold connections.
    const held = yield* idleInTransaction(pg.url)
    expect(held).toBe(maxWriters)
    yield* Fiber.interruptAll(writers)
    for (let i = 0; i < poolSize; i++) {
      const left = yield* pg.run(Effect.flatMap(ImmutableObjectStore, (s) => s.head(at(`stalled/${i}`))))
      expect(Option.isNone(left)).toBe(true)
    }
    recordFault({
      area: "pg",
      fault: `${poolSize} puts stalled mid-stream for 30 s on a pool of ${poolSize}`,
      expected: "head and a small get answer (within 5 s); at most maxWriters connections held by writers; nothing visible",
      observed: `head ${statMs} ms, get ${getMs} ms; ${Math.max(holding, held)} of ${poolSize} connections held by writers`
    })
  }), 60_000)

test("a writer idle in its transaction past the timeout loses it, and the next writer proceeds meanwhile", () =>
  Effect.gen(function*() {
    const pg = yield* store("idle_writer", { poolSize: 2, maxWriters: 1, idleInTransactionTimeout: "1 second" })
    const resume = yield* Deferred.make<void>()
    const first = yield* Effect.fork(Effect.exit(stalledPut(pg.objects, at("stalled"), Deferred.await(resume))))
    yield* waitFor(idleInTransaction(pg.url), 1)
    // The only permit is the stalled writer's until the server ends its session.
    const bytes = randomBytes(2 * MiB + 5)
    const second = yield* pg.run(Effect.flatMap(MutableObjectStore, (s) => Stream.run(chunked(bytes), s.put(at("next"))))).pipe(
      Effect.timeoutOption("20 seconds")
    )
    expect(Option.map(second, (st) => st.size)).toEqual(Option.some(bytes.length))
    yield* Deferred.succeed(resume, undefined)
    const exit = yield* Fiber.join(first)
    const reason = Exit.match(exit, {
      onSuccess: () => "success",
      onFailure: (cause) => Option.match(Cause.failureOption(cause), { onNone: () => Cause.pretty(cause), onSome: (e) => e.reason })
    })
    expect(reason).toBe("Timeout")
    const left = yield* pg.run(Effect.flatMap(ImmutableObjectStore, (s) => s.head(at("stalled"))))
    expect(Option.isNone(left)).toBe(true)
    recordFault({
      area: "pg",
      fault: "a put idle in its transaction for longer than idleInTransactionTimeout (1 s)",
      expected: "the stalled put fails with Timeout; its connection and permit are released while it is still stalled",
      observed: `stalled put: ${reason}; next put with maxWriters 1: ${Option.isSome(second) ? "completed" : "did not complete"}`
    })
  }), 60_000)

test("many concurrent puts on a small pool with a short connect timeout all complete", () =>
  Effect.gen(function*() {
    const pg = yield* store("crowd", { poolSize: 4, connectTimeout: "1 second" })
    const big = randomBytes(MiB + 1)
    const small = randomBytes(100)
    // Each large put holds its transaction ~100 ms longer than it takes to send the bytes.
    const large = (i: number) =>
      stalledPut(pg.objects, at(`crowd/large/${i}`), Effect.sleep("100 millis")).pipe(Effect.either)
    const tiny = (i: number) =>
      pg.run(Effect.flatMap(MutableObjectStore, (s) => s.write(at(`crowd/small/${i}`), small))).pipe(Effect.either)
    const results = yield* Effect.all(
      [...Array.from({ length: 60 }, (_, i) => large(i)), ...Array.from({ length: 100 }, (_, i) => tiny(i))],
      { concurrency: "unbounded" }
    )
    const failures = results.filter(Either.isLeft).map((e) => e.left.reason)
    expect(failures).toEqual([])
    const sizes = yield* pg.run(Effect.flatMap(ImmutableObjectStore, (s) =>
      Effect.forEach(Array.from({ length: 60 }, (_, i) => i), (i) => Effect.map(s.head(at(`crowd/large/${i}`)), Option.map((st) => st.size)))))
    expect(sizes.every((o) => Option.isSome(o) && o.value === big.length + 1)).toBe(true)
  }), 120_000)

test("a put waiting for a writer's permit can be interrupted", () =>
  Effect.gen(function*() {
    const pg = yield* store("permit_wait", { poolSize: 2, maxWriters: 1 })
    const holder = yield* Effect.fork(stalledPut(pg.objects, at("holder"), Effect.never))
    yield* waitFor(idleInTransaction(pg.url), 1)
    const waiter = yield* Effect.fork(stalledPut(pg.objects, at("waiter"), Effect.void))
    yield* Effect.sleep("200 millis")
    // The holder still holds the only permit: the interruption must not wait for it.
    const interrupted = yield* Fiber.interrupt(waiter).pipe(Effect.timeoutOption("5 seconds"))
    expect(Option.isSome(interrupted) && Exit.isInterrupted(interrupted.value)).toBe(true)
    yield* Fiber.interrupt(holder)
    const left = yield* pg.run(Effect.flatMap(ImmutableObjectStore, (s) => s.head(at("waiter"))))
    expect(Option.isNone(left)).toBe(true)
  }), 60_000)
