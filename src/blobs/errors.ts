/** The errors of CasBlobStore: every failure is a BlobError of backend "cas". */
import type * as BinaryKey from "../core/BinaryKey.js"
import { BlobError, type MetadataError, type ObjectStoreError, toPortError } from "../core/Errors.js"

/** Backend name in errors, events and metrics of this store. */
export const BACKEND = "cas"

export const fail = (reason: BlobError["reason"], method: string, description: string) =>
  new BlobError({ reason, backend: BACKEND, method, description })

/** The one error mapping of this store: a port's error becomes a BlobError with the same reason. */
export const fromPortError = (method: string) => (e: ObjectStoreError | MetadataError): BlobError =>
  new BlobError({ reason: e.reason, backend: BACKEND, method, description: e.message, cause: e })

/** An invalid value (key, locator, range, option) as InvalidInput. */
export const invalid = (method: string) => toPortError(BlobError, BACKEND, method)

/** A KV record that does not decode. */
export const corrupt = (method: string, kvKey: string, why: string) =>
  fail("Corrupted", method, `the record ${JSON.stringify(kvKey)} is unreadable: ${why}`)

/** Stored bytes that do not match their key. */
export const corrupted = (method: string, key: BinaryKey.BinaryKey, why: string) =>
  fail("Corrupted", method, `the stored bytes of ${key} ${why}`)
