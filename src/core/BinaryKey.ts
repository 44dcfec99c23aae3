/**
 * BinaryKey: the identity of content = hash algorithm + digest + byte length.
 * Canonical text `<algo>:<hex>:<length>`, e.g. `sha256:9f86…08:4`.
 */
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { invalidValue, type InvalidValue } from "./Errors.js"

/** Hash algorithms a key may be computed with. */
export const HashAlgorithm = Schema.Literal("sha256", "blake3")
export type HashAlgorithm = typeof HashAlgorithm.Type

/** Digest length in hex characters for each algorithm (both are 256-bit). */
export const digestHexLength: Record<HashAlgorithm, number> = { sha256: 64, blake3: 64 }

const HEX = /^[0-9a-f]+$/
const LENGTH = /^(0|[1-9][0-9]*)$/

/** A content key. Structural equality: two keys for the same bytes are `Equal`. */
export class BinaryKey extends Schema.Class<BinaryKey>("graviton/BinaryKey")({
  algorithm: HashAlgorithm,
  /** Lower-case hex digest (both algorithms give 256 bits = 64 digits). */
  digest: Schema.String.pipe(Schema.pattern(/^[0-9a-f]{64}$/)),
  /** Content length in bytes. */
  size: Schema.NonNegativeInt
}) {
  /** The canonical text form `<algo>:<hex>:<length>`. */
  override toString(): string {
    return render(this)
  }
}

/** Renders the canonical text form `<algo>:<hex>:<length>`. */
export const render = (key: BinaryKey): string => `${key.algorithm}:${key.digest}:${key.size}`

/** Builds a key from parts, checking each one like `parse` does. */
export const make = (
  algorithm: string,
  digest: string,
  size: number
): Either.Either<BinaryKey, InvalidValue> => {
  const text = `${algorithm}:${digest}:${size}`
  if (!Schema.is(HashAlgorithm)(algorithm)) {
    return Either.left(invalidValue("BinaryKey", text, `unknown hash algorithm ${JSON.stringify(algorithm)} (expected sha256 or blake3)`))
  }
  const expected = digestHexLength[algorithm]
  if (digest.length !== expected) {
    return Either.left(invalidValue("BinaryKey", text, `a ${algorithm} digest has ${expected} hex digits, got ${digest.length}`))
  }
  if (!HEX.test(digest)) {
    return Either.left(invalidValue("BinaryKey", text, "the digest must be lower-case hex (0-9, a-f)"))
  }
  if (!Number.isSafeInteger(size) || size < 0) {
    return Either.left(invalidValue("BinaryKey", text, "the length must be a non-negative integer"))
  }
  return Either.right(new BinaryKey({ algorithm, digest, size }))
}

/** Parses `<algo>:<hex>:<length>`; anything else is an `InvalidValue`. */
export const parse = (text: string): Either.Either<BinaryKey, InvalidValue> => {
  const parts = text.split(":")
  if (parts.length !== 3) {
    return Either.left(invalidValue("BinaryKey", text, "expected <algorithm>:<hex digest>:<length>"))
  }
  const [algorithm, digest, length] = parts as [string, string, string]
  if (!LENGTH.test(length)) {
    return Either.left(invalidValue("BinaryKey", text, "the length must be a non-negative integer in decimal"))
  }
  return make(algorithm, digest, Number(length))
}

/** Schema between the canonical text and a BinaryKey, for configs and JSON. */
export const FromString: Schema.Schema<BinaryKey, string> = Schema.transformOrFail(
  Schema.String,
  Schema.typeSchema(BinaryKey),
  {
    strict: true,
    decode: (s, _, ast) =>
      Either.mapLeft(parse(s), (e) => new ParseResult.Type(ast, s, e.description)),
    encode: (k) => Either.right(render(k))
  }
)
