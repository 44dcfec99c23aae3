/**
 * Fast readers of the records the walk reads by the million (blob and block
 * records, replica sets). BlobMeta's decoders validate with Schema and build
 * a locator object per block, which cost more than listing the records; the
 * walk needs texts and a few numbers. Each reader here accepts exactly the
 * common shapes CasBlobStore writes, checked by hand, and answers
 * `undefined` for anything else: the caller then uses BlobMeta's decoder,
 * which accepts or rejects (with its message) as before. So what is
 * decodable and what is not is still BlobMeta's decision.
 */
import * as BinaryKey from "../core/BinaryKey.js"
import * as BlobLocator from "../core/BlobLocator.js"
import * as BlobMeta from "../blobs/BlobMeta.js"

const decoder = new TextDecoder("utf-8", { fatal: true })

const HEX64 = /^[0-9a-f]{64}$/
const ALGORITHMS = new Set(["sha256", "blake3"])

const parse = (bytes: Uint8Array): unknown => {
  try {
    return JSON.parse(decoder.decode(bytes))
  } catch {
    return undefined
  }
}

const isCount = (x: unknown): x is number => typeof x === "number" && Number.isSafeInteger(x) && x >= 0

/** A rendered key `<algo>:<hex>:<size>` split without building a BinaryKey; undefined when malformed. */
export const splitKey = (rendered: string): { readonly algorithm: string; readonly digest: string; readonly size: number } | undefined => {
  const i = rendered.indexOf(":")
  const j = rendered.lastIndexOf(":")
  if (i < 0 || j !== i + 65) return undefined
  const algorithm = rendered.slice(0, i)
  const digest = rendered.slice(i + 1, j)
  const sizeText = rendered.slice(j + 1)
  if (!ALGORITHMS.has(algorithm) || !HEX64.test(digest) || !/^(0|[1-9][0-9]*)$/.test(sizeText)) return undefined
  const size = Number(sizeText)
  return Number.isSafeInteger(size) ? { algorithm, digest, size } : undefined
}

/** `<algo>/<hex>` of a rendered key (see context.joinKeyOf). */
export const joinKeyOfRendered = (k: { readonly algorithm: string; readonly digest: string }): string => `${k.algorithm}/${k.digest}`

/** A block record as the walk needs it: the locator as text. */
export type Block =
  | { readonly _tag: "Live"; readonly refs: number; readonly locator: string; readonly at: number | undefined }
  | { readonly _tag: "Deleting"; readonly since: number; readonly locator: string }

/**
 * Whether a locator text is one CasBlobStore writes under `root`
 * (`<root><area><algo>/<xx>/<hex>[.<uuid>]`), which BlobLocator.parse
 * accepts; anything else is left to it.
 */
const CONTENT_TAIL = /^(sha256|blake3)\/[0-9a-f]{2}\/[0-9a-f]{64}(\.[0-9a-f-]{36})?$/
const plainLocator = (text: string, root: string, area: string): boolean =>
  text.startsWith(root) && text.startsWith(area, root.length) && CONTENT_TAIL.test(text.slice(root.length + area.length))

const fromMeta = (r: BlobMeta.BlockRecord): Block =>
  r._tag === "Live"
    ? { _tag: "Live", refs: r.refs, locator: BlobLocator.render(r.locator), at: r.at }
    : { _tag: "Deleting", since: r.since, locator: BlobLocator.render(r.locator) }

/** Decodes a block record; a string says why it is not one (BlobMeta's message). */
export const block = (bytes: Uint8Array, root: string, area: string): Block | string => {
  const w = parse(bytes) as Record<string, unknown> | undefined
  if (
    w !== undefined && w !== null && typeof w === "object" && w.v === 1 && w.state === "live" &&
    typeof w.refs === "number" && Number.isSafeInteger(w.refs) && w.refs > 0 &&
    typeof w.locator === "string" && (w.at === undefined || isCount(w.at)) &&
    Object.keys(w).length === (w.at === undefined ? 4 : 5) && plainLocator(w.locator, root, area)
  ) {
    return { _tag: "Live", refs: w.refs, locator: w.locator, at: w.at as number | undefined }
  }
  const full = BlobMeta.decodeBlock(bytes)
  return full._tag === "Right" ? fromMeta(full.right) : full.left
}

