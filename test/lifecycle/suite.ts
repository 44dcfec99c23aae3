/**
 * The lifecycle suite, run against every store (memory, embedded, PostgreSQL,
 * S3 + PostgreSQL, S3 + LevelDB): each kind of leftover is planted through
 * the ports as a crash would leave it, then `gc --dry-run` must report
 * exactly those, `gc` remove exactly those, a second `gc` nothing, `check`
 * find nothing, and every live blob still verify; a leftover younger than
 * the grace period is kept; `check` finds each planted inconsistency and
 * `--repair` fixes the repairable ones.
 */
import * as S3 from "@aws-sdk/client-s3"
import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { randomUUID } from "node:crypto"
import { S3ClientInstance } from "../../src/backends/s3/S3Client.js"
import * as BinaryKey from "../../src/core/BinaryKey.js"
import * as BlobLocator from "../../src/core/BlobLocator.js"
import * as Hashing from "../../src/core/Hashing.js"
import * as BlobMeta from "../../src/blobs/BlobMeta.js"
import * as Counters from "../../src/blobs/counters.js"
import { BlobAssembly } from "../../src/ports/BlobAssembly.js"
import { BlobStore } from "../../src/ports/BlobStore.js"
import { KeyValueStore } from "../../src/ports/KeyValueStore.js"
import { MetricsRegistry } from "../../src/ports/MetricsRegistry.js"
import { MutableObjectStore } from "../../src/ports/ObjectStore.js"
import { ReplicaIndex } from "../../src/ports/ReplicaIndex.js"
import * as Lifecycle from "../../src/lifecycle/Lifecycle.js"
import * as LifecycleMetrics from "../../src/lifecycle/LifecycleMetrics.js"
import { Uploads } from "../../src/uploads/Uploads.js"
import { gate } from "../../src/testing/capabilities.js"
import { chunked, collect, randomBytes, sameBytes } from "../../src/testing/bytes.js"

export { blocks } from "./layout.js"

/** What a store under test provides. */
export type Services = BlobStore | BlobAssembly | MutableObjectStore | KeyValueStore | ReplicaIndex | Uploads | MetricsRegistry

/** One store to run the suite on: a fresh, empty one per call (chunked layout). */
export interface Env {
  readonly name: string
  /** Why the store cannot run here (no server), or undefined. */
  readonly skip?: string | undefined
  readonly layer: () => Layer.Layer<Services, unknown>
  /** The store's bytes are on S3: an unfinished multipart upload is planted (and must be reclaimed). */
  readonly s3?: boolean | undefined
}

type Lc = Lifecycle.Lifecycle["Type"]

const withLifecycle = <A, E>(env: Env, body: (lc: Lc) => Effect.Effect<A, E, Services>) =>
  Effect.scoped(
    Effect.flatMap(Lifecycle.make(), body).pipe(Effect.provide(env.layer()))
  )

/** Scheme and bucket of the store (from its BlobAssembly, as the lifecycle finds them). */
const place = Effect.map(BlobAssembly, (a) => ({ scheme: a.stagingPrefix.scheme, bucket: a.stagingPrefix.bucket }))

const at = (path: string) => Effect.map(place, (p) => Either.getOrThrow(BlobLocator.make(p.scheme, p.bucket, path)))

const writeAt = (path: string, bytes: Uint8Array) =>
  Effect.flatMap(at(path), (l) => Effect.flatMap(MutableObjectStore, (o) => o.write(l, bytes)))

const exists = (path: string) =>
  Effect.flatMap(at(path), (l) => Effect.map(Effect.flatMap(MutableObjectStore, (o) => o.head(l)), Option.isSome))

const put = (bytes: Uint8Array) => Effect.flatMap(BlobStore, (s) => Stream.run(chunked(bytes), s.put()))

/** Stores `bytes` as a monolithic blob by hand (object at its address, record, replica entry): the store reads any layout. */
const putMonolithic = (bytes: Uint8Array) =>
  Effect.gen(function*() {
    const key = yield* Hashing.hashBytes("sha256", bytes)
    const locator = yield* at(BlobMeta.contentPath(key))
    yield* (yield* MutableObjectStore).write(locator, bytes)
    const live: BlobMeta.Live = { _tag: "Live", id: randomUUID(), createdAt: Date.now(), contentType: undefined, storage: { _tag: "Monolithic", locator } }
    // Through the counters, as any writer of records does.
    yield* Counters.compareAndSet(yield* KeyValueStore, BlobMeta.blobKey(key), Option.none(), Option.some(BlobMeta.encodeBlob(key, live)))
    yield* (yield* ReplicaIndex).add(key, locator)
    return key
  })

