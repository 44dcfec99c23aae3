/**
 * Fault tests record what they injected and what they saw here; scripts/reliability-doc.mjs
 * turns the records into the table of docs/reliability.md, so the table is never written by
 * hand. A record is written only after the test's own assertions ran, and `observed` must be
 * computed from the run (an error tag, a count, a status), not copied from `expected`.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

export interface FaultRecord {
  /** Where the fault was injected: "fs", "s3", "pg", "chaos", "processes", "cli" ... */
  readonly area: string
  /** The fault, in a few words ("503 burst on PutObject", "postmaster SIGKILL mid-put"). */
  readonly fault: string
  /** What a user should get. */
  readonly expected: string
  /** What this run got, computed from the run. */
  readonly observed: string
}

const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "..", ".tmp", "reliability")

/** Appends one record to .tmp/reliability/<area>.jsonl (one line per record; concurrent workers append whole lines). */
export const recordFault = (record: FaultRecord): void => {
  fs.mkdirSync(dir, { recursive: true })
  fs.appendFileSync(path.join(dir, `${record.area}.jsonl`), JSON.stringify({ ...record, at: new Date().toISOString() }) + "\n")
}
