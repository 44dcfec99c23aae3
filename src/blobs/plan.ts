/** Write plans and keys as CasBlobStore checks them, the input guard of a put, and the report of a finished one. */
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as BinaryKey from "../core/BinaryKey.js"
import * as BlobLocator from "../core/BlobLocator.js"
import type { BlobError } from "../core/Errors.js"
import type * as Hashing from "../core/Hashing.js"
import type { BlobWritePlan, BlobWriteResult } from "../core/Models.js"
import { BlobStored } from "../ports/BackendEvents.js"
import * as Events from "../kit/Events.js"
import type * as Instrument from "../kit/Instrument.js"
import * as MetricKeys from "../kit/MetricKeys.js"
import { BACKEND, fail, invalid } from "./errors.js"
import type { Stored } from "./publish.js"

const isAlgorithm = (a: unknown): a is BinaryKey.HashAlgorithm => a === "sha256" || a === "blake3"

/** Re-validates a key (it may have been built from parts without checks). */
export const checkKey = (method: string, key: BinaryKey.BinaryKey): Either.Either<BinaryKey.BinaryKey, BlobError> =>
  typeof key !== "object" || key === null
    ? Either.left(fail("InvalidInput", method, "the key is missing"))
    : Either.mapLeft(BinaryKey.make(key.algorithm, key.digest, key.size), invalid(method))

export interface CheckedPlan {
  readonly algorithm: BinaryKey.HashAlgorithm
  readonly expectedKey: BinaryKey.BinaryKey | undefined
  readonly maxSize: number
  readonly contentType: string | undefined
}

/** Validates a write plan; the algorithm defaults to the expected key's, then the store's. */
export const checkPlan = (plan: BlobWritePlan | undefined, fallback: BinaryKey.HashAlgorithm): Either.Either<CheckedPlan, BlobError> => {
  const p = plan ?? {}
  let expectedKey: BinaryKey.BinaryKey | undefined
  if (p.expectedKey !== undefined) {
    const checked = checkKey("put", p.expectedKey)
    if (Either.isLeft(checked)) return Either.left(checked.left)
    expectedKey = checked.right
  }
  const algorithm = p.algorithm ?? expectedKey?.algorithm ?? fallback
  if (!isAlgorithm(algorithm)) {
    return Either.left(fail("InvalidInput", "put", `unknown hash algorithm ${JSON.stringify(algorithm)}`))
  }
  if (expectedKey !== undefined && expectedKey.algorithm !== algorithm) {
    return Either.left(
      fail("InvalidInput", "put", `the plan asks for ${algorithm} but the expected key ${expectedKey} uses ${expectedKey.algorithm}`)
    )
  }
  const maxSize = p.maxSize ?? Number.POSITIVE_INFINITY
  if (p.maxSize !== undefined && (!Number.isSafeInteger(maxSize) || maxSize < 0)) {
    return Either.left(fail("InvalidInput", "put", `maxSize must be a non-negative integer, got ${p.maxSize}`))
  }
  if (p.contentType !== undefined && typeof p.contentType !== "string") {
    return Either.left(fail("InvalidInput", "put", "the content type must be a string"))
  }
  return Either.right({ algorithm, expectedKey, maxSize, contentType: p.contentType })
}

/** Fails with InvalidInput unless `key` is the plan's expected key (when it has one). */
export const checkExpected = (plan: CheckedPlan, key: BinaryKey.BinaryKey) =>
  plan.expectedKey === undefined || BinaryKey.render(plan.expectedKey) === BinaryKey.render(key)
    ? Effect.void
    : Effect.fail(
      fail("InvalidInput", "put", `the content hashes to ${key} but the expected key is ${plan.expectedKey}; nothing was stored`)
    )

/** Hashes each input chunk and enforces the size limits before the chunk goes any further. */
export const guard = (plan: CheckedPlan, hasher: Hashing.Hasher) => {
  const limit = Math.min(plan.maxSize, plan.expectedKey?.size ?? Number.POSITIVE_INFINITY)
  return (chunks: Chunk.Chunk<Uint8Array>): Effect.Effect<Chunk.Chunk<Uint8Array>, BlobError> => {
    let incoming = 0
    for (const c of chunks) incoming += c.length
    if (hasher.size + incoming > limit) {
      return Effect.fail(
        hasher.size + incoming > plan.maxSize
          ? fail("InvalidInput", "put", `the content exceeds maxSize (${plan.maxSize} bytes); nothing was stored`)
          : fail("InvalidInput", "put", `the content is longer than the expected key ${plan.expectedKey} says; nothing was stored`)
      )
    }
    for (const c of chunks) hasher.update(c)
    // Empty arrays carry nothing, and some object stores reject a zero-length write.
    return Effect.succeed(incoming === 0 ? Chunk.empty() : Chunk.filter(chunks, (c) => c.length > 0))
  }
}

/** Metrics and the BlobStored event of a finished put (or assembly); its result. */
export const report = (
  instrument: Instrument.Instrument,
  key: BinaryKey.BinaryKey,
  stored: Stored,
  startedAt: bigint,
  blocks: number,
  newBytes: number
) =>
  Effect.gen(function*() {
    const seconds = Number((yield* Clock.currentTimeNanos) - startedAt) / 1e9
    yield* instrument.counter(MetricKeys.bytesIngested, key.size)
    yield* instrument.counter(MetricKeys.blocksIngested, blocks)
    yield* instrument.histogram(MetricKeys.uploadDurationSeconds, seconds)
    if (stored.deduplicated) yield* instrument.counter(MetricKeys.dedupHitsTotal, 1)
    if (newBytes > 0) yield* instrument.counter(MetricKeys.bytesWrittenTotal, newBytes)
    yield* instrument.publish(
      new BlobStored({
        backend: BACKEND,
        at: yield* Events.now,
        key: BinaryKey.render(key),
        locator: BlobLocator.render(stored.locator),
        size: key.size,
        deduplicated: stored.deduplicated
      })
    )
    return { key, locator: stored.locator, size: key.size, deduplicated: stored.deduplicated } satisfies BlobWriteResult
  })
