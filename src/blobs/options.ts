/**
 * The options of a CasBlobStore, their defaults, and `resolve`, which checks
 * them once into the Settings the put paths use.
 */
import * as Duration from "effect/Duration"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import type * as BinaryKey from "../core/BinaryKey.js"
import * as BlobLocator from "../core/BlobLocator.js"
import type { BlobError } from "../core/Errors.js"
import * as Chunker from "./Chunker.js"
import { fail, invalid } from "./errors.js"

/** How new blobs are stored: one object per blob, or content-defined blocks stored once each. */
export type Layout =
  | { readonly _tag: "Monolithic" }
  | {
    readonly _tag: "Chunked"
    readonly min: number
    readonly avg: number
    readonly max: number
    /** Which chunker cuts new blobs, recorded in each manifest: fastcdc2020 (when absent), or gear32 for the first releases' boundaries. */
    readonly chunker?: Chunker.ChunkerId | undefined
  }

/** One object per blob (the default). */
export const monolithic: Layout = { _tag: "Monolithic" }

/**
 * Content-defined blocks cut by FastCDC 2020: 128 KiB / 512 KiB / 2 MiB by
 * default (see Chunker.defaults); a missing min or max is avg / 4 or avg * 4.
 */
export const chunked = (
  sizes: Partial<Chunker.ChunkerOptions> & { readonly chunker?: Chunker.ChunkerId | undefined } = {}
): Layout => {
  const avg = sizes.avg ?? Chunker.defaults.avg
  return {
    _tag: "Chunked",
    min: sizes.min ?? Math.floor(avg / 4),
    avg,
    max: sizes.max ?? avg * 4,
    chunker: sizes.chunker ?? Chunker.CURRENT
  }
}

/** Options of a CasBlobStore. Invalid ones make every put fail with InvalidInput (reads still work). */
export interface Options {
  /** Hash algorithm of keys when the plan names none (default sha256). */
  readonly algorithm?: BinaryKey.HashAlgorithm | undefined
  /** Layout of newly stored blobs (default monolithic); existing blobs are read whatever their layout. */
  readonly layout?: Layout | undefined
  /** Scheme of the locators of stored objects (default "file": what FsObjectStore answers to; memory takes any). */
  readonly scheme?: string | undefined
  /** Bucket of stored objects (default "blobs"). */
  readonly bucket?: string | undefined
  /** Path prefix of staged puts inside the bucket (default "staging"). */
  readonly stagingPrefix?: string | undefined
  /** Path prefix of blocks inside the bucket (default "blocks"). */
  readonly blockPrefix?: string | undefined
  /**
   * How long a Pending or Deleting record of another writer is respected
   * before it is taken over as abandoned (default 30 seconds). Puts of the
   * same content wait while another put holds a fresh claim, polling with
   * `Effect.sleep` (under TestClock, advance the clock or use the live one).
   */
  readonly lease?: Duration.DurationInput | undefined
  /**
   * What a put that finds its content already stored checks before reporting
   * it deduplicated (see `Heal`; default "size").
   */
  readonly heal?: Heal | undefined
}

/**
 * How a put heals stored bytes that are missing or damaged, when it finds
 * its content (or a block of it) already recorded. The put has the bytes,
 * verified against the key, so it stores them again and reports `repaired`.
 *
 * - "size": one `head` per object found (the blob's, or each block's): a
 *   missing object or one of the wrong size is re-stored. Cheap (a stat on
 *   the fs store), and catches deleted and truncated objects, not a flipped
 *   byte.
 * - "verify": also reads each object found back and hashes it: catches any
 *   corruption, at the cost of reading what the put would have skipped.
 * - "off": trust the record (the behaviour before healing existed).
 */
export type Heal = "size" | "verify" | "off"

/** Defaults of the options. */
export const defaults = {
  scheme: "file",
  bucket: "blobs",
  stagingPrefix: "staging",
  blockPrefix: "blocks",
  lease: Duration.seconds(30),
  heal: "size"
} as const

