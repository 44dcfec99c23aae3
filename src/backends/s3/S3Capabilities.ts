/**
 * What the S3 object store declares it can do, from its settings: S3 has no
 * rename (move is a server-side copy, then a delete), copies server side,
 * uploads large objects in parts, and honours `If-None-Match: *` unless
 * `conditionalWrites` is off. The
 * encryption is the configured one; `unsupported` removes what an
 * S3-compatible endpoint lacks.
 */
import type { ObjectStoreCapabilities, ServerSideEncryption } from "../../ports/ObjectStoreCapabilities.js"
import { without } from "../../ports/ObjectStoreCapabilities.js"
import { plan } from "./internal/parts.js"
import { GiB, type S3Settings } from "./S3Config.js"

/** S3's largest object: 5 TiB. */
export const MAX_OBJECT_SIZE = 5 * 1024 * GiB

const encryptionOf = (settings: S3Settings): ServerSideEncryption => {
  switch (settings.encryption._tag) {
    case "None":
      return "none"
    case "S3":
      return "sse-s3"
    case "Kms":
      return "sse-kms"
    case "Customer":
      return "sse-c"
  }
}

/** The capabilities of an S3 object store with these settings. */
export const of = (settings: S3Settings): ObjectStoreCapabilities =>
  without({
    nativeMove: false,
    nativeCopy: true,
    multipart: true,
    conditionalWrite: settings.conditionalWrites,
    rangedRead: true,
    contentType: true,
    metadata: true,
    etag: true,
    lastModified: true,
    encryption: encryptionOf(settings),
    fileAndPrefix: true,
    // A stream of unknown length: the most the part plan can hold (equal parts cap it lower).
    maxObjectSize: Math.min(
      MAX_OBJECT_SIZE,
      plan({
        partSize: settings.partSize,
        maxPartSize: settings.maxPartSize,
        maxParts: settings.maxParts,
        equalParts: settings.equalParts
      }).capacity
    )
  }, settings.unsupported)
