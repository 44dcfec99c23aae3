import { describe, expect, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as Equal from "effect/Equal"
import * as Schema from "effect/Schema"
import * as BinaryKey from "../../src/core/BinaryKey.js"

const hex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

describe("BinaryKey", () => {
  it("parses and renders the canonical form losslessly", () => {
    for (const text of [`sha256:${hex}:4`, `blake3:${hex}:0`, `sha256:${hex}:9007199254740991`]) {
      const key = Either.getOrThrow(BinaryKey.parse(text))
      expect(BinaryKey.render(key)).toBe(text)
      expect(String(key)).toBe(text)
    }
    const key = Either.getOrThrow(BinaryKey.parse(`sha256:${hex}:4`))
    expect(key.algorithm).toBe("sha256")
    expect(key.digest).toBe(hex)
    expect(key.size).toBe(4)
  })

  it("keys for the same content are Equal", () => {
    const a = Either.getOrThrow(BinaryKey.parse(`sha256:${hex}:4`))
    const b = Either.getOrThrow(BinaryKey.make("sha256", hex, 4))
    expect(Equal.equals(a, b)).toBe(true)
    expect(Equal.equals(a, Either.getOrThrow(BinaryKey.make("blake3", hex, 4)))).toBe(false)
  })

  const bad: ReadonlyArray<readonly [string, RegExp]> = [
    ["", /expected/],
    [`sha256:${hex}`, /expected/],
    [`sha256:${hex}:4:extra`, /expected/],
    [`md5:${hex}:4`, /unknown hash algorithm/],
    [`SHA256:${hex}:4`, /unknown hash algorithm/],
    [`sha256:${hex.slice(1)}:4`, /64 hex digits/],
    [`sha256:${hex}00:4`, /64 hex digits/],
    [`sha256:${hex.toUpperCase()}:4`, /lower-case hex/],
    [`sha256:${hex.slice(0, 63)}g:4`, /lower-case hex/],
    [`sha256:${hex}:-1`, /non-negative integer/],
    [`sha256:${hex}:1.5`, /non-negative integer/],
    [`sha256:${hex}:01`, /non-negative integer/],
    [`sha256:${hex}:1e3`, /non-negative integer/],
    [`sha256:${hex}: 4`, /non-negative integer/],
    [`sha256:${hex}:`, /non-negative integer/],
    [`sha256:${hex}:99999999999999999999`, /non-negative integer/]
  ]
  for (const [text, message] of bad) {
    it(`rejects ${JSON.stringify(text.length > 40 ? text.slice(0, 12) + "…" + text.slice(-12) : text)}`, () => {
      const result = BinaryKey.parse(text)
      expect(Either.isLeft(result)).toBe(true)
      const error = Either.getLeft(result).pipe((o) => (o._tag === "Some" ? o.value : undefined))!
      expect(error._tag).toBe("InvalidValue")
      expect(error.kind).toBe("BinaryKey")
      expect(error.message).toMatch(message)
    })
  }

  it("its constructor rejects digests that are not 64 lower-case hex digits", () => {
    expect(() => new BinaryKey.BinaryKey({ algorithm: "sha256", digest: "../x", size: 1 })).toThrow()
    expect(() => new BinaryKey.BinaryKey({ algorithm: "sha256", digest: hex, size: -1 })).toThrow()
  })

  it("decodes and encodes through its string Schema", () => {
    const key = Schema.decodeUnknownSync(BinaryKey.FromString)(`blake3:${hex}:10`)
    expect(key.size).toBe(10)
    expect(Schema.encodeSync(BinaryKey.FromString)(key)).toBe(`blake3:${hex}:10`)
    expect(() => Schema.decodeUnknownSync(BinaryKey.FromString)("nope")).toThrow(/expected/)
  })
})
