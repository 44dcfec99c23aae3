/**
 * Key-value keys: UTF-8 strings, 1..1024 bytes, no NUL or other C0 control
 * characters, no lone surrogates. By convention the first `/`-separated
 * segment is a namespace (`blobs/…`, `ranges/…`, `replicas/…`) that backends
 * may map to a column family, a sublevel or a table.
 *
 * Keys are ordered by their UTF-8 bytes everywhere (LevelDB order, PostgreSQL
 * `COLLATE "C"`), so `list` returns the same order on every backend.
 */
import * as Either from "effect/Either"
import { invalidValue, type InvalidValue } from "./Errors.js"
import { hasLoneSurrogate, utf8Length } from "./internal/text.js"

export const MAX_KEY_BYTES = 1024

const C0 = /[\u0000-\u001f]/

/** Checks a key; an empty prefix is allowed only where `allowEmpty` says so. */
export const validate = (key: string, allowEmpty = false): Either.Either<string, InvalidValue> =>
  typeof key !== "string"
    ? Either.left(invalidValue("KvKey", key, "a key must be a string"))
    : key.length === 0 && !allowEmpty
    ? Either.left(invalidValue("KvKey", key, "a key must not be empty"))
    : C0.test(key)
    ? Either.left(invalidValue("KvKey", key, "a key must not contain NUL or control characters"))
    : hasLoneSurrogate(key)
    ? Either.left(invalidValue("KvKey", key, "a key must be valid Unicode"))
    : utf8Length(key) > MAX_KEY_BYTES
    ? Either.left(invalidValue("KvKey", key, `a key is at most ${MAX_KEY_BYTES} UTF-8 bytes`))
    : Either.right(key)

/** Compares two keys by their UTF-8 bytes (the order `list` uses). */
export const compare = (a: string, b: string): number => Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"))

/** The smallest key greater than every key starting with `prefix` (for range scans), or undefined. */
export const prefixUpperBound = (prefix: string): Uint8Array | undefined => {
  const bytes = Buffer.from(prefix, "utf8")
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i]! < 0xff) {
      const out = Buffer.from(bytes.subarray(0, i + 1))
      out[i] = bytes[i]! + 1
      return out
    }
  }
  return undefined
}

/**
 * Every namespace Graviton itself writes, the one list of them: `blobs`
 * and `blocks` (the content-addressed store's records), `ranges` (the
 * KV-backed RangeTracker), `replicas` (the KV-backed ReplicaIndex),
 * `uploads` (resumable upload records), `cli` (the CLI's own state) and
 * `lifecycle` (scratch entries of a running gc or check) and `stats` (the
 * content-addressed store's space counters).
 * A backend that keeps namespaces apart (LevelDB sublevels) declares these
 * and refuses any other unless the application declares it too; a test
 * checks that each module's prefix is listed here.
 */
export const NAMESPACES: ReadonlyArray<string> = ["blobs", "blocks", "ranges", "replicas", "uploads", "cli", "lifecycle", "stats"]

/** The namespace of a key: its first `/`-separated segment, or undefined when it has none. */
export const namespaceOf = (key: string): string | undefined => {
  const slash = key.indexOf("/")
  return slash > 0 ? key.slice(0, slash) : undefined
}
