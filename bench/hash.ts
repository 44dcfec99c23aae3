/**
 * Streaming hash throughput: core/Hashing's Sink over chunked input vs the
 * raw hash function over the same chunks (node:crypto for sha256, hash-wasm
 * for BLAKE3). This is the ceiling every ingest path is measured against.
 */
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { createBLAKE3 } from "hash-wasm"
import { createHash } from "node:crypto"
import * as Hashing from "../src/core/Hashing.js"
import * as Bench from "./harness.js"

const total = Bench.size(256 * 1024 * 1024, 32 * 1024 * 1024)
const chunkSize = 64 * 1024
const chunks: Array<Uint8Array> = []
for (let off = 0; off < total; off += chunkSize) {
  const c = new Uint8Array(chunkSize)
  for (let i = 0; i < chunkSize; i += 4096) c[i] = (off + i) & 0xff
  chunks.push(c)
}

const ours = (algorithm: "sha256" | "blake3") => async () => {
  const stream = Stream.fromChunk(Chunk.unsafeFromArray(chunks))
  const seconds = await Bench.time(() => Effect.runPromise(Hashing.hashStream(algorithm, stream)))
  return Bench.mbps(total, seconds)
}

const rawSha = async () =>
  Bench.mbps(
    total,
    await Bench.time(async () => {
      const h = createHash("sha256")
      for (const c of chunks) h.update(c)
      h.digest("hex")
    })
  )

const rawBlake3 = async () => {
  const h = await createBLAKE3()
  return Bench.mbps(
    total,
    await Bench.time(async () => {
      h.init()
      for (const c of chunks) h.update(c)
      h.digest("hex")
    })
  )
}

const mib = total / 1024 / 1024
await Bench.compare({
  name: `hash.sha256.${mib}MiB`,
  unit: "MB/s",
  baselineName: "node:crypto createHash",
  higherIsBetter: true,
  ours: ours("sha256"),
  baseline: rawSha
})
await Bench.compare({
  name: `hash.blake3.${mib}MiB`,
  unit: "MB/s",
  baselineName: "hash-wasm createBLAKE3",
  higherIsBetter: true,
  ours: ours("blake3"),
  baseline: rawBlake3
})
