/**
 * Replication to two targets, then damage to the primary copy (object gone
 * behind the store's back, or overwritten with wrong bytes): reads fall back
 * to a verified replica, `repair` restores the primary, and the ReplicaIndex
 * stays truthful throughout. Run over memory and over fs + LevelDB.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Sink from "effect/Sink"
import * as Stream from "effect/Stream"
import type * as BinaryKey from "../../src/core/BinaryKey.js"
import { BlobError } from "../../src/core/Errors.js"
import { BlobStore } from "../../src/ports/BlobStore.js"
import * as ReplicatedBlobStore from "../../src/replication/ReplicatedBlobStore.js"
import * as Replicator from "../../src/replication/Replicator.js"
import * as Fixtures from "../blobs/fixtures.js"
import * as W from "./world.js"

const SIZE = 100_000

const replicaEntry = (target: string, key: BinaryKey.BinaryKey) => `replica://${target}/${key}`

/** Stores content in the primary and replicates it to both targets. */
const seeded = (w: W.World, seed: number) =>
  Effect.gen(function*() {
    const content = W.bytes(SIZE, seed)
    const key = yield* W.put(w.primary.store, content)
    const outcomes = yield* w.replicator.replicate(key)
    expect(outcomes.map((o) => [o._tag, o.target])).toEqual([["Copied", "east"], ["Copied", "west"]])
    return { content, key }
  })

const replicated = (w: W.World, options: Partial<ReplicatedBlobStore.Options> = {}) =>
  w.run(ReplicatedBlobStore.make({ targets: w.targets, ...options }))

