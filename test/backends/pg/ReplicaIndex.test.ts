/**
 * PgReplicaIndex: the conformance suite, then hostile locators and
 * `update` racing with `add` on the same blob.
 */
import { expect } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { BinaryKey } from "../../../src/core/BinaryKey.js"
import * as BlobLocator from "../../../src/core/BlobLocator.js"
import * as KvKey from "../../../src/core/KvKey.js"
import { ReplicaIndex } from "../../../src/ports/ReplicaIndex.js"
import { testReplicaIndex } from "../../../src/testing/ReplicaIndex.js"
import { describePg, pgLayer, skipReason, usePostgres } from "../../harness/postgres.js"

usePostgres()

const pg = pgLayer("replicas")
testReplicaIndex("pg", pg, { skipAll: skipReason() })

const key = () =>
  new BinaryKey({
    algorithm: "sha256",
    digest: Array.from({ length: 64 }, () => "0123456789abcdef"[Math.floor(Math.random() * 16)]).join(""),
    size: 42
  })
const loc = (text: string) => Either.getOrThrow(BlobLocator.parse(text))
const texts = (ls: ReadonlyArray<BlobLocator.BlobLocator>) => ls.map(BlobLocator.render)

describePg("PgReplicaIndex", pg, (test) => {
  test("quotes, %, _, backslashes, unicode and long paths behave like plain locators", () =>
    Effect.gen(function*() {
      const index = yield* ReplicaIndex
      const k = key()
      const all = [
        "s3://b/it's",
        "s3://b/100%",
        "s3://b/a_b",
        "s3://b/aXb",
        "s3://b/back\\slash",
        "s3://b/ünï/日本語/😀",
        "s3://b/'; DROP TABLE replicas; --",
        `s3://b/${"x".repeat(1024)}`
      ]
      for (const t of all) yield* index.add(k, loc(t))
      expect(texts(yield* index.replicas(k))).toEqual([...all].sort(KvKey.compare))
      expect(texts(yield* index.remove(k, loc("s3://b/a_b")))).toEqual(all.filter((t) => t !== "s3://b/a_b").sort(KvKey.compare))
      yield* index.update(k, [loc("s3://b/100%"), loc("s3://b/it's")])
      expect(texts(yield* index.replicas(k))).toEqual(["s3://b/100%", "s3://b/it's"])
    }))

  test("update racing with add: each add's result holds its own locator and only base or added ones", () =>
    Effect.gen(function*() {
      const index = yield* ReplicaIndex
      const k = key()
      const base = [loc("s3://b/base")]
      const results = yield* Effect.forEach(
        Array.from({ length: 40 }, (_, i) => i),
        (i) =>
          i % 2 === 0
            ? Effect.as(index.update(k, base), undefined)
            : Effect.map(index.add(k, loc(`s3://b/added-${i}`)), (set) => [i, texts(set)] as const),
        { concurrency: "unbounded" }
      )
      for (const r of results) {
        if (r === undefined) continue
        const [i, set] = r
        // Serialized per blob: no update can slip between the add and the read of its result.
        expect(set).toContain(`s3://b/added-${i}`)
        expect(set.every((t) => t === "s3://b/base" || t.startsWith("s3://b/added-"))).toBe(true)
        expect(set).toEqual([...set].sort(KvKey.compare))
      }
      const final = texts(yield* index.replicas(k))
      expect(final).toContain("s3://b/base")
    }))
})
