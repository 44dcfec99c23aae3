/**
 * The key-value records of CasBlobStore, and their encoding.
 *
 *   blobs/<algo>:<hex>:<size>    one BlobRecord per key
 *   blocks/<algo>:<hex>:<size>   one BlockRecord per block of the chunked layout
 *
 * Values are small JSON documents with a version field, so that they stay
 * readable with any KV tool and can evolve. A blob record is in one of
 * three states (the state machine is described in publish.ts):
 *
 * - Live: the blob is stored (with a random id of this publication). Monolithic: one object at `locator`.
 *   Chunked: the manifest, i.e. its blocks in order and the id of what cut
 *   them (`chunker`, see BlockSource). Each block is stored
 *   as `[size, digest]`, plus a relative path when the block does not sit at
 *   its canonical place under `blockBase`; offsets follow from the sizes
 *   and are computed (and checked against the blob's size) when decoding.
 * - Pending: a put has claimed the key and is moving its bytes to `locator`.
 * - Deleting: a delete has hidden the blob and is removing its object.
 *
 * Pending and Deleting carry a random token and the time they were set, so
 * that their owner recognizes its own claim and others can tell a stale one.
 */
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import * as BinaryKey from "../core/BinaryKey.js"
import * as BlobLocator from "../core/BlobLocator.js"

/** KV namespace of blob records. */
export const BLOBS = "blobs/"
/** KV namespace of block records. */
export const BLOCKS = "blocks/"

/** The KV key of a blob's record. */
export const blobKey = (key: BinaryKey.BinaryKey): string => BLOBS + BinaryKey.render(key)
/** The KV key of a block's record. */
export const blockKey = (key: BinaryKey.BinaryKey): string => BLOCKS + BinaryKey.render(key)

/** The relative path of content under a prefix: `<algo>/<hex[0..2]>/<hex>` (256 fan-out directories). */
export const contentPath = (key: BinaryKey.BinaryKey): string =>
  `${key.algorithm}/${key.digest.slice(0, 2)}/${key.digest}`

/** One block of a chunked blob: its place in the blob and where its bytes are. */
export interface BlockRef {
  readonly key: BinaryKey.BinaryKey
  /** Offset of the block's first byte in the blob. */
  readonly offset: number
  readonly locator: BlobLocator.BlobLocator
}

/**
 * What cut a chunked blob's blocks: a Chunker id ("fastcdc2020"; "gear32"
 * for records written before the field existed), or "parts" for upload
 * parts assembled as they were sent. Reading never depends on it; it tells
 * which blobs' blocks can deduplicate against which.
 */
export type BlockSource = string

/** The source of manifests that name none: they were all written by the first chunker. */
export const LEGACY_CHUNKER: BlockSource = "gear32"

/** The source of blobs assembled from upload parts. */
export const PARTS: BlockSource = "parts"

/** How a live blob's bytes are kept. */
export type Storage =
  | { readonly _tag: "Monolithic"; readonly locator: BlobLocator.BlobLocator }
  | {
    readonly _tag: "Chunked"
    /** Where blocks live; a block at `blockBase + contentPath(block)` needs no path of its own. */
    readonly blockBase: BlobLocator.LocatorPrefix
    readonly blocks: ReadonlyArray<BlockRef>
    readonly chunker: BlockSource
  }

/** A stored blob. */
export interface Live {
  readonly _tag: "Live"
  /** Random per publication: a blob deleted and stored again never has a record equal to its earlier one. */
  readonly id: string
  readonly createdAt: number
  readonly contentType: string | undefined
  readonly storage: Storage
}

/** A put holds the key while it moves its staged bytes to `locator`. */
export interface Pending {
  readonly _tag: "Pending"
  readonly token: string
  readonly since: number
  readonly locator: BlobLocator.BlobLocator
}

/** A delete has hidden `blob` and is removing its object. */
export interface Deleting {
  readonly _tag: "Deleting"
  readonly token: string
  readonly since: number
  readonly blob: Live
}

/** The value under `blobs/<key>`. */
export type BlobRecord = Live | Pending | Deleting

/**
 * The value under `blocks/<key>`: a live block with its reference count, or one being deleted.
 * `at` is when a reference was last taken (absent in records written before it existed): a
 * reference a put holds is in no manifest until the put publishes, so the lifecycle's gc leaves
 * a block alone while `at` is within its grace period (see lifecycle/blocks.ts).
 */
