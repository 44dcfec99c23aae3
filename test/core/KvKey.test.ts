import { describe, expect, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as KvKey from "../../src/core/KvKey.js"

describe("KvKey", () => {
  it("accepts ordinary and hostile-looking keys", () => {
    for (const k of ["a", "blobs/sha256:ab:1", "q'uo\"te %_\\ ünï 🙂", "x".repeat(1024)]) {
      expect(Either.getOrThrow(KvKey.validate(k))).toBe(k)
    }
    expect(Either.isRight(KvKey.validate("", true))).toBe(true)
  })

  it("rejects empty, control characters, lone surrogates and over-long keys", () => {
    for (const k of ["", "a\u0000b", "a\nb", "a\uDC00", "x".repeat(1025), "€".repeat(342)]) {
      const r = KvKey.validate(k)
      expect(Either.isLeft(r)).toBe(true)
    }
  })

  it("orders keys by UTF-8 bytes, not UTF-16 code units", () => {
    // U+FF5E is one UTF-16 unit above the surrogates of U+1F642, but its UTF-8 bytes sort first.
    const keys = ["\u{1F642}", "\uFF5E", "a", "B", "é"]
    expect([...keys].sort(KvKey.compare)).toEqual(["B", "a", "é", "\uFF5E", "\u{1F642}"])
  })

  it("computes the exclusive upper bound of a prefix", () => {
    expect(Buffer.from(KvKey.prefixUpperBound("ab")!).toString()).toBe("ac")
    expect(KvKey.prefixUpperBound("")).toBeUndefined()
  })
})
