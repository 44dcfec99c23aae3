/**
 * Streaming hashes over `Uint8Array` chunks: node:crypto for sha256,
 * hash-wasm (WASM) for BLAKE3. Memory is constant whatever the input size.
 */
import * as Effect from "effect/Effect"
import * as Sink from "effect/Sink"
import * as Stream from "effect/Stream"
import { createHash, webcrypto } from "node:crypto"
import { createBLAKE3 } from "hash-wasm"
import { BinaryKey, type HashAlgorithm } from "./BinaryKey.js"

/** An incremental hasher that also counts the bytes it has seen. */
export interface Hasher {
  readonly algorithm: HashAlgorithm
  update(chunk: Uint8Array): void
  /** Bytes hashed so far. */
  readonly size: number
  /** Finishes: the lower-case hex digest. Call once. */
  digest(): string
  /** Finishes: the BinaryKey of everything hashed. Call once. */
  key(): BinaryKey
}

/** Creates a fresh hasher for `algorithm`. */
export const makeHasher = (algorithm: HashAlgorithm): Effect.Effect<Hasher> =>
  algorithm === "sha256"
    ? Effect.sync(() => wrap(algorithm, createHash("sha256")))
    : Effect.promise(() => createBLAKE3()).pipe(
      Effect.map((h) => {
        h.init()
        return wrap(algorithm, { update: (c) => h.update(c), digest: () => h.digest("hex") })
      })
    )

const wrap = (
  algorithm: HashAlgorithm,
  h: { update(c: Uint8Array): unknown; digest(encoding: "hex"): string }
): Hasher => {
  let size = 0
  const self: Hasher = {
    algorithm,
    update(chunk) {
      size += chunk.length
      h.update(chunk)
    },
    get size() {
      return size
    },
    digest: () => h.digest("hex"),
    key: () => new BinaryKey({ algorithm, digest: self.digest(), size })
  }
  return self
}

/** A Sink that consumes a byte stream and yields its BinaryKey. */
export const sink = (algorithm: HashAlgorithm): Sink.Sink<BinaryKey, Uint8Array> =>
  Sink.unwrap(
    Effect.map(makeHasher(algorithm), (hasher) =>
      Sink.forEachChunk((chunks: Iterable<Uint8Array>) =>
        Effect.sync(() => {
          for (const c of chunks) hasher.update(c)
        })
      ).pipe(Sink.map(() => hasher.key())))
  )

/** Hashes a whole stream to its BinaryKey. */
export const hashStream = <E, R>(
  algorithm: HashAlgorithm,
  stream: Stream.Stream<Uint8Array, E, R>
): Effect.Effect<BinaryKey, E, R> => Stream.run(stream, sink(algorithm))

/** Hashes bytes already in memory (small inputs, tests). */
export const hashBytes = (algorithm: HashAlgorithm, bytes: Uint8Array): Effect.Effect<BinaryKey> =>
  Effect.map(makeHasher(algorithm), (h) => {
    h.update(bytes)
    return h.key()
  })

/**
 * The key of `chunks` hashed together, for bytes already in memory. sha256 runs in the
 * libuv thread pool (WebCrypto's digest), so the main thread can hash something else
 * meanwhile; it costs one copy when there are several chunks. Other algorithms hash here.
 */
export const hashChunks = (algorithm: HashAlgorithm, chunks: ReadonlyArray<Uint8Array>): Effect.Effect<BinaryKey> => {
  if (algorithm !== "sha256") {
    return Effect.map(makeHasher(algorithm), (h) => {
      for (const c of chunks) h.update(c)
      return h.key()
    })
  }
  return Effect.promise(() => {
    const whole = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)
    return webcrypto.subtle.digest("SHA-256", whole).then((digest) =>
      new BinaryKey({ algorithm, digest: Buffer.from(digest).toString("hex"), size: whole.length })
    )
  })
}
