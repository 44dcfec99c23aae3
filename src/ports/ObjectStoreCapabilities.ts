/**
 * What an object store can do, stated by the store itself (as OpenDAL's
 * `info().capability`): a plain value on every Immutable/MutableObjectStore,
 * read by the CAS where it makes a backend-dependent decision and by the
 * conformance suite, which checks each declared feature it can observe
 * through the port (src/testing/ObjectStore.ts). A store declares what holds
 * for its configuration and endpoint (S3: the encryption it applies, and the
 * features an S3-compatible server lacks, see S3ClientOptions.unsupported).
 */

/** Server-side encryption of the objects a store writes. */
export type ServerSideEncryption = "none" | "sse-s3" | "sse-kms" | "sse-c"

/** The capability record of one object store. */
export interface ObjectStoreCapabilities {
  /** `move` renames in place: atomic, no byte copied, the object keeps its etag and lastModified. False: copy then delete. */
  readonly nativeMove: boolean
  /** `copy` runs inside the store (server side, or by sharing content): no byte passes through the caller. */
  readonly nativeCopy: boolean
  /** Large puts go up as independently retried parts (a multipart upload). */
  readonly multipart: boolean
  /** A put can be made create-only (`PutOptions.ifAbsent`): it refuses to replace an existing object. */
  readonly conditionalWrite: boolean
  /** `get` accepts a range and reads only that range; without it a ranged get fails with Unsupported. */
  readonly rangedRead: boolean
  /** `head` returns the contentType given to `put` (and copy and move keep it). */
  readonly contentType: boolean
  /** `head` returns the user metadata given to `put` (and copy and move keep it). */
  readonly metadata: boolean
  /** `head` has an etag, and overwriting with other content changes it. */
  readonly etag: boolean
  /** `head` has a lastModified date. */
  readonly lastModified: boolean
  /** Server-side encryption applied to every object written. */
  readonly encryption: ServerSideEncryption
  /**
   * An object may sit at `a` while others sit under `a/` (object stores
   * allow it; a filesystem, where `a` would be both a file and a directory,
   * does not: such a put fails with Conflict).
   */
  readonly fileAndPrefix: boolean
  /** Largest object a put accepts, in bytes; undefined when the store knows no limit. */
  readonly maxObjectSize: number | undefined
}

/** The boolean features, which a declaration can turn off one by one. */
export type ObjectStoreFeature = {
  readonly [K in keyof ObjectStoreCapabilities]: ObjectStoreCapabilities[K] extends boolean ? K : never
}[keyof ObjectStoreCapabilities]

/** Every boolean feature, in declaration order. */
export const features: ReadonlyArray<ObjectStoreFeature> = [
  "nativeMove",
  "nativeCopy",
  "multipart",
  "conditionalWrite",
  "rangedRead",
  "contentType",
  "metadata",
  "etag",
  "lastModified",
  "fileAndPrefix"
]

/** True when `name` is one of the boolean features. */
export const isFeature = (name: string): name is ObjectStoreFeature => (features as ReadonlyArray<string>).includes(name)

/**
 * `capabilities` with the named features turned off: for an endpoint that
 * lacks what its backend could otherwise do (an S3-compatible server, say).
 * "encryption" turns the declared encryption to "none".
 */
export const without = (
  capabilities: ObjectStoreCapabilities,
  lacking: ReadonlyArray<ObjectStoreFeature | "encryption">
): ObjectStoreCapabilities => {
  const next: { -readonly [K in keyof ObjectStoreCapabilities]: ObjectStoreCapabilities[K] } = { ...capabilities }
  for (const name of lacking) {
    if (name === "encryption") next.encryption = "none"
    else next[name] = false
  }
  return next
}
