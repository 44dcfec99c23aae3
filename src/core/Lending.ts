/**
 * Buffer lending: a byte source that reads into buffers of its own (a local
 * file, a stored object) lends each chunk to the pipeline, and the stage
 * that consumes it last gives it back once it no longer needs the bytes
 * (its write has completed), so the next read reuses it.
 *
 * Why: a stream of freshly allocated 1 MiB chunks is garbage the size of the
 * content. V8 frees such buffers only when their wrappers die young; behind
 * an Effect pipeline many survive two scavenges, move to the old generation
 * and wait for a full collection, which then runs every few tens of MiB
 * (the ingest bench measured half of a put's time in GC). Reused buffers
 * make no garbage at all.
 *
 * The contract, for every stage between a lender and a giver:
 *
 * - Giving back is optional: a consumer that never calls `giveBack` (an S3
 *   part buffer, the memory store) simply keeps the chunk, which the lender
 *   has then lost to the garbage collector. Nothing breaks.
 * - Only the exact chunk object the lender emitted is recognised; slices
 *   (`subarray`), copies and joined buffers are not lent and never reused.
 * - A stage that keeps a chunk after passing the same object on (a tee, a
 *   replay buffer, bytes kept to hash later) must `retain` it first (or pass
 *   on a copy), because the consumer downstream may give it back while the
 *   stage still reads it. The buffer then returns to its pool only once
 *   every holder has given it back. Hashing, counting and cutting with
 *   `subarray` as the chunk goes by need nothing.
 *
 * In this code base the lenders are the CLI's file input and upload span
 * reads, the fs object store's reads (one pool per store) and the chunked
 * put's block buffers. The givers are the fs writes (`files.writeBehind`),
 * the CLI's file output, `verify` (which only hashes), the chunked put (an
 * input chunk once cut into blocks, a block once stored) and UploadHashes
 * (chunks it retained, once hashed).
 */

interface Loan {
  readonly pool: Pool
  readonly buffer: Buffer
  /** Holders that have yet to give the chunk back. */
  holds: number
}

/** Chunk object → the buffer it views and the pool it returns to. */
const loans = new WeakMap<Uint8Array, Loan>()

/** Free buffers a pool keeps by default: enough for one stream's reads in flight. */
const KEEP = 8

export interface PoolOptions {
  /** Free buffers kept for reuse (default 8); more are left to the GC. Cover every chunk held at once. */
  readonly keep?: number | undefined
  /** Tests only: overwrite each given-back buffer, so a premature give-back corrupts visibly. */
  readonly poison?: boolean | undefined
}

/** Buffers of one size, reused once given back. One pool per stream (or per transfer); it is garbage with it. */
export class Pool {
  private readonly free: Array<Buffer> = []
  private fresh = 0

  private readonly keep: number
  private readonly poison: boolean

  constructor(readonly size: number, options: PoolOptions = {}) {
    this.keep = options.keep ?? KEEP
    this.poison = options.poison ?? false
  }

  /** A buffer of `size` bytes to read into: a given-back one when there is one. */
  take(): Buffer {
    const reused = this.free.pop()
    if (reused !== undefined) return reused
    this.fresh++
    return Buffer.allocUnsafe(this.size)
  }

  /** Buffers allocated so far (reads beyond this number reused given-back buffers). */
  get allocated(): number {
    return this.fresh
  }

  /** Lends the first `size` bytes of `buffer` (from `take`): returns the chunk to emit. */
  lend(buffer: Buffer, size: number): Uint8Array {
    const chunk = size === buffer.length ? buffer : buffer.subarray(0, size)
    loans.set(chunk, { pool: this, buffer, holds: 1 })
    return chunk
  }

  /** Returns a buffer that was never lent (a read that ended the input). */
  restore(buffer: Buffer): void {
    if (this.poison) buffer.fill(0xa5)
    if (this.free.length < this.keep) this.free.push(buffer)
  }
}

/**
 * Gives `chunk` back, once its bytes are no longer needed; the buffer
 * returns to the pool that lent it when every holder has done so. Does
 * nothing for a chunk that was not lent. At most once per holder.
 */
export const giveBack = (chunk: Uint8Array): void => {
  const loan = loans.get(chunk)
  if (loan === undefined) return
  if (--loan.holds > 0) return
  loans.delete(chunk)
  loan.pool.restore(loan.buffer)
}

/**
 * Adds a holder of `chunk` (a stage that keeps it after passing it on): the
 * buffer is reused only after this holder gives it back too. A holder that
 * never does simply leaves the buffer to the garbage collector.
 */
export const retain = (chunk: Uint8Array): void => {
  const loan = loans.get(chunk)
  if (loan !== undefined) loan.holds++
}
