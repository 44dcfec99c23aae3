/**
 * The storage lifecycle of a content-addressed store (CasBlobStore over any
 * ports): `gc` reclaims what interrupted work and lost references leave
 * behind, `check` verifies that the records and the objects agree (and
 * `repair`s what it can without guessing, rebuilding the index from the
 * objects where records are gone), `stats` accounts for the space. All
 * three stream (see walk.ts): memory stays flat whatever the store's size.
 * Operations guide: docs/operations.md.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Counters from "../blobs/counters.js"
import type { StorageError } from "../core/Errors.js"
import type { KeyValueStore } from "../ports/KeyValueStore.js"
import type { MetricsRegistry } from "../ports/MetricsRegistry.js"
import type { MutableObjectStore } from "../ports/ObjectStore.js"
import type { ReplicaIndex } from "../ports/ReplicaIndex.js"
import * as Ctx from "./context.js"
import * as LifecycleMetrics from "./LifecycleMetrics.js"
import {
  type CheckReport,
  emptyTallies,
  type GcReport,
  leftoverKinds,
  problemKinds,
  repairKinds,
  type StatsReport,
  type Tallies
} from "./report.js"
import { stats as computeStats } from "./stats.js"
import { walk } from "./walk.js"

export type { CheckReport, GcReport, LeftoverKind, Problem, ProblemKind, RepairKind, StatsReport, Tally } from "./report.js"
export type { Options } from "./context.js"

/**
 * Default grace period: 24 hours. Nothing younger is removed, and a block
 * referenced within it is kept, so it must exceed the longest put or
 * upload complete (a put holds its blocks' references unpublished until
 * it ends). 24 h is also the default deadline of resumable uploads and the
 * age at which the fs store sweeps its temporary files.
 */
export const DEFAULT_GRACE = Duration.hours(24)

/** Options of `gc`. */
export interface GcOptions {
  readonly grace?: Duration.DurationInput | undefined
  /** Remove nothing; report what would be removed. */
  readonly dryRun?: boolean | undefined
}

/** Options of `check`. */
export interface CheckOptions {
  /** Leftovers and reference counts touched more recently than this are left alone (default DEFAULT_GRACE). */
  readonly grace?: Duration.DurationInput | undefined
  /** Re-hash every object a live record names. */
  readonly readData?: boolean | undefined
  /** Recount references, drop replica entries to missing objects, rebuild missing records from the objects. */
  readonly repair?: boolean | undefined
}

/** The lifecycle of one store. */
export class Lifecycle extends Context.Tag("graviton/Lifecycle")<Lifecycle, {
  readonly gc: (options?: GcOptions) => Effect.Effect<GcReport, StorageError>
  readonly check: (options?: CheckOptions) => Effect.Effect<CheckReport, StorageError>
  readonly stats: Effect.Effect<StatsReport, StorageError>
}>() {}

const graceMillis = (grace: Duration.DurationInput | undefined) => Duration.toMillis(Duration.decode(grace ?? DEFAULT_GRACE))

/** Runs `f` on the context's MetricsRegistry, when there is one. */
const record = (ctx: Ctx.Context, f: (m: MetricsRegistry["Type"]) => Effect.Effect<void>) =>
  Option.match(ctx.metrics, { onNone: () => Effect.void, onSome: f })

const gc = (ctx: Ctx.Context) => (options: GcOptions = {}) =>
  Effect.gen(function*() {
    const started = yield* Clock.currentTimeMillis
    const grace = graceMillis(options.grace)
    const dryRun = options.dryRun === true
    const t = emptyTallies()
    yield* walk(ctx, { now: started, grace, reclaim: !dryRun, check: false, readData: false, repair: false }, t)
    const seconds = ((yield* Clock.currentTimeMillis) - started) / 1000
    const total = leftoverKinds.reduce(
      (acc, k) => ({ count: acc.count + t.leftovers[k].count, bytes: acc.bytes + t.leftovers[k].bytes }),
      { count: 0, bytes: 0 }
    )
    yield* record(ctx, (m) =>
      Effect.gen(function*() {
        yield* m.counter(LifecycleMetrics.gcRuns, 1, { dry_run: String(dryRun) })
        yield* m.histogram(LifecycleMetrics.gcDuration, seconds)
        for (const k of leftoverKinds) {
          if (t.young[k] > 0) yield* m.counter(LifecycleMetrics.gcKeptYoung, t.young[k], { kind: k })
          if (dryRun || t.leftovers[k].count === 0) continue
          yield* m.counter(LifecycleMetrics.gcReclaimedObjects, t.leftovers[k].count, { kind: k })
          yield* m.counter(LifecycleMetrics.gcReclaimedBytes, t.leftovers[k].bytes, { kind: k })
        }
      }))
    return {
      dryRun,
      graceSeconds: grace / 1000,
      reclaimed: t.leftovers,
      total,
      keptYoung: t.young,
      unknownObjects: t.unknownObjects,
      notes: t.notes,
      seconds
    } satisfies GcReport
  })

