/**
 * A one-pass check equivalent to `KvKey.validate` for the accepting case:
 * the hot paths call it on every key (100k+ per second), and the regular
 * expressions of the core validator cost more than the LevelDB call
 * prefix they guard. A key it rejects goes through `KvKey.validate` for the
 * precise error, so the rules stay defined in one place.
 */
import { MAX_KEY_BYTES } from "../../../core/KvKey.js"

/** True only for keys `KvKey.validate(key, allowEmpty)` accepts. */
export const isValidKey = (key: unknown, allowEmpty: boolean): boolean => {
  if (typeof key !== "string") return false
  const n = key.length
  if (n === 0) return allowEmpty
  // Every UTF-16 unit is at least one UTF-8 byte.
  if (n > MAX_KEY_BYTES) return false
  let bytes = 0
  for (let i = 0; i < n; i++) {
    const c = key.charCodeAt(i)
    if (c < 0x20) return false
    if (c < 0x80) bytes += 1
    else if (c < 0x800) bytes += 2
    else if (c >= 0xd800 && c <= 0xdbff) {
      // A high surrogate must be followed by a low one: together one 4-byte character.
      const d = key.charCodeAt(i + 1)
      if (!(d >= 0xdc00 && d <= 0xdfff)) return false
      bytes += 4
      i++
    } else if (c >= 0xdc00 && c <= 0xdfff) return false
    else bytes += 3
  }
  return bytes <= MAX_KEY_BYTES
}
