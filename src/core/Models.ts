/** Plain records that cross port boundaries. */
import type * as Option from "effect/Option"
import type { BinaryKey, HashAlgorithm } from "./BinaryKey.js"
import type { BlobLocator } from "./BlobLocator.js"

/** What is known about a stored blob. */
export interface BlobStat {
  readonly key: BinaryKey
  readonly size: number
  /** Where the primary copy lives, when the store exposes it. */
  readonly locator: Option.Option<BlobLocator>
  readonly createdAt: Option.Option<Date>
}

/** Instructions for a BlobStore.put. Every field is optional. */
export interface BlobWritePlan {
  /** Hash algorithm for the key; defaults to the store's (sha256). */
  readonly algorithm?: HashAlgorithm | undefined
  /** The key the caller expects; a mismatch fails and stores nothing. */
  readonly expectedKey?: BinaryKey | undefined
  /** Reject the stream as soon as it exceeds this many bytes. */
  readonly maxSize?: number | undefined
  /** Content type recorded with the blob. */
  readonly contentType?: string | undefined
}

/** Outcome of a BlobStore.put. */
export interface BlobWriteResult {
  readonly key: BinaryKey
  readonly locator: BlobLocator
  readonly size: number
  /** True when the content was already stored and nothing new was written. */
  readonly deduplicated: boolean
  /**
   * True when the content was recorded but its stored bytes were missing or
   * damaged, and this put stored them again (then `deduplicated` is false).
   * Absent from stores that do not heal.
   */
  readonly repaired?: boolean | undefined
}

/** What is known about an object at a locator. */
export interface ObjectStat {
  readonly locator: BlobLocator
  readonly size: number
  /** Opaque version tag (S3 ETag, content hash, row version ...), when the backend has one. */
  readonly etag: Option.Option<string>
  readonly lastModified: Option.Option<Date>
  readonly contentType: Option.Option<string>
  /** User metadata stored with the object (string keys and values). */
  readonly metadata: Readonly<Record<string, string>>
}

/** Options for MutableObjectStore.put. */
export interface PutOptions {
  readonly contentType?: string | undefined
  readonly metadata?: Readonly<Record<string, string>> | undefined
  /** Total length when known in advance; lets a backend pick a single-request upload. */
  readonly size?: number | undefined
  /**
   * Create-only: fail with AlreadyExists, storing nothing, when an object is
   * already at the locator. Only where the store declares `conditionalWrite`;
   * elsewhere such a put fails with Unsupported.
   */
  readonly ifAbsent?: boolean | undefined
}