/** A blob record as the walk needs it. */
export type Blob =
  | { readonly _tag: "Monolithic"; readonly live: boolean; readonly locator: string }
  /** Live and chunked: each distinct block once, as rendered key and locator text. */
  | { readonly _tag: "Chunked"; readonly live: boolean; readonly blocks: ReadonlyArray<readonly [string, string]> }
  /** Pending: a put moving its staged bytes to `locator`, since `since`. */
  | { readonly _tag: "Pending"; readonly locator: string; readonly since: number }

/** Each distinct block of a manifest once (a blob owns one reference per distinct block). */
const distinct = (blocks: ReadonlyArray<BlobMeta.BlockRef>): ReadonlyArray<readonly [string, string]> => {
  const seen = new Set<string>()
  const out: Array<readonly [string, string]> = []
  for (const b of blocks) {
    const k = BinaryKey.render(b.key)
    if (seen.has(k)) continue
    seen.add(k)
    out.push([k, BlobLocator.render(b.locator)])
  }
  return out
}

const fromBlobMeta = (r: BlobMeta.BlobRecord): Blob => {
  if (r._tag === "Pending") return { _tag: "Pending", locator: BlobLocator.render(r.locator), since: r.since }
  const live = r._tag === "Live"
  const blob = r._tag === "Live" ? r : r.blob
  return blob.storage._tag === "Monolithic"
    ? { _tag: "Monolithic", live, locator: BlobLocator.render(blob.storage.locator) }
    : { _tag: "Chunked", live, blocks: distinct(blob.storage.blocks) }
}

const LIVE_FIELDS = new Set(["v", "state", "id", "algorithm", "size", "createdAt", "contentType", "layout", "blockBase", "blocks"])

/**
 * The fast path for a live chunked record whose blocks all sit at their
 * canonical place under a block base inside `root` (what CasBlobStore
 * writes); undefined for anything else.
 */
const fastChunked = (key: BinaryKey.BinaryKey, w: Record<string, unknown>, root: string, area: string): Blob | undefined => {
  if (
    w.v !== 1 || w.state !== "live" || w.layout !== "chunked" || typeof w.id !== "string" ||
    w.algorithm !== key.algorithm || w.size !== key.size || !isCount(w.createdAt) ||
    (w.contentType !== undefined && typeof w.contentType !== "string") ||
    typeof w.blockBase !== "string" || w.blockBase !== root + area || !Array.isArray(w.blocks)
  ) return undefined
  for (const f in w) if (!LIVE_FIELDS.has(f)) return undefined
  const seen = new Set<string>()
  const out: Array<readonly [string, string]> = []
  let total = 0
  for (const entry of w.blocks as ReadonlyArray<unknown>) {
    if (!Array.isArray(entry) || entry.length !== 2) return undefined
    const [size, digest] = entry as [unknown, unknown]
    if (!isCount(size) || size === 0 || typeof digest !== "string" || !HEX64.test(digest)) return undefined
    total += size
    const k = `${key.algorithm}:${digest}:${size}`
    if (seen.has(k)) continue
    seen.add(k)
    out.push([k, `${w.blockBase}${key.algorithm}/${digest.slice(0, 2)}/${digest}`])
  }
  if (total !== key.size) return undefined
  return { _tag: "Chunked", live: true, blocks: out }
}

/** Decodes the blob record of `key`; a string says why it is not one (BlobMeta's message). */
export const blob = (key: BinaryKey.BinaryKey, bytes: Uint8Array, root: string, blockArea: string): Blob | string => {
  const w = parse(bytes) as Record<string, unknown> | undefined
  if (w !== undefined && w !== null && typeof w === "object" && !Array.isArray(w)) {
    const fast = fastChunked(key, w, root, blockArea)
    if (fast !== undefined) return fast
  }
  const full = BlobMeta.decodeBlob(key, bytes)
  return full._tag === "Right" ? fromBlobMeta(full.right) : full.left
}
