/**
 * Conformance suite for the ReplicaIndex port. Every backend that provides
 * ReplicaIndex runs it from its own test file (the KV-backed index runs it
 * over each KeyValueStore):
 *
 * ```ts
 * import { testReplicaIndex } from "../../conformance/ReplicaIndex.js"
 * testReplicaIndex("pg", PgReplicaIndex.layer.pipe(Layer.provide(pg)))
 * ```
 *
 * The layer is shared by the suite's tests, each of which uses fresh random
 * blob keys. Tests run with the live clock. `skipAll` registers every test
 * as skipped, with the reason in its title.
 *
 * Covers: an unknown key has no replicas; add and remove are idempotent and
 * return the new set; sets come back sorted by locator text (UTF-8 byte
 * order) without duplicates; update replaces the whole set (deduplicating
 * and sorting) and an empty update forgets the key; keys are independent
 * (same digest, other size or algorithm); 50 concurrent adds all land and
 * concurrent removes all take effect; malformed keys and locators fail with
 * MetadataError InvalidInput.
 */
import { describe, expect, it as baseIt, layer as sharedLayer, type Vitest } from "@effect/vitest"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import { randomBytes } from "node:crypto"
import { BinaryKey } from "../core/BinaryKey.js"
import * as BlobLocator from "../core/BlobLocator.js"
import * as KvKey from "../core/KvKey.js"
import { ReplicaIndex } from "../ports/ReplicaIndex.js"
import { type Capabilities, gate } from "./capabilities.js"
import { expectInvalid } from "./KeyValueStore.js"

/** Optional features of a ReplicaIndex backend (none yet beyond `skipAll`). */
export interface ReplicaIndexCapabilities extends Capabilities {}

/** A fresh random blob key. */
const freshKey = (algorithm: "sha256" | "blake3" = "sha256", size = 1234): BinaryKey =>
  new BinaryKey({ algorithm, digest: randomBytes(32).toString("hex"), size })

const loc = (text: string): BlobLocator.BlobLocator => {
  const parsed = BlobLocator.parse(text)
  if (parsed._tag === "Left") throw new Error(parsed.left.message)
  return parsed.right
}

const texts = (locators: ReadonlyArray<BlobLocator.BlobLocator>) => locators.map(BlobLocator.render)

/** Registers the ReplicaIndex conformance suite for one backend. */
export const testReplicaIndex = <E>(
  name: string,
  layer: Layer.Layer<ReplicaIndex, E>,
  capabilities: ReplicaIndexCapabilities = {}
): void => {
  const title = `ReplicaIndex[${name}]`
  if (capabilities.skipAll !== undefined) {
    // Registered as skipped (never run), so the layer is never built.
    describe(title, () => suite(baseIt as unknown as Vitest.MethodsNonLive<ReplicaIndex, true>, capabilities))
  } else {
    sharedLayer(layer, { excludeTestServices: true })(title, (it) => suite(it, capabilities))
  }
}

