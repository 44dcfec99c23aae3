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
 *   replay buffer, bytes kept to hash later) must `detach` it first (or
 *   pass on a copy), because the consumer downstream may give it back while
 *   the stage still reads it. Hashing, counting and cutting with `subarray`
 *   as the chunk goes by are fine.
 *
 * In this code base the givers are the fs writes (`files.writeBehind`), the
 * CLI's file output and `verify` (which only hashes); the lenders are the
 * CLI's file input and the fs object store's reads.
 */

interface Loan {
  readonly pool: Pool
  readonly buffer: Buffer
}

/** Chunk object → the buffer it views and the pool it returns to. */
const loans = new WeakMap<Uint8Array, Loan>()

/** Free buffers kept per pool beyond those in use: enough for the reads in flight. */
const KEEP = 8

/** Buffers of one size, reused once given back. One pool per stream; it is garbage with the stream. */
export class Pool {
  private readonly free: Array<Buffer> = []
  private fresh = 0

  /** `poison` (tests only) overwrites each given-back buffer, so a premature give-back corrupts visibly. */
  constructor(readonly size: number, private readonly poison = false) {}

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

  /** Marks `chunk` (a view of `buffer`, from `take`) as lent, and returns it. */
  lend(buffer: Buffer, chunk: Uint8Array): Uint8Array {
    loans.set(chunk, { pool: this, buffer })
    return chunk
  }

  /** Returns a buffer that was never lent (a read that ended the input). */
  restore(buffer: Buffer): void {
    if (this.poison) buffer.fill(0xa5)
    if (this.free.length < KEEP) this.free.push(buffer)
  }
}

/**
 * Gives `chunk` back to the pool that lent it; does nothing for a chunk that
 * was not lent. Call it only as the last holder, once the bytes are no longer
 * needed (see the contract above), and at most once.
 */
export const giveBack = (chunk: Uint8Array): void => {
  const loan = loans.get(chunk)
  if (loan === undefined) return
  loans.delete(chunk)
  loan.pool.restore(loan.buffer)
}

/**
 * Ends the loan of `chunk` without returning its buffer: nobody downstream
 * can give it back any more, so a stage may keep it as long as it likes.
 */
export const detach = (chunk: Uint8Array): void => {
  loans.delete(chunk)
}