/**
 * Compares the space counters with what the walk counted; `repair` rewrites
 * them. Writes during the walk make the two differ, and make the rewrite
 * fail when they touch the counters meanwhile (said in a note; run again).
 */
const checkCounters = (ctx: Ctx.Context, t: Tallies, repair: boolean) =>
  Effect.gen(function*() {
    const counted: Counters.Counts = {
      blobs: t.blobs,
      chunkedBlobs: t.chunkedBlobs,
      logicalBytes: t.logicalBytes,
      monolithicBytes: t.monolithicBytes,
      blocks: t.blocks,
      blockBytes: t.blockBytes
    }
    const kept = Option.getOrNull(yield* Counters.read(ctx.kv))
    const state = kept === null ? "absent" as const : Counters.equal(kept, counted) ? "match" as const : "mismatch" as const
    if (state === "match") return { state, kept, counted }
    if (!repair) {
      t.notes.push(
        state === "absent"
          ? "the space counters are absent (a store older than them): `graviton check --repair` stores them"
          : "the space counters differ from the records: `graviton check --repair` rewrites them"
      )
      return { state, kept, counted }
    }
    if (yield* Counters.reset(ctx.kv, counted)) {
      t.notes.push(`the space counters were ${state === "absent" ? "stored" : "rewritten"} from the records`)
      return { state: "rewritten" as const, kept, counted }
    }
    t.notes.push("the space counters changed while they were being rewritten (a write ran meanwhile): run `check --repair` again")
    return { state, kept, counted }
  })

const check = (ctx: Ctx.Context) => (options: CheckOptions = {}) =>
  Effect.gen(function*() {
    const started = yield* Clock.currentTimeMillis
    const readData = options.readData === true
    const repair = options.repair === true
    const t = emptyTallies()
    yield* walk(ctx, { now: started, grace: graceMillis(options.grace), reclaim: false, check: true, readData, repair }, t)
    const counters = yield* checkCounters(ctx, t, repair)
    yield* record(ctx, (m) =>
      Effect.gen(function*() {
        for (const k of problemKinds) {
          if (t.problemCounts[k] > 0) yield* m.counter(LifecycleMetrics.checkProblems, t.problemCounts[k], { kind: k })
        }
        for (const k of repairKinds) {
          if (t.repairs[k] > 0) yield* m.counter(LifecycleMetrics.checkRepairs, t.repairs[k], { kind: k })
        }
      }))
    const found = problemKinds.reduce((n, k) => n + t.problemCounts[k], 0)
    const fixed = t.problems.filter((p) => p.repaired).length
    return {
      readData,
      repair,
      blobs: t.blobs,
      logicalBytes: t.logicalBytes,
      blocks: t.blocks,
      blockBytes: t.blockBytes,
      problems: t.problems,
      problemCounts: t.problemCounts,
      unrepaired: found - fixed,
      repairs: t.repairs,
      leftovers: t.leftovers,
      keptYoung: t.young,
      unknownObjects: t.unknownObjects,
      counters,
      notes: t.notes,
      seconds: ((yield* Clock.currentTimeMillis) - started) / 1000
    } satisfies CheckReport
  })

/** The lifecycle over the store's ports in the context (optional: Uploads, MultipartUploads, MetricsRegistry, BlobAssembly). */
export const make = (
  options: Ctx.Options = {}
): Effect.Effect<Lifecycle["Type"], StorageError, MutableObjectStore | KeyValueStore | ReplicaIndex> =>
  Effect.map(Ctx.make(options), (ctx) => Lifecycle.of({ gc: gc(ctx), check: check(ctx), stats: computeStats(ctx) }))

/** Lifecycle as a layer over the same services as `make`. */
export const layer = (
  options: Ctx.Options = {}
): Layer.Layer<Lifecycle, StorageError, MutableObjectStore | KeyValueStore | ReplicaIndex> => Layer.effect(Lifecycle, make(options))
