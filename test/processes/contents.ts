/**
 * The contents the writer processes put: worker w's puts 0..24 are the
 * shared contents 0..24 (all four workers race on each, in the same order),
 * its puts 25..49 are contents of its own. Every content starts with the
 * same 96 KiB, so in the chunked layout the blocks of that prefix are shared
 * by every blob and their reference counts are large.
 */
import { randomBytes } from "../../src/testing/bytes.js"

export const WORKERS = 4
export const PUTS = 50
const SHARED = 25

/** Small blocks, so that the shared prefix is several blocks. */
export const layout = { min: 4 * 1024, avg: 16 * 1024, max: 64 * 1024 }

const prefix = randomBytes(96 * 1024, 7)

/** Content number `c`: the shared prefix, then a tail of its own (1 B to 150 KiB). */
export const content = (c: number): Uint8Array => {
  const tail = randomBytes(1 + ((c * 7919) % (150 * 1024)), 100 + c)
  const bytes = new Uint8Array(prefix.length + tail.length)
  bytes.set(prefix, 0)
  bytes.set(tail, prefix.length)
  return bytes
}

/** Content numbers put by worker `w`, in order. */
export const numbersOf = (w: number): ReadonlyArray<number> =>
  Array.from({ length: PUTS }, (_, i) => (i < SHARED ? i : SHARED + w * (PUTS - SHARED) + (i - SHARED)))

/** Contents put by worker `w`, in order. */
export const contentsOf = (w: number): ReadonlyArray<Uint8Array> => numbersOf(w).map(content)

/** How many distinct contents all workers put. */
export const DISTINCT = SHARED + WORKERS * (PUTS - SHARED)
