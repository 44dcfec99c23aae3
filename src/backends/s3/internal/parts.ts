/**
 * Multipart part sizing.
 *
 * S3 allows at most 10,000 parts of 5 MiB to 5 GiB each (the last part may
 * be smaller). A stream of known length gets equal parts, grown just enough
 * to fit the part budget. A stream of unknown length cannot be planned, so
 * its parts grow: the budget is split into ten stages and the part size
 * doubles from one stage to the next. With the default 8 MiB and 10,000
 * parts, the first 1,000 parts (8 GiB) use the configured size, so memory
 * stays at partSize × max(2, concurrency) for any ordinary object.
 *
 * Growth stops at `maxPartSize` (default 64 MiB): a part is held in memory
 * until S3 answers it, so uncapped doubling (up to S3's 5 GiB parts) made the
 * memory of a long stream unbounded in practice. The price is the largest
 * object: with the defaults 1,000 × (8 + 16 + 32) MiB + 7,000 × 64 MiB ≈
 * 492 GiB of unknown length, 10,000 × 64 MiB = 625 GiB declared; a longer
 * stream fails with InvalidInput (raise maxPartSize, up to 5 GiB, to store
 * more at that memory cost). With `equalParts` (services that require equal
 * parts, such as Cloudflare R2) the size never grows and the stream may hold
 * at most partSize × maxParts bytes.
 */
import { MAX_PART_SIZE } from "../S3Config.js"

/** A sizing decision for one upload. */
export interface PartPlan {
  /** Size of part `n` (1-based); every part but the last is exactly this long. */
  readonly sizeOf: (partNumber: number) => number
  readonly maxParts: number
  /** Most bytes the plan can hold. */
  readonly capacity: number
}

/** Inputs of `plan`. */
export interface PlanOptions {
  readonly partSize: number
  /** Largest part (growth and a declared size's split stop there); at least partSize. */
  readonly maxPartSize: number
  readonly maxParts: number
  readonly equalParts: boolean
  /** Total length when known in advance. */
  readonly size?: number | undefined
}

/** Doubling stages used for streams of unknown length. */
export const STAGES = 10

/** Plans part sizes for one upload (see the module comment for the reasoning). */
export const plan = (options: PlanOptions): PartPlan => {
  const { equalParts, maxParts, partSize } = options
  const largest = Math.min(MAX_PART_SIZE, Math.max(partSize, options.maxPartSize))
  if (options.size !== undefined) {
    // Known length: one size for every part, the smallest that fits the budget (capacity below the size: refused by the caller).
    const size = Math.min(largest, Math.max(partSize, Math.ceil(options.size / maxParts)))
    return { sizeOf: () => size, maxParts, capacity: size * maxParts }
  }
  if (equalParts) return { sizeOf: () => partSize, maxParts, capacity: partSize * maxParts }
  const stage = Math.max(1, Math.ceil(maxParts / STAGES))
  const sizeOf = (partNumber: number) =>
    Math.min(largest, partSize * 2 ** Math.min(STAGES - 1, Math.floor((partNumber - 1) / stage)))
  let capacity = 0
  for (let s = 0; s * stage < maxParts; s++) {
    capacity += sizeOf(s * stage + 1) * Math.min(stage, maxParts - s * stage)
  }
  return { sizeOf, maxParts, capacity }
}

/** Splits `[0, size)` into copy ranges of at most `partSize` bytes, grown to fit `maxParts`. */
export const copyRanges = (size: number, partSize: number, maxParts: number): ReadonlyArray<readonly [number, number]> => {
  const step = Math.min(MAX_PART_SIZE, Math.max(partSize, Math.ceil(size / maxParts)))
  const out: Array<readonly [number, number]> = []
  for (let start = 0; start < size; start += step) out.push([start, Math.min(size, start + step)])
  return out
}
