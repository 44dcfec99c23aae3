/**
 * CasBlobStore over PostgreSQL finalizes a put in ONE transaction (the
 * UnitOfWork port): a failure anywhere in claim-move-publish-replica leaves
 * no object at the content address, no `blobs/<key>` record and no replica
 * entry, and a retry stores the blob; concurrent puts of the same content
 * wait on the row lock of an uncommitted claim and then deduplicate (or
 * take over when it rolls back).
 */
import { expect } from "@effect/vitest"
import { SqlClient } from "@effect/sql/SqlClient"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { createHash } from "node:crypto"
import * as BinaryKey from "../../../src/core/BinaryKey.js"
import * as BlobLocator from "../../../src/core/BlobLocator.js"
import { type ErrorReason, MetadataError } from "../../../src/core/Errors.js"
import { BlobStore } from "../../../src/ports/BlobStore.js"
import { KeyValueStore } from "../../../src/ports/KeyValueStore.js"
import { MutableObjectStore } from "../../../src/ports/ObjectStore.js"
import { ReplicaIndex } from "../../../src/ports/ReplicaIndex.js"
import { UnitOfWork } from "../../../src/ports/UnitOfWork.js"
import * as BlobMeta from "../../../src/blobs/BlobMeta.js"
import * as CasBlobStore from "../../../src/blobs/CasBlobStore.js"
import { chunked, collect, randomBytes, sameBytes, utf8 } from "../../../src/testing/bytes.js"
import { describePg, pgLayer, usePostgres } from "../../harness/postgres.js"

usePostgres()

const options = { scheme: "pg", bucket: "blobs" } as const
const layer = CasBlobStore.layer(options).pipe(Layer.provideMerge(pgLayer("cas_tx")))

type Services = MutableObjectStore | KeyValueStore | ReplicaIndex | UnitOfWork

/** Fresh content, its key, its `blobs/<key>` record key and its content address. */
const content = (size: number) => {
  const bytes = randomBytes(size, Math.floor(Math.random() * 1e9))
  const digest = createHash("sha256").update(bytes).digest("hex")
  const key = Either.getOrThrow(BinaryKey.make("sha256", digest, size))
  const address = Either.getOrThrow(BlobLocator.make("pg", "blobs", BlobMeta.contentPath(key)))
  return { bytes, digest, key, blobKey: BlobMeta.blobKey(key), address }
}

const injected = (reason: ErrorReason, method: string) =>
  new MetadataError({ reason, backend: "test", method, description: "injected failure" })

/** The replica index of the context whose next `add` fails with `reason`; `fired()` counts the failures. */
const replicasFailingOnce = (reason: ErrorReason) =>
  Effect.map(ReplicaIndex, (inner) => {
    let armed = true
    let fired = 0
    const index = ReplicaIndex.of({
      ...inner,
      add: (key, locator) =>
        Effect.suspend(() => {
          if (!armed) return inner.add(key, locator)
          armed = false
          fired++
          return Effect.fail(injected(reason, "add"))
        })
    })
    return { index, fired: () => fired }
  })

/** The key-value store of the context whose next publication (a `blobs/` record replaced by another, alone or with a counter shard) fails. */
const kvFailingPublishOnce = Effect.map(KeyValueStore, (inner) => {
  let armed = true
  let fired = 0
  const kv = KeyValueStore.of({
    ...inner,
    compareAndSet: (key, expected, next) =>
      Effect.suspend(() => {
        if (!armed || !key.startsWith(BlobMeta.BLOBS) || Option.isNone(expected) || Option.isNone(next)) {
          return inner.compareAndSet(key, expected, next)
        }
        armed = false
        fired++
        return Effect.fail(injected("Unknown", "compareAndSet"))
      }),
    // A publication that changes the space counters goes through commit (record and counter shard together).
    commit: (checks, writes) =>
      Effect.suspend(() => {
        const publishes = checks.some((c) =>
          c.key.startsWith(BlobMeta.BLOBS) && Option.isSome(c.expected) && writes.some((w) => w.key === c.key && w._tag === "Put")
        )
        if (!armed || !publishes) return inner.commit(checks, writes)
        armed = false
        fired++
        return Effect.fail(injected("Unknown", "commit"))
      })
  })
  return { kv, fired: () => fired }
})

const objectRows = Effect.flatMap(SqlClient, (sql) =>
  sql<{ path: string; content_id: string }>`
    SELECT path, content_id::text AS content_id FROM objects WHERE scheme = 'pg' AND bucket = 'blobs' ORDER BY path`)