/**
 * Forgets a chunked blob's record by hand, as a crash between releasing
 * nothing and removing the record would: its blocks keep their references.
 * Returns how many distinct blocks it had and their bytes.
 */
const dropRecord = (key: BinaryKey.BinaryKey) =>
  Effect.gen(function*() {
    const kv = yield* KeyValueStore
    const raw = Option.getOrThrow(yield* kv.get(BlobMeta.blobKey(key)))
    const record = Either.getOrThrow(BlobMeta.decodeBlob(key, raw))
    if (record._tag !== "Live" || record.storage._tag !== "Chunked") throw new Error("not a chunked blob")
    const distinct = new Map(record.storage.blocks.map((b) => [BinaryKey.render(b.key), b.key.size]))
    // The counters change in the same commit as the record, so a crash leaves them matching the records.
    yield* Counters.compareAndSet(kv, BlobMeta.blobKey(key), Option.some(raw), Option.none())
    return { count: distinct.size, bytes: Array.from(distinct.values()).reduce((a, b) => a + b, 0) }
  })

/** A multipart upload begun and never finished, on an S3 store; false elsewhere. */
const plantMultipart = (path: string) =>
  Effect.gen(function*() {
    const s3 = yield* Effect.serviceOption(S3ClientInstance)
    if (Option.isNone(s3)) return false
    const { client, settings } = s3.value
    yield* Effect.promise(async () => {
      const Key = settings.prefix + path
      const created = await client.send(new S3.CreateMultipartUploadCommand({ Bucket: settings.bucket, Key }))
      await client.send(
        new S3.UploadPartCommand({ Bucket: settings.bucket, Key, UploadId: created.UploadId, PartNumber: 1, Body: randomBytes(1000, 9) })
      )
    })
    return true
  })

const count = (report: { readonly reclaimed: Record<Lifecycle.LeftoverKind, Lifecycle.Tally> }) =>
  Object.fromEntries(Object.entries(report.reclaimed).map(([k, t]) => [k, t.count]))

/** Lets what was just planted age past a grace period of GRACE. */
const GRACE = Duration.millis(50)
const age = Effect.sleep(Duration.millis(1100))

