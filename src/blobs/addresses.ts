/**
 * Where CasBlobStore keeps objects, under `<scheme>://<bucket>/`:
 *
 *   <algo>/<hex[0..2]>/<hex>           a monolithic blob, at its content address
 *   <blocks>/<algo>/<hex[0..2]>/<hex>  a block of the chunked layout
 *   <staging>/<uuid>                   a monolithic put in flight
 *   <staging>/uploads/...              parts staged for BlobAssembly
 *
 * and the locator it reports for a blob.
 */
import * as Either from "effect/Either"
import { randomUUID } from "node:crypto"
import * as BinaryKey from "../core/BinaryKey.js"
import * as BlobLocator from "../core/BlobLocator.js"
import * as BlobMeta from "./BlobMeta.js"
import { invalid } from "./errors.js"
import { defaults, type Settings } from "./options.js"

/** Scheme and bucket of the locator reported for a chunked blob: its manifest, `kv://blobs/<key>`. */
export const MANIFEST_SCHEME = "kv"
const MANIFEST_BUCKET = "blobs"

const locatorIn = (method: string, s: Settings, path: string) =>
  Either.mapLeft(BlobLocator.make(s.scheme, s.bucket, path), invalid(method))

/** The usual address of a monolithic blob. */
export const contentLocator = (s: Settings, key: BinaryKey.BinaryKey) => locatorIn("put", s, BlobMeta.contentPath(key))

/** A fresh address next to the usual one, for content whose usual address an unfinished delete may still remove. */
export const alternateLocator = (s: Settings, key: BinaryKey.BinaryKey) =>
  locatorIn("put", s, `${BlobMeta.contentPath(key)}.${randomUUID()}`)

/** The address of a block: the usual one, or (`alternate`) a fresh one next to it. */
export const blockLocator = (s: Settings, key: BinaryKey.BinaryKey, alternate: boolean) =>
  Either.mapLeft(
    BlobLocator.child(s.blockBase, BlobMeta.contentPath(key) + (alternate ? `.${randomUUID()}` : "")),
    invalid("put")
  )

/** A fresh staging address for one monolithic put. */
export const stagingLocator = (s: Settings) => locatorIn("put", s, `${s.stagingPrefix}/${randomUUID()}`)

/** Where BlobAssembly callers stage parts (the default one when the options are invalid: assembly then fails anyway). */
export const uploadsPrefix = (settings: Either.Either<Settings, unknown>): BlobLocator.LocatorPrefix =>
  Either.getOrElse(
    Either.flatMap(settings, (s) =>
      Either.mapLeft(BlobLocator.makePrefix(s.scheme, s.bucket, `${s.stagingPrefix}/uploads/`), invalid("assemble"))),
    () => new BlobLocator.LocatorPrefix({ scheme: defaults.scheme, bucket: defaults.bucket, path: `${defaults.stagingPrefix}/uploads/` }, true)
  )

export const sameLocator = (a: BlobLocator.BlobLocator, b: BlobLocator.BlobLocator): boolean =>
  BlobLocator.render(a) === BlobLocator.render(b)

/** The locator reported for a stored blob: its object, or for a chunked blob its manifest (`kv://blobs/<key>`). */
export const reportedLocator = (key: BinaryKey.BinaryKey, live: BlobMeta.Live): BlobLocator.BlobLocator =>
  live.storage._tag === "Monolithic"
    ? live.storage.locator
    // Cannot fail: a checked key renders to a short path without '/' or control characters.
    : Either.getOrThrow(BlobLocator.make(MANIFEST_SCHEME, MANIFEST_BUCKET, BinaryKey.render(key)))
