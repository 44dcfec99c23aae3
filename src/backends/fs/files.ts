/**
 * Low-level file writing shared by the fs object store and its upload
 * staging: positioned writes (no shared file position, so writers of
 * different ranges of one file never disturb each other), small chunks
 * gathered into one call, and one write kept in flight behind the caller.
 * Writes are the last holders of the chunks they are given: a lent chunk
 * (see Lending) goes back to its reader once written.
 */
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as NFS from "node:fs"
import * as Lending from "../../core/Lending.js"

/** Small writes are gathered into one write call up to this size. */
export const GATHER_BYTES = 1024 * 1024

/** Writes all of `bytes` at offset `at` of `fd`. */
const writeAt = (fd: number, bytes: Uint8Array, at: number): Promise<void> =>
  new Promise<number>((resolve, reject) =>
    NFS.write(fd, bytes, 0, bytes.length, at, (error, n) => (error === null ? resolve(n) : reject(error)))
  ).then((n) =>
    n === 0
      ? Promise.reject(Object.assign(new Error("write returned 0 bytes"), { code: "EIO" }))
      : n < bytes.length
      ? writeAt(fd, bytes.subarray(n), at + n)
      : undefined
  )

/** Writes a batch of chunks, joining small ones so that tiny pieces do not cost one syscall each. */
export const writeGathered = <E>(
  chunks: Chunk.Chunk<Uint8Array>,
  write: (bytes: Uint8Array) => Effect.Effect<void, E>
): Effect.Effect<void, E> => {
  // Empty chunks are legal in a stream but a write of 0 bytes is not.
  const all = Chunk.toReadonlyArray(chunks).filter((c) => c.length > 0)
  if (all.length === 0) return Effect.void
  if (all.length === 1) return write(all[0]!)
  const groups: Array<Array<Uint8Array>> = []
  let current: Array<Uint8Array> = []
  let bytes = 0
  for (const c of all) {
    if (bytes + c.length > GATHER_BYTES && current.length > 0) {
      groups.push(current)
      current = []
      bytes = 0
    }
    current.push(c)
    bytes += c.length
  }
  if (current.length > 0) groups.push(current)
  return Effect.forEach(groups, (g) => write(g.length === 1 ? g[0]! : Buffer.concat(g)), { discard: true })
}

/**
 * Write-behind from offset `start` of `fd`: each `write` waits for the
 * previous one, then starts its own in the thread pool and returns, so the
 * caller prepares (reads, hashes) the next chunk meanwhile. A failure
 * surfaces at the next `write` or at `drain`; `settled` never fails, for a
 * finalizer that must not close the descriptor under a write.
 */
export const writeBehind = (fd: number, start: number) => {
  let inflight: Promise<void> = Promise.resolve()
  let at = start
  return {
    write: async (bytes: Uint8Array): Promise<void> => {
      await inflight
      // Written: a lent chunk goes back to its reader (see Lending); a failed write keeps it.
      inflight = writeAt(fd, bytes, at).then(() => Lending.giveBack(bytes))
      at += bytes.length
      // Observed by the next write or by drain; this only keeps it from being "unhandled".
      inflight.catch(() => undefined)
    },
    drain: (): Promise<void> => inflight,
    settled: (): Promise<void> => inflight.catch(() => undefined),
    /** Bytes handed over so far (written or in flight). */
    written: (): number => at - start
  }
}