const suite = (kind: W.Kind) =>
  describe(kind, () => {
    it.scopedLive("replicates to two targets, verified, and records target-qualified entries", () =>
      Effect.gen(function*() {
        const w = yield* W.world(kind)
        const content = W.bytes(SIZE, 1)
        const key = yield* W.put(w.primary.store, content)
        const primaryLocator = String(yield* W.locatorOf(w.primary, key))

        const first = yield* w.replicator.replicate(key)
        expect(first.map((o) => o._tag === "Copied" && o.deduplicated)).toEqual([false, false])
        for (const t of [w.east, w.west]) {
          expect(Buffer.compare(yield* W.collect(t.store.get(key)), content)).toBe(0)
        }
        expect(yield* W.entries(w.primary, key)).toEqual(
          [primaryLocator, replicaEntry("east", key), replicaEntry("west", key)].sort()
        )
        // Again: the targets already hold it, nothing is sent, the index is unchanged.
        const again = yield* w.replicator.replicate(key)
        expect(again.map((o) => o._tag === "Copied" && o.deduplicated)).toEqual([true, true])
        expect((yield* W.entries(w.primary, key)).length).toBe(3)

        const samples = yield* w.metrics.snapshot
        const copied = samples.find((s) =>
          s.name === Replicator.replicationsTotal && s.tags.target === "east" && s.tags.outcome === "copied"
        )
        expect(copied?._tag === "Counter" && copied.value).toBe(1)
      }))

    it.scopedLive("a missing primary object: get serves a replica, repair restores, the index follows", () =>
      Effect.gen(function*() {
        const w = yield* W.world(kind)
        const { content, key } = yield* seeded(w, 2)
        const primaryLocator = String(yield* W.locatorOf(w.primary, key))
        yield* W.dropObject(w.primary, key)

        // The primary itself can no longer serve it, and still says it is present.
        expect((yield* Effect.exit(W.collect(w.primary.store.get(key)))).pipe(Exit.isFailure)).toBe(true)
        expect(Option.isSome(yield* w.primary.store.stat(key))).toBe(true)

        const store = yield* replicated(w)
        expect(Buffer.compare(yield* W.collect(store.get(key)), content)).toBe(0)
        // The primary's entry is gone (its copy is), the replicas' stay.
        expect(yield* W.entries(w.primary, key)).toEqual([replicaEntry("east", key), replicaEntry("west", key)])

        const report = yield* w.replicator.repair(key)
        expect(report).toMatchObject({ checked: 1, healthy: 0, failed: [] })
        expect(report.restored.map((r) => r.from)).toEqual(["east"])
        expect(Buffer.compare(yield* W.collect(w.primary.store.get(key)), content)).toBe(0)
        const restoredLocator = String(yield* W.locatorOf(w.primary, key))
        expect(yield* W.entries(w.primary, key)).toEqual(
          [restoredLocator, replicaEntry("east", key), replicaEntry("west", key)].sort()
        )
        expect(restoredLocator.startsWith("file://blobs/sha256/")).toBe(true)
        expect(primaryLocator.startsWith("file://blobs/sha256/")).toBe(true)

        // Healthy now: a second repair changes nothing.
        expect(yield* w.replicator.repair(key)).toMatchObject({ checked: 1, healthy: 1, restored: [], failed: [] })
      }))

    it.scopedLive("a corrupted primary object: get (verifying first) serves a replica, repair restores", () =>
      Effect.gen(function*() {
        const w = yield* W.world(kind)
        const { content, key } = yield* seeded(w, 3)
        yield* W.corruptObject(w.primary, key)
        const corrupted = yield* Effect.flip(W.collect(w.primary.store.get(key)))
        expect(corrupted.reason).toBe("Corrupted")

        const store = yield* replicated(w)
        expect(Buffer.compare(yield* W.collect(store.get(key)), content)).toBe(0)
        expect(yield* W.entries(w.primary, key)).toEqual([replicaEntry("east", key), replicaEntry("west", key)])

        const report = yield* w.replicator.repair()
        expect(report).toMatchObject({ checked: 1, healthy: 0, failed: [] })
        expect(report.restored.length).toBe(1)
        expect(Buffer.compare(yield* W.collect(w.primary.store.get(key)), content)).toBe(0)
        expect((yield* W.entries(w.primary, key)).length).toBe(3)
      }))

    it.scopedLive("without verifyFirst, late corruption fails the read and drops the primary's entry; repair fixes it", () =>
      Effect.gen(function*() {
        const w = yield* W.world(kind)
        const { content, key } = yield* seeded(w, 4)
        yield* W.corruptObject(w.primary, key)
        const store = yield* replicated(w, { verifyFirst: false })
        const late = yield* Effect.flip(W.collect(store.get(key)))
        expect(late.reason).toBe("Corrupted")
        expect(yield* W.entries(w.primary, key)).toEqual([replicaEntry("east", key), replicaEntry("west", key)])

        expect((yield* w.replicator.repair(key)).restored.length).toBe(1)
        expect(Buffer.compare(yield* W.collect(store.get(key)), content)).toBe(0)
        // A missing object fails before the first byte: that one falls back even without verifyFirst.
        yield* W.dropObject(w.primary, key)
        expect(Buffer.compare(yield* W.collect(store.get(key)), content)).toBe(0)
      }))

    it.scopedLive("a bad replica is skipped and forgotten; the next one serves and repairs", () =>
      Effect.gen(function*() {
        const w = yield* W.world(kind)
        const { content, key } = yield* seeded(w, 5)
        yield* W.corruptObject(w.east, key)
        yield* W.dropObject(w.primary, key)

        const store = yield* replicated(w)
        expect(Buffer.compare(yield* W.collect(store.get(key)), content)).toBe(0)
        expect(yield* W.entries(w.primary, key)).toEqual([replicaEntry("west", key)])

        const report = yield* w.replicator.repair(key)
        expect(report.restored.map((r) => r.from)).toEqual(["west"])
        expect(Buffer.compare(yield* W.collect(w.primary.store.get(key)), content)).toBe(0)
      }))

    it.scopedLive("ranged reads fall back when the primary object is gone", () =>
      Effect.gen(function*() {
        const w = yield* W.world(kind)
        const { content, key } = yield* seeded(w, 6)
        yield* W.dropObject(w.primary, key)
        const store = yield* replicated(w)
        const slice = yield* W.collect(store.get(key, { start: 10, end: 5000 }))
        expect(Buffer.compare(slice, content.subarray(10, 5000))).toBe(0)
      }))

    it.scopedLive("with every copy gone, get fails and the index lists none of them", () =>
      Effect.gen(function*() {
        const w = yield* W.world(kind)
        const { key } = yield* seeded(w, 7)
        yield* w.east.store.delete(key)
        yield* W.dropObject(w.west, key)
        yield* W.dropObject(w.primary, key)
        const store = yield* replicated(w)
        const error = yield* Effect.flip(W.collect(store.get(key)))
        expect(error.reason).toBe("Corrupted")
        expect(error.message).toContain("east, west")
        expect(yield* W.entries(w.primary, key)).toEqual([])

        // Nothing to repair from: the primary's (broken) record is left alone.
        const report = yield* w.replicator.repair(key)
        expect(report.failed.map((f) => f.error.reason)).toEqual(["Corrupted"])
        expect(Option.isSome(yield* w.primary.store.stat(key))).toBe(true)
      }))

    it.scopedLive("a blob deleted from the primary is still served from its replicas, and repair(key) brings it back", () =>
      Effect.gen(function*() {
        const w = yield* W.world(kind)
        const { content, key } = yield* seeded(w, 8)
        const store = yield* replicated(w)
        yield* store.delete(key)
        expect(Option.isNone(yield* store.stat(key))).toBe(true)
        expect(Buffer.compare(yield* W.collect(store.get(key)), content)).toBe(0)
        expect((yield* w.replicator.repair(key)).restored.length).toBe(1)
        expect(Option.isSome(yield* w.primary.store.stat(key))).toBe(true)
      }))

    it.scopedLive("a chunked primary with one block corrupted: get serves a replica, repair restores every block", () =>
      Effect.gen(function*() {
        const w = yield* W.world(kind, { layout: Fixtures.smallBlocks })
        const { content, key } = yield* seeded(w, 15)
        // A chunked blob has no object of its own: its index entries are the replicas' only.
        expect(yield* W.entries(w.primary, key)).toEqual([replicaEntry("east", key), replicaEntry("west", key)])
        const blocks = yield* w.run(Fixtures.objectsUnder("blocks/"))
        expect(blocks.length).toBeGreaterThan(2)
        const victim = blocks[Math.floor(blocks.length / 2)]!
        yield* Stream.run(Stream.make(W.bytes(victim.size, 4242)), w.primary.objects.put(victim.locator))
        expect((yield* Effect.flip(W.collect(w.primary.store.get(key)))).reason).toBe("Corrupted")

        const store = yield* replicated(w)
        expect(Buffer.compare(yield* W.collect(store.get(key)), content)).toBe(0)
        expect(yield* W.entries(w.primary, key)).toEqual([replicaEntry("east", key), replicaEntry("west", key)])

        const report = yield* w.replicator.repair()
        expect(report).toMatchObject({ checked: 1, healthy: 0, failed: [] })
        expect(report.restored.length).toBe(1)
        expect(Buffer.compare(yield* W.collect(w.primary.store.get(key)), content)).toBe(0)
        expect(yield* w.replicator.repair(key)).toMatchObject({ checked: 1, healthy: 1 })
      }))

    it.scopedLive("background mode replicates each new blob to both targets, and skips deduplicated puts", () =>
      Effect.gen(function*() {
        const w = yield* W.world(kind)
        const results = yield* Queue.unbounded<readonly [BinaryKey.BinaryKey, ReadonlyArray<Replicator.CopyOutcome>]>()
        yield* w.run(Replicator.background({
          targets: w.targets,
          concurrency: 1,
          schedule: W.fastRetries,
          onResult: (key, outcomes) => Queue.offer(results, [key, outcomes])
        }))
        const a = W.bytes(SIZE, 9)
        const keyA = yield* W.put(w.primary.store, a)
        const [seenA, outcomesA] = yield* Queue.take(results)
        expect(String(seenA)).toBe(String(keyA))
        expect(outcomesA.map((o) => [o._tag, o.target])).toEqual([["Copied", "east"], ["Copied", "west"]])
        for (const t of [w.east, w.west]) expect(Buffer.compare(yield* W.collect(t.store.get(keyA)), a)).toBe(0)
        expect(yield* W.entries(w.primary, keyA)).toContain(replicaEntry("west", keyA))

        // A deduplicated put publishes deduplicated: true and is not replicated again: the next result is B's.
        yield* W.put(w.primary.store, a)
        const keyB = yield* W.put(w.primary.store, W.bytes(SIZE, 10))
        const [seenB] = yield* Queue.take(results)
        expect(String(seenB)).toBe(String(keyB))
      }))
  })