/** Options once checked. */
export interface Settings {
  readonly algorithm: BinaryKey.HashAlgorithm
  readonly layout: Layout
  readonly scheme: string
  readonly bucket: string
  readonly stagingPrefix: string
  readonly blockBase: BlobLocator.LocatorPrefix
  readonly leaseMillis: number
  readonly heal: Heal
}

/** First path segments of content addresses, which the staging and block prefixes must not use. */
const RESERVED_FIRST_SEGMENTS: ReadonlyArray<string> = ["sha256", "blake3"]

const isAlgorithm = (a: unknown): a is BinaryKey.HashAlgorithm => a === "sha256" || a === "blake3"

/** Staging and block prefixes must be valid paths that cannot meet content addresses or each other. */
const checkPrefixes = (scheme: string, bucket: string, stagingPrefix: string, blockPrefix: string): Option.Option<BlobError> => {
  for (const [name, prefix] of [["stagingPrefix", stagingPrefix], ["blockPrefix", blockPrefix]] as const) {
    const checked = BlobLocator.make(scheme, bucket, `${prefix}/x`)
    if (Either.isLeft(checked)) return Option.some(invalid("put")(checked.left))
    if (RESERVED_FIRST_SEGMENTS.includes(prefix.split("/")[0]!)) {
      return Option.some(fail("InvalidInput", "put", `${name} ${JSON.stringify(prefix)} collides with content addresses`))
    }
  }
  return stagingPrefix.split("/")[0] === blockPrefix.split("/")[0]
    ? Option.some(fail("InvalidInput", "put", "stagingPrefix and blockPrefix must start with different segments"))
    : Option.none()
}

const checkLayout = (layout: Layout): Option.Option<BlobError> => {
  if (layout?._tag === "Chunked") {
    const sizes = Chunker.validate(layout, layout.chunker)
    return Either.isLeft(sizes) ? Option.some(invalid("put")(sizes.left)) : Option.none()
  }
  return layout?._tag === "Monolithic"
    ? Option.none()
    : Option.some(fail("InvalidInput", "put", "the layout must be monolithic or chunked"))
}

/** Checks the options once; the store keeps the outcome and refuses puts when it is an error. */
export const resolve = (options: Options): Either.Either<Settings, BlobError> => {
  const scheme = options.scheme ?? defaults.scheme
  const bucket = options.bucket ?? defaults.bucket
  const stagingPrefix = options.stagingPrefix ?? defaults.stagingPrefix
  const blockPrefix = options.blockPrefix ?? defaults.blockPrefix
  const algorithm = options.algorithm ?? "sha256"
  const layout = options.layout ?? monolithic
  if (!isAlgorithm(algorithm)) {
    return Either.left(fail("InvalidInput", "put", `unknown hash algorithm ${JSON.stringify(algorithm)}`))
  }
  const wrong = Option.orElse(checkPrefixes(scheme, bucket, stagingPrefix, blockPrefix), () => checkLayout(layout))
  if (Option.isSome(wrong)) return Either.left(wrong.value)
  const heal = options.heal ?? defaults.heal
  if (heal !== "size" && heal !== "verify" && heal !== "off") {
    return Either.left(fail("InvalidInput", "put", `heal must be "size", "verify" or "off", got ${JSON.stringify(heal)}`))
  }
  const lease = Duration.decodeUnknown(options.lease ?? defaults.lease)
  if (Option.isNone(lease)) return Either.left(fail("InvalidInput", "put", "lease is not a duration"))
  const blockBase = BlobLocator.makePrefix(scheme, bucket, `${blockPrefix}/`)
  if (Either.isLeft(blockBase)) return Either.left(invalid("put")(blockBase.left))
  return Either.right({
    algorithm,
    layout,
    scheme,
    bucket,
    stagingPrefix,
    blockBase: blockBase.right,
    leaseMillis: Duration.toMillis(lease.value),
    heal
  })
}
