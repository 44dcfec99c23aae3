/**
 * BlobLocator: where bytes live, `scheme://bucket/path`. Not an identity:
 * the same content may sit at many locators (replicas, staging).
 *
 * Parsing is strict so that every backend can map a locator to its native
 * name (file path, S3 key, table row) without escaping surprises.
 */
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { invalidValue, type InvalidValue } from "./Errors.js"
import { CONTROL, hasLoneSurrogate, utf8Length } from "./internal/text.js"

export const MAX_BUCKET_BYTES = 63
export const MAX_PATH_BYTES = 1024

const SCHEME = /^[a-z][a-z0-9+.-]{0,31}$/

/** A validated `scheme://bucket/path`. */
export class BlobLocator extends Schema.Class<BlobLocator>("graviton/BlobLocator")(
  Schema.Struct({
    scheme: Schema.String,
    bucket: Schema.String,
    /** `/`-separated relative path; never empty, no `.`/`..`/empty segments. */
    path: Schema.String
  }).pipe(
    // `new BlobLocator(...)` applies the same rules as `parse`, so no invalid locator can exist.
    Schema.filter((l) => checkAll(l.scheme, l.bucket, l.path, false)?.description ?? true)
  )
) {
  override toString(): string {
    return render(this)
  }
}

/**
 * A listing prefix `scheme://bucket/` or `scheme://bucket/some/pre`: like a
 * locator, but the path may be empty and may end inside a segment or on `/`.
 */
export class LocatorPrefix extends Schema.Class<LocatorPrefix>("graviton/LocatorPrefix")(
  Schema.Struct({ scheme: Schema.String, bucket: Schema.String, path: Schema.String }).pipe(
    Schema.filter((l) => checkAll(l.scheme, l.bucket, l.path, true)?.description ?? true)
  )
) {
  override toString(): string {
    return `${this.scheme}://${this.bucket}/${this.path}`
  }
}

/** Renders `scheme://bucket/path`; `parse(render(l))` gives back `l`. */
export const render = (l: BlobLocator): string => `${l.scheme}://${l.bucket}/${l.path}`

const checkScheme = (text: string, scheme: string): InvalidValue | undefined =>
  scheme.length === 0
    ? invalidValue("BlobLocator", text, "the scheme is empty")
    : !SCHEME.test(scheme)
    ? invalidValue("BlobLocator", text, "the scheme must be lower-case letters, digits, '+', '-' or '.'")
    : undefined

const checkBucket = (text: string, bucket: string): InvalidValue | undefined => {
  if (bucket.length === 0) return invalidValue("BlobLocator", text, "the bucket is empty")
  if (bucket.includes("/")) return invalidValue("BlobLocator", text, "the bucket may not contain '/'")
  if (CONTROL.test(bucket)) return invalidValue("BlobLocator", text, "the bucket contains a control character")
  if (hasLoneSurrogate(bucket)) return invalidValue("BlobLocator", text, "the bucket is not valid Unicode")
  if (bucket === "." || bucket === "..") return invalidValue("BlobLocator", text, "the bucket may not be '.' or '..'")
  if (utf8Length(bucket) > MAX_BUCKET_BYTES) {
    return invalidValue("BlobLocator", text, `the bucket is longer than ${MAX_BUCKET_BYTES} bytes`)
  }
  return undefined
}

const checkPath = (text: string, path: string, isPrefix: boolean): InvalidValue | undefined => {
  if (path.length === 0 && !isPrefix) return invalidValue("BlobLocator", text, "the path is empty")
  if (path.startsWith("/")) return invalidValue("BlobLocator", text, "the path may not start with '/'")
  if (CONTROL.test(path)) return invalidValue("BlobLocator", text, "the path contains a control character")
  if (hasLoneSurrogate(path)) return invalidValue("BlobLocator", text, "the path is not valid Unicode")
  if (utf8Length(path) > MAX_PATH_BYTES) {
    return invalidValue("BlobLocator", text, `the path is longer than ${MAX_PATH_BYTES} bytes`)
  }
  const segments = path.split("/")
  // A prefix may end on '/' (an empty last segment) or inside a segment.
  const complete = isPrefix ? segments.slice(0, -1) : segments
  for (const segment of complete) {
    if (segment === "") return invalidValue("BlobLocator", text, "the path has an empty segment ('//' or a trailing '/')")
    if (segment === "." || segment === "..") {
      return invalidValue("BlobLocator", text, "the path may not contain '.' or '..' segments")
    }
  }
  if (isPrefix && (segments[segments.length - 1] === "." || segments[segments.length - 1] === "..")) {
    return invalidValue("BlobLocator", text, "the path may not contain '.' or '..' segments")
  }
  return undefined
}

