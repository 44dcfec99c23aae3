/** What gc and check find, count and do: the shapes of their reports (and of `--json`). */
import type { Counts } from "../blobs/counters.js"

/** What gc reclaims, by kind. */
export type LeftoverKind = "staging" | "pending" | "uploads" | "blocks" | "orphans" | "multipart"

/**
 * - staging: staged objects of interrupted puts and of uploads whose record is gone
 * - pending: claims of monolithic puts killed before they published (a Pending record, with the
 *   object it had moved to its address, if it got that far)
 * - uploads: resumable uploads past their deadline (with their staged bytes)
 * - blocks: blocks of the chunked layout that no manifest references (or whose delete stalled)
 * - orphans: objects at content or block addresses that no record names
 * - multipart: unfinished multipart uploads of the object store
 */
export const leftoverKinds: ReadonlyArray<LeftoverKind> = ["staging", "pending", "uploads", "blocks", "orphans", "multipart"]

export interface Tally {
  count: number
  bytes: number
}

/** An inconsistency check finds. */
export type ProblemKind =
  | "undecodable"
  | "missingObject"
  | "wrongSize"
  | "corrupted"
  | "refcount"
  | "missingBlockRecord"
  | "danglingBlock"
  | "danglingReplica"

export const problemKinds: ReadonlyArray<ProblemKind> = [
  "undecodable",
  "missingObject",
  "wrongSize",
  "corrupted",
  "refcount",
  "missingBlockRecord",
  "danglingBlock",
  "danglingReplica"
]

export interface Problem {
  readonly kind: ProblemKind
  /** The record key (`blobs/…`, `blocks/…`) or object locator concerned. */
  readonly subject: string
  readonly description: string
  /** `check --repair` fixed it. */
  repaired: boolean
}

/** What `check --repair` did, by kind. */
export type RepairKind = "recounted" | "replicaDropped" | "reindexed" | "blockRecordRestored"

export const repairKinds: ReadonlyArray<RepairKind> = ["recounted", "replicaDropped", "reindexed", "blockRecordRestored"]

/** Problems kept in a report (the counts cover every one). */
export const MAX_PROBLEMS = 1000

/** Everything one walk over a store counts. */
export interface Tallies {
  /** Leftovers older than the grace period: found (dry run, check) or removed (gc). */
  readonly leftovers: Record<LeftoverKind, Tally>
  /** Leftovers within the grace period, kept. */
  readonly young: Record<LeftoverKind, number>
  blobs: number
  chunkedBlobs: number
  logicalBytes: number
  monolithicBytes: number
  blocks: number
  blockBytes: number
  /** Objects under Graviton's areas whose name no rule explains: reported, never touched. */
  unknownObjects: number
  readonly problems: Array<Problem>
  readonly problemCounts: Record<ProblemKind, number>
  readonly repairs: Record<RepairKind, number>
  readonly notes: Array<string>
}

const record = <K extends string, V>(keys: ReadonlyArray<K>, value: () => V): Record<K, V> =>
  Object.fromEntries(keys.map((k) => [k, value()])) as Record<K, V>

export const emptyTallies = (): Tallies => ({
  leftovers: record(leftoverKinds, () => ({ count: 0, bytes: 0 })),
  young: record(leftoverKinds, () => 0),
  blobs: 0,
  chunkedBlobs: 0,
  logicalBytes: 0,
  monolithicBytes: 0,
  blocks: 0,
  blockBytes: 0,
  unknownObjects: 0,
  problems: [],
  problemCounts: record(problemKinds, () => 0),
  repairs: record(repairKinds, () => 0),
  notes: []
})

/** The result of `gc`. */
export interface GcReport {
  readonly dryRun: boolean
  readonly graceSeconds: number
  /** Per kind: what was removed (a dry run: what would be). */
  readonly reclaimed: Record<LeftoverKind, Tally>
  readonly total: Tally
  /** Per kind: leftovers younger than the grace period, kept. */
  readonly keptYoung: Record<LeftoverKind, number>
  readonly unknownObjects: number
  readonly notes: ReadonlyArray<string>
  readonly seconds: number
}

/** The result of `check`. */
export interface CheckReport {
  readonly readData: boolean
  readonly repair: boolean
  readonly blobs: number
  readonly logicalBytes: number
  readonly blocks: number
  readonly blockBytes: number
  readonly problems: ReadonlyArray<Problem>
  readonly problemCounts: Record<ProblemKind, number>
  /** Problems `--repair` did not fix (all of them without it). */
  readonly unrepaired: number
  readonly repairs: Record<RepairKind, number>
  /** What gc would reclaim now (with the same grace period). */
  readonly leftovers: Record<LeftoverKind, Tally>
  readonly keptYoung: Record<LeftoverKind, number>
  readonly unknownObjects: number
  /**
   * The space counters (see blobs/counters.ts) against what the walk counted:
   * match, mismatch, absent (a store older than them), or rewritten by `--repair`.
   */
  readonly counters: {
    readonly state: "match" | "mismatch" | "absent" | "rewritten"
    readonly kept: Counts | null
    readonly counted: Counts
  }
  readonly notes: ReadonlyArray<string>
  readonly seconds: number
}

/** The result of `stats`. */
export interface StatsReport {
  /** kept: read from the counters; absent (a store older than them): counted from every record, `check --repair` stores them. */
  readonly counters: "kept" | "absent"
  readonly blobs: number
  readonly monolithicBlobs: number
  readonly chunkedBlobs: number
  /** Sum of the sizes of the stored blobs. */
  readonly logicalBytes: number
  /** Bytes of the objects live records name: monolithic blobs plus blocks, each once. */
  readonly storedBytes: number
  /** logical / stored (1 without sharing; 0 when nothing is stored). */
  readonly dedupRatio: number
  readonly blocks: number
  readonly blockBytes: number
  readonly averageBlockBytes: number
  readonly stagingObjects: number
  readonly stagingBytes: number
  readonly uploads: number
}