/** Nothing of `c` is stored: no record, no object at its address (or anywhere else), no staging object, no replica. */
const expectNothingStored = (c: ReturnType<typeof content>) =>
  Effect.gen(function*() {
    const kv = yield* KeyValueStore
    const objects = yield* MutableObjectStore
    const replicas = yield* ReplicaIndex
    expect(yield* kv.get(c.blobKey)).toEqual(Option.none())
    expect(Option.isNone(yield* objects.head(c.address))).toBe(true)
    const rows = yield* objectRows
    expect(rows.filter((r) => r.path.includes(c.digest))).toEqual([])
    expect(rows.filter((r) => r.path.startsWith("staging/"))).toEqual([])
    expect(yield* replicas.replicas(c.key)).toEqual([])
  })

/** A retry of the put stores `c` once, at its address, with its replica entry. */
const expectRetryStores = (store: BlobStore["Type"], c: ReturnType<typeof content>) =>
  Effect.gen(function*() {
    const replicas = yield* ReplicaIndex
    const result = yield* Stream.run(chunked(c.bytes, { seed: 7 }), store.put())
    expect(result.deduplicated).toBe(false)
    expect(BlobLocator.render(result.locator)).toBe(BlobLocator.render(c.address))
    expect(sameBytes(yield* collect(store.get(c.key)), c.bytes)).toBe(true)
    expect((yield* replicas.replicas(c.key)).map(BlobLocator.render)).toEqual([BlobLocator.render(c.address)])
    expect((yield* objectRows).filter((r) => r.path.includes(c.digest)).length).toBe(1)
  })

/** Waits (live clock) until a statement of this database waits on a lock while inserting into `kv`. */
const untilClaimWaitsOnLock = Effect.gen(function*() {
  const sql = yield* SqlClient
  for (let i = 0; i < 3000; i++) {
    const rows = yield* sql<{ n: number }>`
      SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO kv%'`
    if (rows[0]!.n > 0) return
    yield* Effect.sleep("10 millis")
  }
  return yield* Effect.dieMessage("no put ever waited on the held claim")
})