const suite = (it: Vitest.MethodsNonLive<ReplicaIndex, true>, capabilities: ReplicaIndexCapabilities): void => {
  const test = gate(it.effect, capabilities.skipAll)

  test("an unknown key has no replicas", () =>
    Effect.gen(function*() {
      const index = yield* ReplicaIndex
      expect(yield* index.replicas(freshKey())).toEqual([])
    }))

  test("add and remove are idempotent, return the new set, and keep it sorted and unique", () =>
    Effect.gen(function*() {
      const index = yield* ReplicaIndex
      const key = freshKey()
      const s3 = loc("s3://bucket/blobs/x")
      const fs = loc("file://local/blobs/x")
      const pg = loc("pg://graviton/blobs/x")
      expect(texts(yield* index.add(key, s3))).toEqual(["s3://bucket/blobs/x"])
      expect(texts(yield* index.add(key, fs))).toEqual(["file://local/blobs/x", "s3://bucket/blobs/x"])
      expect(texts(yield* index.add(key, s3))).toEqual(["file://local/blobs/x", "s3://bucket/blobs/x"])
      expect(texts(yield* index.add(key, pg))).toEqual([
        "file://local/blobs/x",
        "pg://graviton/blobs/x",
        "s3://bucket/blobs/x"
      ])
      // An equal locator built separately is the same replica.
      expect(texts(yield* index.add(key, loc("pg://graviton/blobs/x")))).toHaveLength(3)
      expect(texts(yield* index.replicas(key))).toEqual([
        "file://local/blobs/x",
        "pg://graviton/blobs/x",
        "s3://bucket/blobs/x"
      ])
      expect(texts(yield* index.remove(key, fs))).toEqual(["pg://graviton/blobs/x", "s3://bucket/blobs/x"])
      expect(texts(yield* index.remove(key, fs))).toEqual(["pg://graviton/blobs/x", "s3://bucket/blobs/x"])
      expect(texts(yield* index.remove(key, loc("s3://other/never")))).toEqual([
        "pg://graviton/blobs/x",
        "s3://bucket/blobs/x"
      ])
      expect(texts(yield* index.remove(key, pg))).toEqual(["s3://bucket/blobs/x"])
      expect(yield* index.remove(key, s3)).toEqual([])
      expect(yield* index.replicas(key)).toEqual([])
      // Removing from an unknown key is fine too.
      expect(yield* index.remove(freshKey(), s3)).toEqual([])
      // Returned locators are real BlobLocators.
      const back = yield* index.add(key, s3)
      expect(back[0]).toBeInstanceOf(BlobLocator.BlobLocator)
      expect(back[0]!.path).toBe("blobs/x")
    }))

  test("sets are sorted by the UTF-8 bytes of the locator text", () =>
    Effect.gen(function*() {
      const index = yield* ReplicaIndex
      const key = freshKey()
      const all = [
        "s3://b/\u{1F600}",
        "s3://b/\uFFFD",
        "s3://b/Z",
        "s3://b/a",
        "s3://b/a/b",
        "s3://b/a-b",
        "mem://blobs/x",
        "s3://a/z"
      ]
      for (const t of all) yield* index.add(key, loc(t))
      expect(texts(yield* index.replicas(key))).toEqual([...all].sort(KvKey.compare))
    }))

  test("update replaces the whole set, deduplicated and sorted; an empty update forgets the key", () =>
    Effect.gen(function*() {
      const index = yield* ReplicaIndex
      const key = freshKey()
      yield* index.add(key, loc("s3://old/one"))
      yield* index.update(key, [loc("s3://b/2"), loc("s3://b/1"), loc("s3://b/2"), loc("fs://x/3")])
      expect(texts(yield* index.replicas(key))).toEqual(["fs://x/3", "s3://b/1", "s3://b/2"])
      yield* index.update(key, [loc("s3://b/1"), loc("s3://b/2"), loc("fs://x/3")])
      expect(texts(yield* index.replicas(key))).toEqual(["fs://x/3", "s3://b/1", "s3://b/2"])
      yield* index.update(key, [loc("s3://new/only")])
      expect(texts(yield* index.replicas(key))).toEqual(["s3://new/only"])
      yield* index.update(key, [])
      expect(yield* index.replicas(key)).toEqual([])
      // Add after forgetting starts from an empty set.
      expect(texts(yield* index.add(key, loc("s3://b/1")))).toEqual(["s3://b/1"])
      // Updating an unknown key to empty is a no-op that succeeds.
      yield* index.update(freshKey(), [])
    }))

  test("keys differing only in size or algorithm are independent", () =>
    Effect.gen(function*() {
      const index = yield* ReplicaIndex
      const key = freshKey("sha256", 10)
      const otherSize = new BinaryKey({ algorithm: "sha256", digest: key.digest, size: 11 })
      const otherAlgo = new BinaryKey({ algorithm: "blake3", digest: key.digest, size: 10 })
      yield* index.add(key, loc("s3://b/a"))
      yield* index.add(otherSize, loc("s3://b/b"))
      yield* index.add(otherAlgo, loc("s3://b/c"))
      expect(texts(yield* index.replicas(key))).toEqual(["s3://b/a"])
      expect(texts(yield* index.replicas(otherSize))).toEqual(["s3://b/b"])
      expect(texts(yield* index.replicas(otherAlgo))).toEqual(["s3://b/c"])
      yield* index.update(key, [])
      expect(texts(yield* index.replicas(otherSize))).toEqual(["s3://b/b"])
    }))

  test("50 concurrent adds all land; concurrent removes all take effect", () =>
    Effect.gen(function*() {
      const index = yield* ReplicaIndex
      const key = freshKey()
      const locators = Array.from({ length: 50 }, (_, i) => loc(`s3://bucket/replica-${String(i).padStart(2, "0")}`))
      const results = yield* Effect.forEach(locators, (l) => index.add(key, l), { concurrency: "unbounded" })
      const expected = texts(locators).sort(KvKey.compare)
      expect(texts(yield* index.replicas(key))).toEqual(expected)
      results.forEach((r, i) => expect(texts(r)).toContain(BlobLocator.render(locators[i]!)))
      // Remove the even ones concurrently while re-adding the odd ones (idempotent).
      yield* Effect.forEach(
        locators,
        (l, i) => (i % 2 === 0 ? index.remove(key, l) : index.add(key, l)),
        { concurrency: "unbounded", discard: true }
      )
      expect(texts(yield* index.replicas(key))).toEqual(expected.filter((_, i) => i % 2 === 1))
    }), 120_000)

  test("malformed keys and locators fail with MetadataError InvalidInput", () =>
    Effect.gen(function*() {
      const index = yield* ReplicaIndex
      const good = loc("s3://bucket/x")
      // The constructors check field types only; the parsers' rules must still be enforced.
      const badKeys = [
        new BinaryKey({ algorithm: "sha256", digest: "not-hex/../x", size: 1 }, true),
        new BinaryKey({ algorithm: "sha256", digest: "ab", size: 1 }, true)
      ]
      for (const key of badKeys) {
        yield* expectInvalid(index.replicas(key), `replicas ${key.digest}`)
        yield* expectInvalid(index.add(key, good), `add ${key.digest}`)
        yield* expectInvalid(index.remove(key, good), `remove ${key.digest}`)
        yield* expectInvalid(index.update(key, [good]), `update ${key.digest}`)
      }
      const key = freshKey()
      const badLocators = [
        new BlobLocator.BlobLocator({ scheme: "s3", bucket: "b", path: "a\nb" }, true),
        new BlobLocator.BlobLocator({ scheme: "s3", bucket: "b", path: "../escape" }, true),
        new BlobLocator.BlobLocator({ scheme: "", bucket: "b", path: "x" }, true)
      ]
      for (const bad of badLocators) {
        yield* expectInvalid(index.add(key, bad), `add ${JSON.stringify(bad.path)}`)
        yield* expectInvalid(index.remove(key, bad), `remove ${JSON.stringify(bad.path)}`)
        yield* expectInvalid(index.update(key, [good, bad]), `update ${JSON.stringify(bad.path)}`)
      }
      // A rejected update leaves nothing behind.
      expect(yield* index.replicas(key)).toEqual([])
    }))
}