export type BlockRecord =
  | { readonly _tag: "Live"; readonly refs: number; readonly locator: BlobLocator.BlobLocator; readonly at?: number | undefined }
  | { readonly _tag: "Deleting"; readonly token: string; readonly since: number; readonly locator: BlobLocator.BlobLocator }

// ---------------------------------------------------------------------------
// Wire format

const Version = Schema.Literal(1)
const Millis = Schema.NonNegativeInt

const LiveWire = Schema.Struct({
  v: Version,
  state: Schema.Literal("live"),
  id: Schema.String,
  algorithm: BinaryKey.HashAlgorithm,
  size: Schema.NonNegativeInt,
  createdAt: Millis,
  contentType: Schema.optional(Schema.String),
  layout: Schema.Literal("monolithic", "chunked"),
  locator: Schema.optional(Schema.String),
  blockBase: Schema.optional(Schema.String),
  chunker: Schema.optional(Schema.String),
  blocks: Schema.optional(Schema.Array(Schema.Union(
    Schema.Tuple(Schema.NonNegativeInt, Schema.String),
    Schema.Tuple(Schema.NonNegativeInt, Schema.String, Schema.String)
  )))
})
type LiveWire = typeof LiveWire.Type

const BlobWire = Schema.Union(
  LiveWire,
  Schema.Struct({
    v: Version,
    state: Schema.Literal("pending"),
    token: Schema.String,
    since: Millis,
    locator: Schema.String
  }),
  Schema.Struct({
    v: Version,
    state: Schema.Literal("deleting"),
    token: Schema.String,
    since: Millis,
    blob: LiveWire
  })
)

const BlockWire = Schema.Union(
  Schema.Struct({
    v: Version,
    state: Schema.Literal("live"),
    refs: Schema.Int.pipe(Schema.positive()),
    locator: Schema.String,
    at: Schema.optional(Millis)
  }),
  Schema.Struct({
    v: Version,
    state: Schema.Literal("deleting"),
    token: Schema.String,
    since: Millis,
    locator: Schema.String
  })
)

const decodeBlobWire = Schema.decodeUnknownEither(Schema.parseJson(BlobWire))
const decodeBlockWire = Schema.decodeUnknownEither(Schema.parseJson(BlockWire))

const encoder = new TextEncoder()
const decoder = new TextDecoder("utf-8", { fatal: true })
const json = (value: unknown): Uint8Array => encoder.encode(JSON.stringify(value))

const liveToWire = (key: BinaryKey.BinaryKey, live: Live): LiveWire => {
  const common = {
    v: 1 as const,
    state: "live" as const,
    id: live.id,
    algorithm: key.algorithm,
    size: key.size,
    createdAt: live.createdAt,
    ...(live.contentType === undefined ? {} : { contentType: live.contentType })
  }
  const storage = live.storage
  if (storage._tag === "Monolithic") {
    return { ...common, layout: "monolithic", locator: BlobLocator.render(storage.locator) }
  }
  const base = storage.blockBase.toString()
  return {
    ...common,
    layout: "chunked",
    blockBase: base,
    chunker: storage.chunker,
    blocks: storage.blocks.map((b) => {
      const text = BlobLocator.render(b.locator)
      const canonical = base + contentPath(b.key)
      return text === canonical
        ? [b.key.size, b.key.digest] as const
        : [b.key.size, b.key.digest, text.slice(base.length)] as const
    })
  }
}

/** Encodes a blob record; `key` is the blob's (its algorithm and size are recorded for readers). */
export const encodeBlob = (key: BinaryKey.BinaryKey, record: BlobRecord): Uint8Array => {
  switch (record._tag) {
    case "Live":
      return json(liveToWire(key, record))
    case "Pending":
      return json({
        v: 1,
        state: "pending",
        token: record.token,
        since: record.since,
        locator: BlobLocator.render(record.locator)
      })
    case "Deleting":
      return json({ v: 1, state: "deleting", token: record.token, since: record.since, blob: liveToWire(key, record.blob) })
  }
}