describePg("CasBlobStore finalizes a put in one PostgreSQL transaction", layer, (test) => {
  test("a failing replica add rolls back the claim, the move and the publication; a retry stores the blob", () =>
    Effect.gen(function*() {
      const c = content(50_000)
      const { fired, index } = yield* replicasFailingOnce("Unknown")
      const store = yield* CasBlobStore.make(options).pipe(Effect.provideService(ReplicaIndex, index))
      const failed = yield* Effect.either(Stream.run(chunked(c.bytes), store.put()))
      expect(fired()).toBe(1)
      expect(Either.isLeft(failed) && failed.left.reason).toBe("Unknown")
      expect(Option.isNone(yield* store.stat(c.key))).toBe(true)
      yield* expectNothingStored(c)
      yield* expectRetryStores(store, c)
    }))

  test("a failing publication of the Live record rolls back the claim and the move; a retry stores the blob", () =>
    Effect.gen(function*() {
      const c = content(40_000)
      const { fired, kv } = yield* kvFailingPublishOnce
      const store = yield* CasBlobStore.make(options).pipe(Effect.provideService(KeyValueStore, kv))
      const failed = yield* Effect.either(Stream.run(chunked(c.bytes), store.put()))
      expect(fired()).toBe(1)
      expect(Either.isLeft(failed) && failed.left.reason).toBe("Unknown")
      yield* expectNothingStored(c)
      yield* expectRetryStores(store, c)
    }))

  test("without the UnitOfWork the same failure leaves the blob published (what the transaction prevents)", () =>
    Effect.gen(function*() {
      const c = content(30_000)
      const { fired, index } = yield* replicasFailingOnce("Unknown")
      const store = yield* CasBlobStore.make(options).pipe(
        Effect.mapInputContext((ctx: Context.Context<Services>) => Context.omit(UnitOfWork)(ctx)),
        Effect.provideService(ReplicaIndex, index)
      )
      expect(Either.isLeft(yield* Effect.either(Stream.run(chunked(c.bytes), store.put())))).toBe(true)
      expect(fired()).toBe(1)
      expect(Option.isSome(yield* store.stat(c.key))).toBe(true)
      const objects = yield* MutableObjectStore
      expect(Option.isSome(yield* objects.head(c.address))).toBe(true)
    }))

  test("a transient failure inside the transaction is retried whole: the put succeeds by itself", () =>
    Effect.gen(function*() {
      const c = content(20_000)
      const { fired, index } = yield* replicasFailingOnce("Unavailable")
      const store = yield* CasBlobStore.make(options).pipe(Effect.provideService(ReplicaIndex, index))
      const result = yield* Stream.run(chunked(c.bytes), store.put())
      expect(fired()).toBe(1)
      expect(result.deduplicated).toBe(false)
      const replicas = yield* ReplicaIndex
      expect((yield* replicas.replicas(c.key)).map(BlobLocator.render)).toEqual([BlobLocator.render(c.address)])
      expect(sameBytes(yield* collect(store.get(c.key)), c.bytes)).toBe(true)
      expect((yield* objectRows).filter((r) => r.path.startsWith("staging/"))).toEqual([])
    }))

  test("20 concurrent puts of the same content store exactly one object", () =>
    Effect.gen(function*() {
      const store = yield* BlobStore
      const c = content(200_000)
      const results = yield* Effect.forEach(
        Array.from({ length: 20 }, (_, i) => i),
        (i) => Stream.run(chunked(c.bytes, { seed: i + 1 }), store.put()),
        { concurrency: "unbounded" }
      )
      expect(new Set(results.map((r) => r.key.digest))).toEqual(new Set([c.digest]))
      expect(results.filter((r) => !r.deduplicated).length).toBe(1)
      expect(new Set(results.map((r) => BlobLocator.render(r.locator)))).toEqual(new Set([BlobLocator.render(c.address)]))
      const rows = yield* objectRows
      expect(rows.filter((r) => r.path.includes(c.digest)).map((r) => r.path)).toEqual([BlobMeta.contentPath(c.key)])
      expect(rows.filter((r) => r.path.startsWith("staging/"))).toEqual([])
      const replicas = yield* ReplicaIndex
      expect((yield* replicas.replicas(c.key)).length).toBe(1)
      expect(sameBytes(yield* collect(store.get(c.key)), c.bytes)).toBe(true)
    }), 60_000)

  test("20 concurrent puts, the first finalize failing: that put fails, the others store the content once", () =>
    Effect.gen(function*() {
      const c = content(100_000)
      const { fired, index } = yield* replicasFailingOnce("Unknown")
      const store = yield* CasBlobStore.make(options).pipe(Effect.provideService(ReplicaIndex, index))
      const results = yield* Effect.forEach(
        Array.from({ length: 20 }, (_, i) => i),
        (i) => Effect.either(Stream.run(chunked(c.bytes, { seed: i + 1 }), store.put())),
        { concurrency: "unbounded" }
      )
      expect(fired()).toBe(1)
      expect(results.filter(Either.isLeft).length).toBe(1)
      const stored = results.filter(Either.isRight).map((r) => r.right)
      expect(stored.filter((r) => !r.deduplicated).length).toBe(1)
      const rows = yield* objectRows
      expect(rows.filter((r) => r.path.includes(c.digest)).map((r) => r.path)).toEqual([BlobMeta.contentPath(c.key)])
      expect(rows.filter((r) => r.path.startsWith("staging/"))).toEqual([])
      expect(sameBytes(yield* collect(store.get(c.key)), c.bytes)).toBe(true)
    }), 60_000)

  for (const outcome of ["commits", "rolls back"] as const) {
    test(`a put waiting on the row lock of an uncommitted claim, which then ${outcome}`, () =>
      Effect.gen(function*() {
        const store = yield* BlobStore
        const uow = yield* UnitOfWork
        const kv = yield* KeyValueStore
        const objects = yield* MutableObjectStore
        const c = content(10_000)
        const ready = yield* Deferred.make<void>()
        const release = yield* Deferred.make<void>()
        // Another writer's finalize, held open: its claim row is locked and invisible to the put.
        const holder = yield* uow.atomically(Effect.gen(function*() {
          if (outcome === "commits") {
            yield* Stream.run(Stream.make(c.bytes), objects.put(c.address))
            const live = BlobMeta.encodeBlob(c.key, {
              _tag: "Live",
              id: "holder",
              createdAt: Date.now(),
              contentType: undefined,
              storage: { _tag: "Monolithic", locator: c.address }
            })
            expect(yield* kv.compareAndSet(c.blobKey, Option.none(), Option.some(live))).toBe(true)
          } else {
            expect(yield* kv.compareAndSet(c.blobKey, Option.none(), Option.some(utf8("held")))).toBe(true)
          }
          yield* Deferred.succeed(ready, undefined)
          yield* Deferred.await(release)
          if (outcome === "rolls back") return yield* Effect.fail("rolled back" as const)
        })).pipe(Effect.either, Effect.fork)
        yield* Deferred.await(ready)
        const putting = yield* Effect.fork(Stream.run(chunked(c.bytes), store.put()))
        yield* untilClaimWaitsOnLock
        yield* Deferred.succeed(release, undefined)
        expect(Either.isRight(yield* Fiber.join(holder))).toBe(outcome === "commits")
        const result = yield* Fiber.join(putting)
        expect(result.deduplicated).toBe(outcome === "commits")
        expect(BlobLocator.render(result.locator)).toBe(BlobLocator.render(c.address))
        expect(sameBytes(yield* collect(store.get(c.key)), c.bytes)).toBe(true)
        const rows = yield* objectRows
        expect(rows.filter((r) => r.path.includes(c.digest)).map((r) => r.path)).toEqual([BlobMeta.contentPath(c.key)])
        expect(rows.filter((r) => r.path.startsWith("staging/"))).toEqual([])
      }), 60_000)
  }
})
