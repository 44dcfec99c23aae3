import { describe, expect, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import * as BlobLocator from "../../src/core/BlobLocator.js"

const error = <A>(e: Either.Either<A, { description: string }>): string =>
  Either.match(e, { onLeft: (x) => x.description, onRight: () => "(parsed)" })

describe("BlobLocator", () => {
  it("round-trips parse and render", () => {
    for (
      const text of [
        "s3://bucket/path",
        "file://b/a/b/c.txt",
        "mem://x/ünïcödé/ключ",
        "s3://my.bucket-1/with space/and%percent/_under\\back'quote\"",
        `s3://${"b".repeat(63)}/${"p".repeat(1024)}`
      ]
    ) {
      const l = Either.getOrThrow(BlobLocator.parse(text))
      expect(BlobLocator.render(l)).toBe(text)
    }
    const l = Either.getOrThrow(BlobLocator.parse("s3://bucket/a/b"))
    expect([l.scheme, l.bucket, l.path]).toEqual(["s3", "bucket", "a/b"])
  })

  const bad: ReadonlyArray<readonly [string, RegExp]> = [
    ["bucket/path", /scheme:\/\/bucket\/path/],
    ["s3://bucket", /no path/],
    ["://bucket/path", /scheme is empty/],
    ["S3://bucket/path", /scheme must be/],
    ["s3:///path", /bucket is empty/],
    ["s3://bucket/", /path is empty/],
    ["s3://bucket//abs", /may not start with '\/'/],
    ["s3://bucket/a//b", /empty segment/],
    ["s3://bucket/a/", /empty segment/],
    ["s3://bucket/a/../b", /'\.' or '\.\.'/],
    ["s3://bucket/..", /'\.' or '\.\.'/],
    ["s3://bucket/./a", /'\.' or '\.\.'/],
    ["s3://bucket/a\u0000b", /control character/],
    ["s3://bucket/a\nb", /control character/],
    ["s3://bucket/a\u007fb", /control character/],
    ["s3://bu\tcket/a", /control character/],
    ["s3://../a", /'\.' or '\.\.'/],
    ["s3://bucket/a\uD800b", /not valid Unicode/],
    [`s3://${"b".repeat(64)}/p`, /longer than 63 bytes/],
    [`s3://b/${"p".repeat(1025)}`, /longer than 1024 bytes/],
    // 342 three-byte characters = 1026 bytes though only 342 UTF-16 units.
    [`s3://b/${"€".repeat(342)}`, /longer than 1024 bytes/]
  ]
  for (const [text, message] of bad) {
    it(`rejects ${JSON.stringify(text.slice(0, 40))}`, () => {
      expect(error(BlobLocator.parse(text))).toMatch(message)
    })
  }

  it("parses listing prefixes, which may be empty or end on '/'", () => {
    for (const [text, path] of [["s3://b/", ""], ["s3://b", ""], ["s3://b/a/", "a/"], ["s3://b/a/pre", "a/pre"]]) {
      const p = Either.getOrThrow(BlobLocator.parsePrefix(text!))
      expect(p.path).toBe(path)
    }
    expect(error(BlobLocator.parsePrefix("s3://b/a//"))).toMatch(/empty segment/)
    expect(error(BlobLocator.parsePrefix("s3://b/../"))).toMatch(/'\.' or '\.\.'/)
    expect(error(BlobLocator.parsePrefix("s3://b/a/.."))).toMatch(/'\.' or '\.\.'/)
  })

  it("matches prefixes by scheme, bucket and path", () => {
    const p = Either.getOrThrow(BlobLocator.parsePrefix("s3://b/a/"))
    const at = (t: string) => Either.getOrThrow(BlobLocator.parse(t))
    expect(BlobLocator.matchesPrefix(p, at("s3://b/a/x"))).toBe(true)
    expect(BlobLocator.matchesPrefix(p, at("s3://b/ab"))).toBe(false)
    expect(BlobLocator.matchesPrefix(p, at("s3://c/a/x"))).toBe(false)
    expect(BlobLocator.matchesPrefix(p, at("file://b/a/x"))).toBe(false)
    expect(BlobLocator.render(Either.getOrThrow(BlobLocator.child(p, "y/z")))).toBe("s3://b/a/y/z")
  })

  it("decodes through its string Schema", () => {
    expect(Schema.decodeUnknownSync(BlobLocator.FromString)("s3://b/k").path).toBe("k")
    expect(() => Schema.decodeUnknownSync(BlobLocator.FromString)("s3://b/../k")).toThrow()
  })
})

describe("BlobLocator constructors", () => {
  it("apply the parser's rules, so no invalid locator or prefix can be built", () => {
    expect(() => new BlobLocator.BlobLocator({ scheme: "s3", bucket: "b", path: "../x" })).toThrow(/'\.' or '\.\.'/)
    expect(() => new BlobLocator.LocatorPrefix({ scheme: "s3", bucket: "", path: "" })).toThrow(/bucket is empty/)
    expect(new BlobLocator.BlobLocator({ scheme: "s3", bucket: "b", path: "ok" }).path).toBe("ok")
  })
})
