/**
 * Buffer lending: a pool reuses only what was given back, only the exact
 * chunk object lent is recognised, and the givers in this code base (fs
 * writes, the CLI's file output) give a chunk back only once it is written.
 * The pipeline tests use a poisoning pool: a chunk given back too early
 * would be overwritten before its write and the stored bytes would not
 * match their key.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as NFS from "node:fs"
import * as Path from "node:path"
import * as EmbeddedStore from "../../src/stores/EmbeddedStore.js"
import * as Hashing from "../../src/core/Hashing.js"
import * as Lending from "../../src/core/Lending.js"
import * as Io from "../../src/cli/io.js"
import { BlobStore } from "../../src/ports/BlobStore.js"
import * as CasBlobStore from "../../src/blobs/CasBlobStore.js"
import * as Uploads from "../../src/uploads/Uploads.js"
import { collect, KiB, randomBytes, sameBytes } from "../../src/testing/bytes.js"
import { embedded, tempDir } from "../blobs/fixtures.js"

/** `bytes` as a stream of chunks lent from `pool`: each read copies the next slice into a pool buffer. */
const lentStream = (bytes: Uint8Array, pool: Lending.Pool): Stream.Stream<Uint8Array> => {
  let at = 0
  return Stream.repeatEffectOption(Effect.suspend(() => {
    if (at >= bytes.length) return Effect.fail(Option.none())
    const buffer = pool.take()
    const n = Math.min(buffer.length, bytes.length - at)
    buffer.set(bytes.subarray(at, at + n))
    at += n
    // Asynchronous like a real read, so writes in flight overlap the next chunk.
    return Effect.as(Effect.yieldNow(), pool.lend(buffer, n))
  }))
}

/**
 * `bytes` from a file through the CLI's file input into the store, checked
 * against their key, then read back through the store into a file (the fs
 * reads are lent, the file output gives them back) and compared.
 */
const fileRoundTrip = (bytes: Uint8Array) =>
  Effect.gen(function*() {
    const dir = tempDir("graviton-lending-file-")
    const file = Path.join(dir, "in.bin")
    NFS.writeFileSync(file, bytes)
    const store = yield* BlobStore
    const result = yield* Effect.scoped(Effect.flatMap(Io.fileInput(file), (input) => Stream.run(input.stream, store.put())))
    expect(result.key.digest).toBe((yield* Hashing.hashBytes("sha256", bytes)).digest)
    const out = Path.join(dir, "out.bin")
    yield* Io.writeFileAtomically(out, store.get(result.key))
    expect(sameBytes(NFS.readFileSync(out), bytes)).toBe(true)
    return result.key
  })

