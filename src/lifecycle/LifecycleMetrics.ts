/** Metrics of the lifecycle functions, recorded through the MetricsRegistry when one is in the context. */

/** gc runs, by `dry_run` ("true" | "false"). Counter. */
export const gcRuns = "graviton_gc_runs_total"
/** Objects (or uploads, or multipart uploads) gc removed, by `kind` (report.LeftoverKind). Counter. */
export const gcReclaimedObjects = "graviton_gc_reclaimed_objects_total"
/** Bytes gc reclaimed, by `kind`. Counter. */
export const gcReclaimedBytes = "graviton_gc_reclaimed_bytes_total"
/** Leftovers gc found within the grace period and kept, by `kind`. Counter. */
export const gcKeptYoung = "graviton_gc_kept_young_total"
/** Duration of one gc run, seconds. Histogram. */
export const gcDuration = "graviton_gc_duration_seconds"
/** Problems check found, by `kind` (report.ProblemKind). Counter. */
export const checkProblems = "graviton_check_problems_total"
/** Repairs check made, by `kind` (report.RepairKind). Counter. */
export const checkRepairs = "graviton_check_repairs_total"

/** Help texts, for a registry that renders Prometheus text (Metrics.layerWith({ help })). */
export const help: Readonly<Record<string, string>> = {
  [gcRuns]: "Garbage collection runs",
  [gcReclaimedObjects]: "Leftovers removed by garbage collection, by kind",
  [gcReclaimedBytes]: "Bytes reclaimed by garbage collection, by kind",
  [gcKeptYoung]: "Leftovers younger than the grace period, kept by garbage collection",
  [gcDuration]: "Duration of garbage collection runs in seconds",
  [checkProblems]: "Inconsistencies found by check, by kind",
  [checkRepairs]: "Repairs made by check --repair, by kind"
}
