import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as Hashing from "../../src/core/Hashing.js"

const utf8 = (s: string) => new TextEncoder().encode(s)

// Published test vectors (FIPS 180-2 for SHA-256; the BLAKE3 reference implementation).
const vectors = {
  sha256: {
    "": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    abc: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq":
      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
  },
  blake3: {
    "": "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
    abc: "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
  }
} as const

describe("Hashing", () => {
  for (const algorithm of ["sha256", "blake3"] as const) {
    for (const [input, digest] of Object.entries(vectors[algorithm])) {
      it.effect(`${algorithm}(${JSON.stringify(input.slice(0, 8))}) matches the test vector`, () =>
        Effect.gen(function*() {
          const bytes = utf8(input)
          const key = yield* Hashing.hashBytes(algorithm, bytes)
          expect(key.digest).toBe(digest)
          expect(key.size).toBe(bytes.length)
          expect(key.algorithm).toBe(algorithm)
          // Same bytes split one byte per chunk give the same key.
          const streamed = yield* Hashing.hashStream(algorithm, Stream.fromIterable(Array.from(bytes, (b) => Uint8Array.of(b))))
          expect(streamed.digest).toBe(digest)
        }))
    }

    it.effect(`${algorithm} over one million 'a' in uneven chunks equals the one-shot hash`, () =>
      Effect.gen(function*() {
        const all = new Uint8Array(1_000_000).fill(0x61)
        const chunks: Array<Uint8Array> = []
        for (let off = 0, n = 1; off < all.length; off += n, n = (n * 7 + 3) % 65_537 + 1) {
          chunks.push(all.subarray(off, Math.min(all.length, off + n)))
        }
        const streamed = yield* Hashing.hashStream(algorithm, Stream.fromIterable(chunks))
        const whole = yield* Hashing.hashBytes(algorithm, all)
        expect(streamed.digest).toBe(whole.digest)
        expect(streamed.size).toBe(1_000_000)
        // hashChunks (the thread pool for sha256) agrees, over many chunks, one, and none.
        expect(yield* Hashing.hashChunks(algorithm, chunks)).toEqual(whole)
        expect(yield* Hashing.hashChunks(algorithm, [all])).toEqual(whole)
        expect((yield* Hashing.hashChunks(algorithm, [])).digest).toBe(vectors[algorithm][""])
        if (algorithm === "sha256") {
          expect(whole.digest).toBe("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        }
      }))
  }

  it.effect("two hashers run independently", () =>
    Effect.gen(function*() {
      const a = yield* Hashing.makeHasher("blake3")
      const b = yield* Hashing.makeHasher("blake3")
      a.update(utf8("abc"))
      b.update(utf8(""))
      expect(a.digest()).toBe(vectors.blake3.abc)
      expect(b.digest()).toBe(vectors.blake3[""])
    }))
})