describe("Lending", () => {
  it("a pool reuses a buffer only once its chunk is given back", () => {
    const pool = new Lending.Pool(16)
    const a = pool.take()
    const chunk = pool.lend(a, a.length)
    expect(pool.take()).not.toBe(a)
    Lending.giveBack(chunk)
    expect(pool.take()).toBe(a)
    expect(pool.allocated).toBe(2)
  })

  it("only the exact lent object is recognised, and giving back twice returns it once", () => {
    const pool = new Lending.Pool(16)
    const a = pool.take()
    const chunk = pool.lend(a, 8)
    Lending.giveBack(a) // the buffer itself was not lent
    Lending.giveBack(chunk.subarray(0, 4)) // nor is a slice of the chunk
    Lending.giveBack(new Uint8Array(16))
    expect(pool.take()).not.toBe(a)
    Lending.giveBack(chunk)
    Lending.giveBack(chunk)
    expect(pool.take()).toBe(a)
    expect(pool.take()).not.toBe(a)
  })

  it("a retained chunk returns to its pool only when every holder has given it back", () => {
    const pool = new Lending.Pool(16)
    const a = pool.take()
    const chunk = pool.lend(a, a.length)
    Lending.retain(chunk)
    Lending.giveBack(chunk)
    expect(pool.take()).not.toBe(a)
    Lending.giveBack(chunk)
    expect(pool.take()).toBe(a)
    Lending.retain(new Uint8Array(4)) // not lent: nothing to hold
  })

  it("a poisoning pool overwrites what is given back", () => {
    const pool = new Lending.Pool(4, { poison: true })
    const a = pool.take().fill(1)
    Lending.giveBack(pool.lend(a, a.length))
    expect(Array.from(pool.take())).toEqual([0xa5, 0xa5, 0xa5, 0xa5])
  })

  for (const layout of ["monolithic", "chunked"] as const) {
    it.effect(`a ${layout} put over fs + LevelDB gives chunks back only once written`, () =>
      Effect.gen(function*() {
        const bytes = randomBytes(3 * 1024 * KiB + 123, 11)
        const pool = new Lending.Pool(64 * KiB, { poison: true })
        const store = yield* BlobStore
        const result = yield* Stream.run(lentStream(bytes, pool), store.put())
        expect(result.key.digest).toBe((yield* Hashing.hashBytes("sha256", bytes)).digest)
        // The stored bytes verify against the key computed from the chunks as they arrived.
        expect(sameBytes(yield* collect(store.get(result.key)), bytes)).toBe(true)
        // Monolithic: every written chunk came back, so a handful of buffers served 50 reads.
        if (layout === "monolithic") expect(pool.allocated).toBeLessThan(8)
      }).pipe(Effect.provide(embedded(
        tempDir("graviton-lending-"),
        layout === "chunked" ? { layout: CasBlobStore.chunked({ min: 16 * KiB, avg: 64 * KiB, max: 256 * KiB }) } : {}
      ))))
  }

  it.effect("the CLI's file output gives chunks back only once written", () =>
    Effect.gen(function*() {
      const bytes = randomBytes(2 * 1024 * KiB + 7, 12)
      const pool = new Lending.Pool(64 * KiB, { poison: true })
      const target = Path.join(tempDir("graviton-lending-out-"), "out.bin")
      const written = yield* Io.writeFileAtomically(target, lentStream(bytes, pool))
      expect(written).toBe(bytes.length)
      expect(sameBytes(NFS.readFileSync(target), bytes)).toBe(true)
      expect(pool.allocated).toBeLessThan(8)
    }))

  it.effect("the CLI's file input reuses its buffers when the store writes them to disk", () =>
    Effect.gen(function*() {
      const bytes = randomBytes(9 * 1024 * KiB + 5, 13)
      const key = yield* fileRoundTrip(bytes)
      expect(sameBytes(yield* collect((yield* BlobStore).get(key)), bytes)).toBe(true)
    }).pipe(Effect.provide(embedded(tempDir("graviton-lending-home-")))))

  it.effect("a chunked blob read block by block into a file: the store's shared read buffers go round", () =>
    fileRoundTrip(randomBytes(3 * 1024 * KiB + 17, 16)).pipe(Effect.provide(embedded(
      tempDir("graviton-lending-chunked-home-"),
      { layout: CasBlobStore.chunked({ min: 64 * KiB, avg: 128 * KiB, max: 256 * KiB }) }
    ))))

  it.effect("an upload that keeps chunks to hash after the write retains them, and gives them back once hashed", () =>
    Effect.gen(function*() {
      const uploads = yield* Uploads.Uploads
      const bytes = randomBytes(5 * 64 * KiB + 99, 14)
      const pool = new Lending.Pool(16 * KiB, { poison: true })
      const id = yield* uploads.begin({ size: bytes.length })
      yield* uploads.write(id, 0, lentStream(bytes, pool))
      const result = yield* uploads.complete(id)
      expect(result.key.digest).toBe((yield* Hashing.hashBytes("sha256", bytes)).digest)
      expect(sameBytes(yield* collect((yield* BlobStore).get(result.key)), bytes)).toBe(true)
      // 21 chunks; each segment's four came back once the segment was written and hashed.
      expect(pool.allocated).toBeLessThan(8)
    }).pipe(Effect.provide(
      Uploads.layer().pipe(Layer.provideMerge(EmbeddedStore.layer({ home: tempDir("graviton-lending-upload-"), uploadSegmentSize: 64 * KiB })))
    )))
})
