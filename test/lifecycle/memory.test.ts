/** The lifecycle suite on the memory store (CasBlobStore over in-memory ports, with resumable uploads). */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { ReplicaIndex } from "../../src/ports/ReplicaIndex.js"
import { memoryStore } from "./stores.js"
import { lifecycleSuite } from "./suite.js"

lifecycleSuite({ name: "memory", layer: memoryStore })

/** The same store with a replica index that cannot list (ReplicaIndex.list is optional): check asks it per record. */
const withoutListing = () =>
  Layer.effect(
    ReplicaIndex,
    Effect.map(ReplicaIndex, (index) => {
      const { list: _list, ...rest } = index
      return ReplicaIndex.of(rest)
    })
  ).pipe(Layer.provideMerge(memoryStore()))

lifecycleSuite({ name: "memory, with a replica index that cannot list", layer: withoutListing })

describe("the replica index of the suite above", () => {
  it.effect("has no listing (so the suite runs check's per-record path)", () =>
    Effect.map(ReplicaIndex, (index) => expect(index.list).toBeUndefined()).pipe(Effect.provide(withoutListing())))
})
