/** The header parsers of the gateway, and the token list of its configuration. */
import { describe, expect, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as Redacted from "effect/Redacted"
import { createHash } from "node:crypto"
import { parseTokens } from "../../src/gateway/GatewayConfig.js"
import { matchesEtag, parseRange, parseUploadChecksum, parseUploadMetadata, sha256FromDigestField } from "../../src/gateway/headers.js"
import { parseListen } from "../../src/cli/commands/serve.js"

describe("parseRange", () => {
  it("resolves first, last, middle, open and suffix ranges (end exclusive)", () => {
    expect(parseRange("bytes=0-0", 10)).toEqual({ _tag: "Partial", start: 0, end: 1 })
    expect(parseRange("bytes=9-9", 10)).toEqual({ _tag: "Partial", start: 9, end: 10 })
    expect(parseRange("bytes=2-5", 10)).toEqual({ _tag: "Partial", start: 2, end: 6 })
    expect(parseRange("bytes=4-", 10)).toEqual({ _tag: "Partial", start: 4, end: 10 })
    expect(parseRange("bytes=-3", 10)).toEqual({ _tag: "Partial", start: 7, end: 10 })
    expect(parseRange("bytes=-30", 10)).toEqual({ _tag: "Partial", start: 0, end: 10 })
    expect(parseRange("bytes=5-100", 10)).toEqual({ _tag: "Partial", start: 5, end: 10 })
  })

  it("says unsatisfiable past the end, for an empty suffix, and for any range of an empty blob", () => {
    expect(parseRange("bytes=10-", 10)._tag).toBe("Unsatisfiable")
    expect(parseRange("bytes=-0", 10)._tag).toBe("Unsatisfiable")
    expect(parseRange("bytes=0-0", 0)._tag).toBe("Unsatisfiable")
    expect(parseRange("bytes=-5", 0)._tag).toBe("Unsatisfiable")
  })

  it("ignores what it does not understand and multiple ranges (the whole blob)", () => {
    for (const h of [undefined, "bytes=a-b", "items=0-1", "bytes=5-2", "bytes=0-1,3-4", "bytes=-"]) {
      expect(parseRange(h, 10)._tag, String(h)).toBe("Whole")
    }
  })
})

describe("digest fields (RFC 9530)", () => {
  const digest = createHash("sha256").update("hello").digest()
  it("takes the sha-256 member among others", () => {
    expect(sha256FromDigestField(`sha-256=:${digest.toString("base64")}:`)).toBe(digest.toString("hex"))
    expect(sha256FromDigestField(`sha-512=:AAAA:, sha-256=:${digest.toString("base64")}:`)).toBe(digest.toString("hex"))
    expect(sha256FromDigestField("sha-512=:AAAA:")).toBeUndefined()
    expect(sha256FromDigestField(undefined)).toBeUndefined()
  })
  it("refuses a malformed field or a digest of the wrong length", () => {
    expect(sha256FromDigestField("sha-256=abc")).toBeInstanceOf(Error)
    expect(sha256FromDigestField("sha-256=:AAAA:")).toBeInstanceOf(Error)
  })
})

describe("entity tags, tus headers", () => {
  it("matches a tag in a list, weak or strong, and *", () => {
    expect(matchesEtag(`"a", "b"`, `"b"`)).toBe(true)
    expect(matchesEtag(`W/"b"`, `"b"`)).toBe(true)
    expect(matchesEtag("*", `"b"`)).toBe(true)
    expect(matchesEtag(`"a"`, `"b"`)).toBe(false)
    expect(matchesEtag(undefined, `"b"`)).toBe(false)
  })
  it("parses Upload-Checksum and Upload-Metadata", () => {
    expect(parseUploadChecksum("sha256 AAEC")).toEqual({ algorithm: "sha256", hex: "000102" })
    expect(parseUploadChecksum("sha256")).toBeUndefined()
    expect(parseUploadMetadata("filename aGVsbG8=,empty")).toEqual({ filename: "hello", empty: "" })
    expect(parseUploadMetadata("a YQ==,a YQ==")).toBeUndefined()
  })
})

describe("configuration", () => {
  it("parses a token list with scopes", () => {
    const tokens = Either.getOrThrow(parseTokens("read,write:one; read:two\ndelete:three"))
    expect(tokens.map((t) => [Redacted.value(t.token), [...t.scopes].sort()])).toEqual([
      ["one", ["read", "write"]],
      ["two", ["read"]],
      ["three", ["delete"]]
    ])
  })
  it("refuses an unknown scope or an entry without a token, without quoting the token", () => {
    const bad = parseTokens("admin:s3cret")
    expect(Either.isLeft(bad)).toBe(true)
    expect(Either.isLeft(bad) && bad.left).not.toContain("s3cret")
    expect(Either.isLeft(parseTokens("read:"))).toBe(true)
    expect(Either.isLeft(parseTokens("justatoken"))).toBe(true)
  })
  it("parses --listen", () => {
    expect(parseListen("127.0.0.1:8080")).toEqual({ host: "127.0.0.1", port: 8080 })
    expect(parseListen(":9000")).toEqual({ port: 9000 })
    expect(parseListen("[::1]:0")).toEqual({ host: "::1", port: 0 })
    expect(parseListen("localhost")).toBeUndefined()
    expect(parseListen("h:70000")).toBeUndefined()
  })
})
