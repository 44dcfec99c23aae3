/**
 * Pure parsers of the request headers the gateway honours: RFC 9530
 * digests (`Repr-Digest`, `Content-Digest`), RFC 9110 single byte ranges,
 * entity tags, and tus's `Upload-Checksum`.
 */

/** A sha-256 digest as lower-case hex, from `sha-256=:<base64>:` in a digest field; undefined when absent. */
export const sha256FromDigestField = (value: string | undefined): string | undefined | Error => {
  if (value === undefined) return undefined
  // A dictionary of structured fields: `sha-256=:...:, sha-512=:...:`; other algorithms are ignored.
  for (const member of value.split(",")) {
    const m = /^\s*([a-z0-9*_.-]+)\s*=\s*:([A-Za-z0-9+/=]*):\s*$/.exec(member)
    if (m === null) return new Error(`the digest field ${JSON.stringify(member.trim())} is not <algorithm>=:<base64>:`)
    if (m[1] !== "sha-256") continue
    const bytes = Buffer.from(m[2]!, "base64")
    if (bytes.length !== 32 || bytes.toString("base64") !== m[2]) {
      return new Error("the sha-256 digest is not 32 bytes of base64")
    }
    return bytes.toString("hex")
  }
  return undefined
}

/** Outcome of a Range header against a representation of `size` bytes. */
export type RangeRequest =
  | { readonly _tag: "Whole" }
  | { readonly _tag: "Partial"; readonly start: number; readonly end: number }
  | { readonly _tag: "Unsatisfiable" }

const DIGITS = /^[0-9]+$/

/**
 * A single `bytes=` range resolved against `size` (`end` exclusive). A
 * header that does not parse, or asks for several ranges, is ignored (the
 * whole representation is served), as RFC 9110 allows.
 */
export const parseRange = (header: string | undefined, size: number): RangeRequest => {
  if (header === undefined) return { _tag: "Whole" }
  const m = /^\s*bytes\s*=\s*([^,]*)$/i.exec(header)
  if (m === null) return { _tag: "Whole" }
  const spec = m[1]!.trim()
  const dash = spec.indexOf("-")
  if (dash < 0) return { _tag: "Whole" }
  const first = spec.slice(0, dash).trim()
  const last = spec.slice(dash + 1).trim()
  if (first === "") {
    // Suffix: the last N bytes.
    if (!DIGITS.test(last)) return { _tag: "Whole" }
    const n = Number(last)
    if (n === 0 || size === 0) return { _tag: "Unsatisfiable" }
    return { _tag: "Partial", start: Math.max(0, size - n), end: size }
  }
  if (!DIGITS.test(first) || (last !== "" && !DIGITS.test(last))) return { _tag: "Whole" }
  const start = Number(first)
  if (last !== "" && Number(last) < start) return { _tag: "Whole" }
  if (start >= size) return { _tag: "Unsatisfiable" }
  const end = last === "" ? size : Math.min(size, Number(last) + 1)
  return { _tag: "Partial", start, end }
}

/** The ETag of a blob: its key, quoted (a strong tag: the bytes behind a key never change). */
export const etagOf = (key: string): string => `"${key}"`

/** True when an If-None-Match (or If-Range) list names `etag` (weak comparison) or is `*`. */
export const matchesEtag = (header: string | undefined, etag: string): boolean => {
  if (header === undefined) return false
  if (header.trim() === "*") return true
  return header.split(",").some((t) => t.trim().replace(/^W\//, "") === etag)
}

/** A tus `Upload-Checksum` value: algorithm and the expected digest in hex. */
export const parseUploadChecksum = (value: string): { readonly algorithm: string; readonly hex: string } | undefined => {
  const m = /^\s*([a-zA-Z0-9-]+)\s+([A-Za-z0-9+/=]+)\s*$/.exec(value)
  if (m === null) return undefined
  return { algorithm: m[1]!.toLowerCase(), hex: Buffer.from(m[2]!, "base64").toString("hex") }
}

/** tus `Upload-Metadata`: comma-separated `key base64value` pairs (value optional). */
export const parseUploadMetadata = (value: string): Record<string, string> | undefined => {
  const out: Record<string, string> = {}
  if (value.trim() === "") return out
  for (const pair of value.split(",")) {
    const m = /^\s*([^\s,]+)(?:\s+([A-Za-z0-9+/=]*))?\s*$/.exec(pair)
    if (m === null || m[1]! in out) return undefined
    out[m[1]!] = m[2] === undefined ? "" : Buffer.from(m[2], "base64").toString("utf8")
  }
  return out
}
