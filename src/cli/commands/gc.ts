/**
 * `graviton gc [--dry-run] [--grace DURATION]`: reclaims what interrupted
 * puts, uploads and lost references leave behind (lifecycle/Lifecycle.gc;
 * docs/operations.md). Prints one line per kind reclaimed; `--dry-run`
 * removes nothing and prints the same. Also `lifecycleOf`, shared with
 * `check` and `stats`: the lifecycle over the selected store's ports.
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { KeyValueStore } from "../../ports/KeyValueStore.js"
import { MutableObjectStore } from "../../ports/ObjectStore.js"
import { ReplicaIndex } from "../../ports/ReplicaIndex.js"
import * as Lifecycle from "../../lifecycle/Lifecycle.js"
import { leftoverKinds, type Tally } from "../../lifecycle/report.js"
import { ExitCode, fail } from "../exitCodes.js"
import * as Globals from "../globals.js"
import * as Output from "../output.js"
import { withStore, withUploads } from "../session.js"
import * as Stores from "../stores.js"

const UNITS: Record<string, Duration.DurationInput> = {
  ms: Duration.millis(1),
  s: Duration.seconds(1),
  m: Duration.minutes(1),
  h: Duration.hours(1),
  d: Duration.days(1),
  w: Duration.weeks(1)
}

/** `90s`, `30m`, `24h`, `7d`, `500ms`, `0`, or a bare number of seconds. */
export const parseDuration = (text: string): Option.Option<Duration.Duration> => {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$/.exec(text)
  if (m === null) return Option.none()
  const unit = Duration.toMillis(UNITS[m[2] ?? "s"]!)
  return Option.some(Duration.millis(Number(m[1]) * unit))
}

/** `--grace DURATION`, shared by gc and check. */
export const grace = Options.text("grace").pipe(
  Options.withPseudoName("duration"),
  Options.withDescription("Keep leftovers younger than this: 90s, 30m, 24h, 7d (default 24h)"),
  Options.optional
)

/** The parsed `--grace`, or a usage failure. */
export const graceOf = (value: Option.Option<string>) =>
  Option.match(value, {
    onNone: () => Effect.succeed<Duration.Duration | undefined>(undefined),
    onSome: (text) =>
      Option.match(parseDuration(text), {
        onNone: () => Effect.fail(fail(ExitCode.Usage, `invalid --grace ${JSON.stringify(text)}: expected e.g. 90s, 30m, 24h or 7d`)),
        onSome: (d) => Effect.succeed<Duration.Duration | undefined>(d)
      })
  })

/**
 * The lifecycle over the selected store's ports. A store without
 * content-addressed records (`s3`: S3 keeps its blobs natively, with no
 * key-value store) has nothing to walk: a usage failure says so.
 */
export const lifecycleOf = (store: string) =>
  Effect.gen(function*() {
    const objects = yield* Effect.serviceOption(MutableObjectStore)
    const kv = yield* Effect.serviceOption(KeyValueStore)
    const replicas = yield* Effect.serviceOption(ReplicaIndex)
    if (Option.isNone(objects) || Option.isNone(kv) || Option.isNone(replicas)) {
      return yield* fail(
        ExitCode.Usage,
        `the ${store} store keeps each blob as a native object with no metadata store, so there are no records ` +
          "to check the objects against, no blocks to collect and no counters to read; gc, check and stats work on the " +
          `${Stores.names().filter((n) => n !== "s3").join(", ")} stores (for its unfinished multipart uploads, ` +
          "set an S3 lifecycle rule: docs/operations.md)"
      )
    }
    return yield* Lifecycle.make().pipe(
      Effect.provideService(MutableObjectStore, objects.value),
      Effect.provideService(KeyValueStore, kv.value),
      Effect.provideService(ReplicaIndex, replicas.value)
    )
  })

/** Runs `body` with the store's lifecycle, its resumable uploads included where the store has them. */
export const withLifecycle = <A>(
  globals: Globals.Globals,
  body: (lifecycle: Lifecycle.Lifecycle["Type"]) => Effect.Effect<A, unknown>
) => {
  const run = Effect.flatMap(lifecycleOf(globals.store), body)
  return Stores.get(globals.store)?.uploads === undefined ? withStore(globals, run) : withUploads(globals, run)
}

/** `3 staging (1.2 MiB)` for the kinds with anything in them; `nothing` when none has. */
export const describeTallies = (tallies: Record<string, Tally>): string => {
  const parts = leftoverKinds
    .filter((k) => tallies[k]!.count > 0)
    .map((k) => `${tallies[k]!.count} ${k} (${Output.formatBytes(tallies[k]!.bytes)})`)
  return parts.length === 0 ? "nothing" : parts.join(", ")
}

const dryRun = Options.boolean("dry-run").pipe(Options.withDescription("Remove nothing; report what would be removed"))

/** The `gc` command. */
export const gc = Command.make("gc", { ...Globals.options, dryRun, grace }, (args) =>
  Effect.gen(function*() {
    const globals = yield* Globals.resolve(args)
    const graceValue = yield* graceOf(args.grace)
    yield* withLifecycle(globals, (lifecycle) =>
      Effect.gen(function*() {
        const report = yield* lifecycle.gc({ grace: graceValue, dryRun: args.dryRun })
        if (globals.json) return yield* Output.json(report)
        const verb = report.dryRun ? "would reclaim" : "reclaimed"
        for (const k of leftoverKinds) {
          const t = report.reclaimed[k]
          if (t.count > 0) yield* Output.line(`${verb} ${k}: ${t.count} (${Output.formatBytes(t.bytes)})`)
        }
        for (const n of report.notes) yield* Output.note(`note: ${n}`)
        const kept = leftoverKinds.reduce((n, k) => n + report.keptYoung[k], 0)
        yield* Output.note(
          `${verb} ${report.total.count} item${report.total.count === 1 ? "" : "s"} (${Output.formatBytes(report.total.bytes)})` +
            (kept > 0 ? `; kept ${kept} younger than the grace period (${Duration.format(Duration.seconds(report.graceSeconds))})` : "")
        )
      }))
  })).pipe(Command.withDescription("Reclaim leftovers of interrupted work and unreferenced blocks (see docs/operations.md)"))