/** Encodes a block record. */
export const encodeBlock = (record: BlockRecord): Uint8Array =>
  record._tag === "Live"
    ? json({
      v: 1,
      state: "live",
      refs: record.refs,
      locator: BlobLocator.render(record.locator),
      ...(record.at === undefined ? {} : { at: record.at })
    })
    : json({ v: 1, state: "deleting", token: record.token, since: record.since, locator: BlobLocator.render(record.locator) })

const text = (bytes: Uint8Array): Either.Either<string, string> => {
  try {
    return Either.right(decoder.decode(bytes))
  } catch {
    return Either.left("the value is not UTF-8 text")
  }
}

const locator = (text: string): Either.Either<BlobLocator.BlobLocator, string> =>
  Either.mapLeft(BlobLocator.parse(text), (e) => e.message)

const liveFromWire = (key: BinaryKey.BinaryKey, wire: LiveWire): Either.Either<Live, string> => {
  if (wire.algorithm !== key.algorithm || wire.size !== key.size) {
    return Either.left(`the record describes ${wire.algorithm} content of ${wire.size} bytes, not ${BinaryKey.render(key)}`)
  }
  const common = { _tag: "Live" as const, id: wire.id, createdAt: wire.createdAt, contentType: wire.contentType }
  if (wire.layout === "monolithic") {
    if (wire.locator === undefined) return Either.left("a monolithic record has no locator")
    return Either.map(locator(wire.locator), (l): Live => ({ ...common, storage: { _tag: "Monolithic", locator: l } }))
  }
  if (wire.blockBase === undefined || wire.blocks === undefined) return Either.left("a chunked record has no manifest")
  const base = BlobLocator.parsePrefix(wire.blockBase)
  if (Either.isLeft(base)) return Either.left(base.left.message)
  const blocks: Array<BlockRef> = []
  let offset = 0
  for (const entry of wire.blocks) {
    const [size, digest, path] = entry
    const blockKey = BinaryKey.make(key.algorithm, digest, size)
    if (Either.isLeft(blockKey)) return Either.left(`block ${blocks.length}: ${blockKey.left.message}`)
    if (size === 0) return Either.left(`block ${blocks.length} is empty`)
    const where = locator(wire.blockBase + (path ?? contentPath(blockKey.right)))
    if (Either.isLeft(where)) return Either.left(`block ${blocks.length}: ${where.left}`)
    blocks.push({ key: blockKey.right, offset, locator: where.right })
    offset += size
  }
  if (offset !== key.size) return Either.left(`the blocks add up to ${offset} bytes, not ${key.size}`)
  return Either.right({ ...common, storage: { _tag: "Chunked", blockBase: base.right, blocks, chunker: wire.chunker ?? LEGACY_CHUNKER } })
}

/** Decodes a blob record of `key`; Left carries why the bytes are not a valid record. */
export const decodeBlob = (key: BinaryKey.BinaryKey, bytes: Uint8Array): Either.Either<BlobRecord, string> =>
  Either.flatMap(text(bytes), (t) =>
    Either.flatMap(Either.mapLeft(decodeBlobWire(t), (e) => e.message), (wire): Either.Either<BlobRecord, string> => {
      switch (wire.state) {
        case "live":
          return liveFromWire(key, wire)
        case "pending":
          return Either.map(locator(wire.locator), (l): BlobRecord => ({
            _tag: "Pending",
            token: wire.token,
            since: wire.since,
            locator: l
          }))
        case "deleting":
          return Either.map(liveFromWire(key, wire.blob), (blob): BlobRecord => ({
            _tag: "Deleting",
            token: wire.token,
            since: wire.since,
            blob
          }))
      }
    }))

/** Decodes a block record; Left carries why the bytes are not a valid record. */
export const decodeBlock = (bytes: Uint8Array): Either.Either<BlockRecord, string> =>
  Either.flatMap(text(bytes), (t) =>
    Either.flatMap(Either.mapLeft(decodeBlockWire(t), (e) => e.message), (wire) =>
      Either.map(locator(wire.locator), (l): BlockRecord =>
        wire.state === "live"
          ? { _tag: "Live", refs: wire.refs, locator: l, ...(wire.at === undefined ? {} : { at: wire.at }) }
          : { _tag: "Deleting", token: wire.token, since: wire.since, locator: l })))
