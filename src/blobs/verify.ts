/** Checks of what a read emits. */
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type * as BinaryKey from "../core/BinaryKey.js"
import type { BlobError } from "../core/Errors.js"
import * as Hashing from "../core/Hashing.js"
import { corrupted } from "./errors.js"

/** Re-hashes the whole stream; a mismatch fails it with Corrupted after its last chunk. */
export const verifyWhole = (key: BinaryKey.BinaryKey, bytes: Stream.Stream<Uint8Array, BlobError>) =>
  Stream.unwrap(Effect.map(Hashing.makeHasher(key.algorithm), (hasher) =>
    Stream.concat(
      Stream.mapChunks(bytes, (chunks) => {
        for (const c of chunks) hasher.update(c)
        return chunks
      }),
      Stream.execute(Effect.suspend(() => {
        if (hasher.size !== key.size) return Effect.fail(corrupted("get", key, `are ${hasher.size} bytes long`))
        const digest = hasher.digest()
        return digest === key.digest ? Effect.void : Effect.fail(corrupted("get", key, `hash to ${digest}`))
      }))
    )))

/** Fails a ranged read with Corrupted when it ends short of `length` bytes (it would otherwise end early without an error). */
export const verifyLength = (key: BinaryKey.BinaryKey, length: number, bytes: Stream.Stream<Uint8Array, BlobError>) => {
  let seen = 0
  return Stream.concat(
    Stream.mapChunks(bytes, (chunks) => {
      for (const c of chunks) seen += c.length
      return chunks
    }),
    Stream.execute(Effect.suspend(() =>
      seen === length ? Effect.void : Effect.fail(corrupted("get", key, `are shorter than recorded (${seen} of ${length} bytes in range)`))
    ))
  )
}
