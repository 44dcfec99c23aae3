import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as MemoryKeyValueStore from "../../../src/backends/memory/MemoryKeyValueStore.js"
import { BinaryKey } from "../../../src/core/BinaryKey.js"
import * as BlobLocator from "../../../src/core/BlobLocator.js"
import { KeyValueStore } from "../../../src/ports/KeyValueStore.js"
import { ReplicaIndex } from "../../../src/ports/ReplicaIndex.js"
import * as KvReplicaIndex from "../../../src/kit/KvReplicaIndex.js"
import { utf8 } from "../../../src/testing/bytes.js"
import { testReplicaIndex } from "../../../src/testing/ReplicaIndex.js"

testReplicaIndex("kv over memory", KvReplicaIndex.layer.pipe(Layer.provide(MemoryKeyValueStore.layer)))

const both = KvReplicaIndex.layer.pipe(Layer.provideMerge(MemoryKeyValueStore.layer))
const key = new BinaryKey({ algorithm: "sha256", digest: "ab".repeat(32), size: 42 })
const loc = (text: string) => Either.getOrThrow(BlobLocator.parse(text))

describe("KvReplicaIndex", () => {
  it.effect("stores sorted locator texts under replicas/<key>, and deletes the key when the set empties", () =>
    Effect.gen(function*() {
      const index = yield* ReplicaIndex
      const kv = yield* KeyValueStore
      const kvKey = `replicas/sha256:${"ab".repeat(32)}:42`
      yield* index.add(key, loc("s3://b/2"))
      yield* index.add(key, loc("fs://a/1"))
      const stored = yield* kv.get(kvKey)
      expect(Option.map(stored, (b) => new TextDecoder().decode(b))).toEqual(Option.some("fs://a/1\ns3://b/2"))
      yield* index.remove(key, loc("fs://a/1"))
      yield* index.remove(key, loc("s3://b/2"))
      expect(Option.isNone(yield* kv.get(kvKey))).toBe(true)
      yield* index.update(key, [loc("s3://b/2")])
      yield* index.update(key, [])
      expect(Option.isNone(yield* kv.get(kvKey))).toBe(true)
    }).pipe(Effect.provide(both)))

  it.effect("a record that is not a list of locators fails with Corrupted", () =>
    Effect.gen(function*() {
      const index = yield* ReplicaIndex
      const kv = yield* KeyValueStore
      yield* kv.put(`replicas/${key}`, utf8("not a locator"))
      for (const effect of [index.replicas(key), index.add(key, loc("s3://b/1"))]) {
        expect((yield* Effect.flip(effect)).reason).toBe("Corrupted")
      }
      yield* kv.put(`replicas/${key}`, Uint8Array.of(0xff, 0xfe))
      expect((yield* Effect.flip(index.replicas(key))).reason).toBe("Corrupted")
      // update replaces whatever was there.
      yield* index.update(key, [loc("s3://b/1")])
      expect((yield* index.replicas(key)).map(String)).toEqual(["s3://b/1"])
    }).pipe(Effect.provide(both)))

  it("decodes what it encodes, and normalizes unsorted records", () => {
    const texts = ["a://b/c", "s3://x/y z", "s3://x/\u{1F600}"]
    expect(KvReplicaIndex.decodeReplicas(KvReplicaIndex.encodeReplicas(texts))?.map(String)).toEqual(texts)
    expect(KvReplicaIndex.decodeReplicas(utf8("s3://b/2\ns3://b/1\ns3://b/2"))?.map(String)).toEqual([
      "s3://b/1",
      "s3://b/2"
    ])
    expect(KvReplicaIndex.decodeReplicas(utf8(""))).toBeUndefined()
    expect(KvReplicaIndex.decodeReplicas(utf8("s3://b/1\n"))).toBeUndefined()
  })
})