const split = (text: string): Either.Either<readonly [string, string, string], InvalidValue> => {
  const sep = text.indexOf("://")
  if (sep < 0) return Either.left(invalidValue("BlobLocator", text, "expected scheme://bucket/path"))
  const scheme = text.slice(0, sep)
  const rest = text.slice(sep + 3)
  const slash = rest.indexOf("/")
  if (slash < 0) return Either.left(invalidValue("BlobLocator", text, "expected scheme://bucket/path (no path)"))
  return Either.right([scheme, rest.slice(0, slash), rest.slice(slash + 1)] as const)
}

function checkAll(scheme: string, bucket: string, path: string, isPrefix: boolean): InvalidValue | undefined {
  const text = `${scheme}://${bucket}/${path}`
  return checkScheme(text, scheme) ?? checkBucket(text, bucket) ?? checkPath(text, path, isPrefix)
}

/** Builds a locator from parts, with the same checks as `parse`. */
export const make = (scheme: string, bucket: string, path: string): Either.Either<BlobLocator, InvalidValue> => {
  const error = checkAll(scheme, bucket, path, false)
  return error ? Either.left(error) : Either.right(new BlobLocator({ scheme, bucket, path }, true))
}

/** Parses `scheme://bucket/path`; anything malformed is an `InvalidValue`. */
export const parse = (text: string): Either.Either<BlobLocator, InvalidValue> =>
  Either.flatMap(split(text), ([scheme, bucket, path]) => make(scheme, bucket, path))

/** Builds a listing prefix from parts; the path may be empty or end in '/'. */
export const makePrefix = (
  scheme: string,
  bucket: string,
  path: string
): Either.Either<LocatorPrefix, InvalidValue> => {
  const error = checkAll(scheme, bucket, path, true)
  return error ? Either.left(error) : Either.right(new LocatorPrefix({ scheme, bucket, path }, true))
}

/** Parses a listing prefix, `scheme://bucket/` or `scheme://bucket/pre`. */
export const parsePrefix = (text: string): Either.Either<LocatorPrefix, InvalidValue> => {
  // `scheme://bucket` with no slash at all is accepted as the whole bucket.
  const withSlash = text.includes("://") && !text.slice(text.indexOf("://") + 3).includes("/") ? `${text}/` : text
  return Either.flatMap(split(withSlash), ([scheme, bucket, path]) => makePrefix(scheme, bucket, path))
}

/** True when `locator` is listed under `prefix` (same scheme and bucket, path starts with it). */
export const matchesPrefix = (prefix: LocatorPrefix, locator: BlobLocator): boolean =>
  locator.scheme === prefix.scheme && locator.bucket === prefix.bucket && locator.path.startsWith(prefix.path)

/** A child locator: `base` joined with a relative path, validated. */
export const child = (prefix: LocatorPrefix, relative: string): Either.Either<BlobLocator, InvalidValue> =>
  make(prefix.scheme, prefix.bucket, prefix.path + relative)

/** Schema between locator text and a BlobLocator. */
export const FromString: Schema.Schema<BlobLocator, string> = Schema.transformOrFail(
  Schema.String,
  Schema.typeSchema(BlobLocator),
  {
    strict: true,
    decode: (s, _, ast) =>
      Either.mapLeft(parse(s), (e) => new ParseResult.Type(ast, s, e.description)),
    encode: (l) => Either.right(render(l))
  }
)