suite("memory")
suite("embedded")

/** A target whose put fails `failures` times with `reason` before delegating; counts calls. */
const flaky = (store: BlobStore["Type"], failures: number, reason: BlobError["reason"]) => {
  const calls = { puts: 0 }
  const wrapped: BlobStore["Type"] = {
    ...store,
    put: (plan) =>
      Sink.suspend(() => {
        calls.puts++
        return calls.puts <= failures
          ? Sink.fail(new BlobError({ reason, backend: "test", method: "put", description: "injected" }))
          : store.put(plan)
      })
  }
  return { wrapped, calls }
}

describe("retries and validation", () => {
  it.scopedLive("a transient failure of a target is retried, a permanent one is not", () =>
    Effect.gen(function*() {
      const w = yield* W.world("memory")
      const content = W.bytes(SIZE, 11)
      const key = yield* W.put(w.primary.store, content)
      const transient = flaky(w.east.store, 2, "Unavailable")
      const permanent = flaky(w.west.store, 100, "PermissionDenied")
      const outcomes = yield* w.replicator.replicate(key, [
        { name: "east", store: transient.wrapped },
        { name: "west", store: permanent.wrapped }
      ])
      expect(transient.calls.puts).toBe(3)
      expect(permanent.calls.puts).toBe(1)
      expect(outcomes[0]?._tag).toBe("Copied")
      expect(outcomes[1]?._tag === "Failed" && outcomes[1].error.reason).toBe("PermissionDenied")
      // Only the copy that happened is recorded.
      const listed = yield* W.entries(w.primary, key)
      expect(listed).toContain(replicaEntry("east", key))
      expect(listed).not.toContain(replicaEntry("west", key))
      expect(Buffer.compare(yield* W.collect(w.east.store.get(key)), content)).toBe(0)
      expect(Option.isNone(yield* w.west.store.stat(key))).toBe(true)
    }))

  it.scopedLive("a primary read failing with a transient reason is served by a replica; a permanent reason is not masked", () =>
    Effect.gen(function*() {
      const w = yield* W.world("memory")
      const { content, key } = yield* seeded(w, 16)
      const before = yield* W.entries(w.primary, key)
      const failingWith = (reason: BlobError["reason"]): BlobStore["Type"] => ({
        ...w.primary.store,
        get: () => Stream.fail(new BlobError({ reason, backend: "test", method: "get", description: "injected" }))
      })
      const over = (reason: BlobError["reason"]) =>
        w.run(ReplicatedBlobStore.make({ targets: w.targets }).pipe(Effect.provideService(BlobStore, failingWith(reason))))

      for (const reason of ["Unavailable", "Timeout"] as const) {
        expect(Buffer.compare(yield* W.collect((yield* over(reason)).get(key)), content)).toBe(0)
      }
      // A transient failure says nothing about the copy: every entry stays.
      expect(yield* W.entries(w.primary, key)).toEqual(before)
      const denied = yield* Effect.flip(W.collect((yield* over("PermissionDenied")).get(key)))
      expect(denied.reason).toBe("PermissionDenied")
      expect(yield* W.entries(w.primary, key)).toEqual(before)

      const served = (yield* w.metrics.snapshot).find((s) =>
        s.name === ReplicatedBlobStore.fallbackReadsTotal && s.tags.target === "east" && s.tags.outcome === "served"
      )
      expect(served?._tag === "Counter" && served.value).toBe(2)
    }))

  it.scopedLive("a corrupted primary is never copied: the target keeps nothing", () =>
    Effect.gen(function*() {
      const w = yield* W.world("memory")
      const key = yield* W.put(w.primary.store, W.bytes(SIZE, 12))
      yield* W.corruptObject(w.primary, key)
      const outcomes = yield* w.replicator.replicate(key)
      expect(outcomes.map((o) => o._tag === "Failed" && o.error.reason)).toEqual(["Corrupted", "Corrupted"])
      expect(Option.isNone(yield* w.east.store.stat(key))).toBe(true)
      expect((yield* W.entries(w.primary, key)).some((e) => e.startsWith("replica://"))).toBe(false)
    }))

  it.scopedLive("invalid target names, duplicate names and unknown keys are refused", () =>
    Effect.gen(function*() {
      const w = yield* W.world("memory")
      const key = yield* W.put(w.primary.store, W.bytes(100, 13))
      for (const name of ["", "a/b", "..", "x".repeat(64), "tab\there"]) {
        const error = yield* Effect.flip(w.replicator.replicate(key, [{ name, store: w.east.store }]))
        expect(error.reason).toBe("InvalidInput")
      }
      const dup = yield* Effect.flip(
        w.replicator.replicate(key, [{ name: "a", store: w.east.store }, { name: "a", store: w.west.store }])
      )
      expect(dup.reason).toBe("InvalidInput")
      const bad = yield* Effect.flip(w.run(ReplicatedBlobStore.make({ targets: [{ name: "a/b", store: w.east.store }] })))
      expect(bad.reason).toBe("InvalidInput")
      // A key only a target holds: the primary has nothing to copy.
      const elsewhere = yield* W.put(w.east.store, W.bytes(50, 14))
      const missing = yield* Effect.flip(w.replicator.replicate(elsewhere))
      expect(missing.reason).toBe("NotFound")
    }))
})
