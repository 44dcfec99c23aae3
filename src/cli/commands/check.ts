/**
 * `graviton check [--read-data] [--repair] [--grace DURATION]`: verifies
 * that the records and the objects agree (lifecycle/Lifecycle.check; docs/operations.md).
 * One line per problem on stdout; exit code 4 when any is left unrepaired.
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import { ExitCode, fail } from "../exitCodes.js"
import * as Globals from "../globals.js"
import * as Output from "../output.js"
import { describeTallies, grace, graceOf, withLifecycle } from "./gc.js"

const readData = Options.boolean("read-data").pipe(
  Options.withDescription("Also re-hash every stored object (reads every byte; what verify does)")
)
const repair = Options.boolean("repair").pipe(
  Options.withDescription("Fix what can be fixed without guessing: recount references, drop dangling replica entries, rebuild missing records")
)

/** The `check` command. */
export const check = Command.make("check", { ...Globals.options, readData, repair, grace }, (args) =>
  Effect.gen(function*() {
    const globals = yield* Globals.resolve(args)
    const graceValue = yield* graceOf(args.grace)
    yield* withLifecycle(globals, (lifecycle) =>
      Effect.gen(function*() {
        const report = yield* lifecycle.check({ grace: graceValue, readData: args.readData, repair: args.repair })
        if (globals.json) {
          yield* Output.json(report)
        } else {
          for (const p of report.problems) {
            yield* Output.line(`${p.repaired ? "REPAIRED" : "PROBLEM"} ${p.kind} ${p.subject}: ${p.description}`)
          }
          for (const n of report.notes) yield* Output.note(`note: ${n}`)
          const total = Object.values(report.problemCounts).reduce((a, b) => a + b, 0)
          const found = total === 0 ? "no problems" : `${total} problem(s), ${report.unrepaired} unrepaired`
          yield* Output.note(
            `checked ${report.blobs} blob${report.blobs === 1 ? "" : "s"} (${Output.formatBytes(report.logicalBytes)}) and ` +
              `${report.blocks} block${report.blocks === 1 ? "" : "s"}${report.readData ? ", every object re-hashed" : ""}: ${found}`
          )
          const rebuilt = report.repairs.reindexed + report.repairs.blockRecordRestored
          if (report.repair) {
            yield* Output.note(
              `repaired: ${report.repairs.recounted} reference count(s), ${report.repairs.replicaDropped} replica entr${report.repairs.replicaDropped === 1 ? "y" : "ies"} dropped, ` +
                `${rebuilt} record(s) rebuilt from objects`
            )
          }
          yield* Output.note(`gc would reclaim: ${describeTallies(report.leftovers)}`)
        }
        if (report.unrepaired > 0) {
          return yield* fail(
            ExitCode.Corrupted,
            `check found ${report.unrepaired} unrepaired problem${report.unrepaired === 1 ? "" : "s"}` +
              (report.repair ? "" : "; graviton check --repair fixes reference counts, dangling entries and lost records")
          )
        }
      }))
  })).pipe(Command.withDescription("Check that records and objects agree; --repair fixes what it can (exit 4 if problems remain)"))