export const lifecycleSuite = (env: Env) =>
  describe(`lifecycle on ${env.name}`, () => {
    gate(it.live, env.skip)("gc reclaims exactly the planted leftovers, then nothing; everything live verifies", () =>
      withLifecycle(env, (lc) =>
        Effect.gen(function*() {
          const live = [randomBytes(150_000, 1), randomBytes(90_000, 2)]
          const keys = []
          for (const b of live) keys.push((yield* put(b)).key)
          const mono = randomBytes(5_000, 3)
          keys.push(yield* putMonolithic(mono))
          live.push(mono)
          // Leftovers: a staged put, the bytes of an upload whose record is gone, a dropped manifest's
          // blocks, an object at a content address and one at a block address with no record, an
          // expired upload, and (S3) an unfinished multipart upload.
          yield* writeAt(`staging/${randomUUID()}`, randomBytes(1_000, 4))
          yield* writeAt(`staging/uploads/${randomUUID().replaceAll("-", "")}/0000000000000000-0000000000000010`, randomBytes(10, 5))
          const dropped = yield* dropRecord((yield* put(randomBytes(120_000, 6))).key)
          const stray = randomBytes(2_000, 7)
          const strayKey = yield* Hashing.hashBytes("sha256", stray)
          yield* writeAt(BlobMeta.contentPath(strayKey), stray)
          yield* writeAt(`blocks/${BlobMeta.contentPath(strayKey)}`, stray)
          const uploads = yield* Uploads
          const id = yield* uploads.begin({ size: 100, ttl: Duration.millis(300) })
          yield* uploads.write(id, 0, Stream.make(randomBytes(40, 8)))
          const multipart = yield* plantMultipart(`staging/${randomUUID()}`)
          expect(multipart).toBe(env.s3 === true)
          yield* age

          const expected = { staging: 2, pending: 0, uploads: 1, blocks: dropped.count, orphans: 2, multipart: multipart ? 1 : 0 }
          const dry = yield* lc.gc({ grace: GRACE, dryRun: true })
          expect(count(dry)).toEqual(expected)
          expect(dry.reclaimed.blocks.bytes).toBe(dropped.bytes)
          expect(dry.reclaimed.orphans.bytes).toBe(2 * stray.length)
          expect(yield* exists(BlobMeta.contentPath(strayKey))).toBe(true)

          const real = yield* lc.gc({ grace: GRACE })
          expect(count(real)).toEqual(expected)
          expect(real.reclaimed).toEqual(dry.reclaimed)
          expect(yield* exists(BlobMeta.contentPath(strayKey))).toBe(false)
          const samples = yield* (yield* MetricsRegistry).snapshot
          const reclaimedStaging = samples.find((m) => m.name === LifecycleMetrics.gcReclaimedObjects && m.tags.kind === "staging")
          expect(reclaimedStaging?._tag === "Counter" ? reclaimedStaging.value : undefined).toBe(2)

          const again = yield* lc.gc({ grace: GRACE })
          expect(again.total.count).toBe(0)
          const checked = yield* lc.check({ grace: GRACE, readData: true })
          expect(checked.problems).toEqual([])
          expect(checked.blobs).toBe(keys.length)
          expect(checked.counters.state).toBe("match")
          yield* Effect.forEach(keys, (key, i) =>
            Effect.map(collect(Stream.unwrap(Effect.map(BlobStore, (s) => s.get(key)))), (got) => expect(sameBytes(got, live[i]!)).toBe(true)))
          const stats = yield* lc.stats
          expect(stats.counters).toBe("kept")
          expect(stats.blobs).toBe(keys.length)
          expect(stats.logicalBytes).toBe(live.reduce((n, b) => n + b.length, 0))
          expect(stats.stagingObjects).toBe(0)
          expect(stats.uploads).toBe(0)
        })), 120_000)

    gate(it.live, env.skip)("a leftover younger than the grace period is kept", () =>
      withLifecycle(env, (lc) =>
        Effect.gen(function*() {
          const path = `staging/${randomUUID()}`
          yield* writeAt(path, randomBytes(1_000, 10))
          const dropped = yield* dropRecord((yield* put(randomBytes(60_000, 11))).key)
          const report = yield* lc.gc({ grace: Duration.hours(1) })
          expect(report.total.count).toBe(0)
          expect(report.keptYoung.staging).toBe(1)
          expect(report.keptYoung.blocks).toBe(dropped.count)
          expect(yield* exists(path)).toBe(true)
        })), 120_000)

    gate(it.live, env.skip)("check finds each planted inconsistency; --repair fixes the repairable ones", () =>
      withLifecycle(env, (lc) =>
        Effect.gen(function*() {
          const kv = yield* KeyValueStore
          const objects = yield* MutableObjectStore
          const gone = yield* putMonolithic(randomBytes(3_000, 20))
          yield* objects.delete(yield* at(BlobMeta.contentPath(gone)))
          const short = yield* putMonolithic(randomBytes(3_000, 21))
          yield* objects.write(yield* at(BlobMeta.contentPath(short)), randomBytes(100, 22))
          const flipped = randomBytes(3_000, 23)
          const flippedKey = yield* putMonolithic(flipped)
          const bad = flipped.slice()
          bad[0] = bad[0]! ^ 1
          yield* objects.write(yield* at(BlobMeta.contentPath(flippedKey)), bad)
          const blob = (yield* put(randomBytes(100_000, 24))).key
          // One block record counts a reference too many (and was last touched long ago).
          const [blockKey, raw] = (yield* Stream.runHead(kv.list(BlobMeta.BLOCKS))).pipe(Option.getOrThrow)
          const block = Either.getOrThrow(BlobMeta.decodeBlock(raw))
          if (block._tag !== "Live") throw new Error("expected a live block")
          yield* kv.put(blockKey, BlobMeta.encodeBlock({ ...block, refs: block.refs + 1, at: 0 }))
          // A replica entry to an object that does not exist, beside a healthy blob's own.
          const healthy = yield* putMonolithic(randomBytes(3_000, 25))
          yield* (yield* ReplicaIndex).add(healthy, yield* at(`sha256/00/${"0".repeat(64)}`))

          const kinds = (r: Lifecycle.CheckReport) => r.problems.map((p) => `${p.kind}${p.repaired ? "+" : ""}`).sort()
          const found = yield* lc.check({ grace: GRACE, readData: true })
          expect(kinds(found)).toEqual(["corrupted", "danglingReplica", "missingObject", "refcount", "wrongSize"])
          const fixed = yield* lc.check({ grace: GRACE, repair: true })
          expect(kinds(fixed)).toEqual(["danglingReplica+", "missingObject", "refcount+", "wrongSize"])
          expect(fixed.repairs).toMatchObject({ recounted: 1, replicaDropped: 1 })
          const after = yield* lc.check({ grace: GRACE })
          expect(kinds(after)).toEqual(["missingObject", "wrongSize"])
          // The repaired count is right: deleting the blob frees its blocks, which gc then has nothing left to do for.
          yield* (yield* BlobStore).delete(blob)
          expect((yield* lc.gc({ grace: GRACE, dryRun: true })).reclaimed.blocks.count).toBe(0)
        })), 120_000)

    gate(it.live, env.skip)("the space counters follow puts, dedup hits, deletes and concurrent puts; check finds a skew, --repair fixes it", () =>
      withLifecycle(env, (lc) =>
        Effect.gen(function*() {
          const kv = yield* KeyValueStore
          const store = yield* BlobStore
          const shared = randomBytes(200_000, 30)
          const concat = (...parts: ReadonlyArray<Uint8Array>) => {
            const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
            let o = 0
            for (const p of parts) (out.set(p, o), o += p.length)
            return out
          }
          // Overlapping content, some of it identical, put at once: dedup hits on blobs and on blocks race.
          const contents = [
            shared,
            shared,
            concat(shared, randomBytes(50_000, 31)),
            concat(randomBytes(30_000, 32), shared),
            concat(shared, shared),
            concat(randomBytes(50_000, 31), shared)
          ]
          const keys = yield* Effect.forEach(contents, (b) => Effect.map(put(b), (s) => s.key), { concurrency: "unbounded" })
          const mono = yield* putMonolithic(randomBytes(7_000, 33))
          yield* put(shared) // a dedup hit afterwards
          const distinct = new Map(keys.map((k, i) => [BinaryKey.render(k), contents[i]!.length]))
          const expectKept = (blobs: number, logicalBytes: number) =>
            Effect.gen(function*() {
              const stats = yield* lc.stats
              expect(stats.counters).toBe("kept")
              expect(stats.blobs).toBe(blobs)
              expect(stats.logicalBytes).toBe(logicalBytes)
              const checked = yield* lc.check({ grace: GRACE })
              expect(checked.problems).toEqual([])
              expect(checked.counters.state).toBe("match")
              // The walk counts blocks from their records: the counters say the same.
              expect(stats.blocks).toBe(checked.blocks)
              expect(stats.blockBytes).toBe(checked.blockBytes)
              expect(stats.blocks).toBeGreaterThan(0)
              return stats
            })
          const sum = (sizes: Iterable<number>) => Array.from(sizes).reduce((a, b) => a + b, 0)
          const before = yield* expectKept(distinct.size + 1, sum(distinct.values()) + 7_000)
          expect(before.chunkedBlobs).toBe(distinct.size)
          expect(before.storedBytes).toBe(7_000 + before.blockBytes)

          // Deletes, one of them twice at once (only one removes it).
          yield* Effect.all([store.delete(keys[0]!), store.delete(keys[0]!), store.delete(keys[2]!), store.delete(mono)], { concurrency: "unbounded" })
          distinct.delete(BinaryKey.render(keys[0]!))
          distinct.delete(BinaryKey.render(keys[2]!))
          yield* expectKept(distinct.size, sum(distinct.values()))

          // A skewed shard (as a bug or a hand edit would leave): check finds it, --repair rewrites the counters.
          const shard = "stats/shard/00"
          const old = yield* kv.get(shard)
          const base = Option.isSome(old) ? JSON.parse(new TextDecoder().decode(old.value)) : Counters.zero()
          yield* kv.put(shard, new TextEncoder().encode(JSON.stringify({ ...base, blobs: base.blobs + 5, blockBytes: base.blockBytes - 9 })))
          expect((yield* lc.stats).blobs).toBe(distinct.size + 5)
          const skewed = yield* lc.check({ grace: GRACE })
          expect(skewed.counters.state).toBe("mismatch")
          expect(skewed.counters.kept?.blobs).toBe(distinct.size + 5)
          expect(skewed.counters.counted.blobs).toBe(distinct.size)
          expect((yield* lc.check({ grace: GRACE, repair: true })).counters.state).toBe("rewritten")
          yield* expectKept(distinct.size, sum(distinct.values()))

          // A store older than the counters: stats counts the records and says so; --repair stores them.
          yield* kv.delete(Counters.BASE)
          const absent = yield* lc.stats
          expect(absent.counters).toBe("absent")
          expect(absent.blobs).toBe(distinct.size)
          expect((yield* lc.check({ grace: GRACE })).counters.state).toBe("absent")
          expect((yield* lc.check({ grace: GRACE, repair: true })).counters.state).toBe("rewritten")
          yield* put(randomBytes(10_000, 34))
          yield* expectKept(distinct.size + 1, sum(distinct.values()) + 10_000)
        })), 120_000)
  })
