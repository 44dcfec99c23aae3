/**
 * `graviton repair [key] [--from <target>...]`: checks the selected store's
 * copy of a blob (default: every stored blob) by reading it whole, and
 * restores a missing or corrupted one from a replica (replication/Replicator).
 * Replicas are read from the targets `replicate` remembered, plus any given
 * with `--from` (same syntax as `replicate --to`). A remembered target that
 * cannot be opened is skipped with a note. Exit code: 0 when every blob is
 * healthy or restored, else that of the first failure's reason (4 when a
 * corrupted blob had no usable replica).
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as BinaryKey from "../../core/BinaryKey.js"
import { ReplicaIndex } from "../../ports/ReplicaIndex.js"
import * as Replicator from "../../replication/Replicator.js"
import { classify, codeOfReason, fail } from "../exitCodes.js"
import * as Globals from "../globals.js"
import * as Keys from "../keys.js"
import * as Output from "../output.js"
import { withStore } from "../session.js"
import * as Stores from "../stores.js"
import { parseTarget, remembered, replicaIndex, type TargetSpec } from "./replicate.js"

const key = Keys.arg.pipe(Args.withDescription("Repair only this key (default: every stored blob)"), Args.optional)

const from = Options.text("from").pipe(
  Options.withPseudoName("target"),
  Options.withDescription("Also read replicas from this target: [name=]embedded:<dir> | memory | pg | s3 (repeatable)"),
  Options.repeated
)

/** The `repair` command. */
export const repair = Command.make("repair", { ...Globals.options, key, from }, (args) =>
  Effect.gen(function*() {
    const globals = yield* Globals.resolve(args)
    const extra = yield* Effect.forEach(args.from, parseTarget)
    yield* withStore(
      globals,
      Effect.gen(function*() {
        const k = yield* Option.match(args.key, {
          onNone: () => Effect.succeed(Option.none<BinaryKey.BinaryKey>()),
          onSome: (text) => Effect.map(Keys.parse(text), Option.some)
        })
        const index = yield* replicaIndex(globals.store)
        // Explicit targets win over remembered ones of the same name.
        const byName = new Map<string, TargetSpec>()
        for (const t of yield* remembered) byName.set(t.name, t)
        for (const t of extra) byName.set(t.name, t)
        const targets: Array<Replicator.Target> = []
        for (const t of byName.values()) {
          const opened = yield* Effect.either(Stores.buildStore(t.spec, globals.settings))
          if (opened._tag === "Right") {
            targets.push({ name: t.name, store: opened.right })
          } else {
            yield* Output.note(`skipping target ${t.name} (${t.spec}): ${classify(opened.left)?.message ?? String(opened.left)}`)
          }
        }
        const replicator = yield* Replicator.make({ targets }).pipe(Effect.provideService(ReplicaIndex, index))
        const report = yield* replicator.repair(Option.getOrUndefined(k))
        if (globals.json) {
          yield* Output.json({
            checked: report.checked,
            healthy: report.healthy,
            restored: report.restored.map((r) => ({ key: BinaryKey.render(r.key), from: r.from })),
            failed: report.failed.map((f) => ({ key: BinaryKey.render(f.key), reason: f.error.reason, description: f.error.message }))
          })
        } else {
          for (const r of report.restored) yield* Output.line(`restored ${BinaryKey.render(r.key)} from ${r.from}`)
          for (const f of report.failed) yield* Output.line(`FAILED   ${BinaryKey.render(f.key)}: ${f.error.message}`)
          yield* Output.note(
            `checked ${report.checked} blob${report.checked === 1 ? "" : "s"}: ${report.healthy} healthy, ${report.restored.length} restored, ${report.failed.length} failed`
          )
        }
        const first = report.failed[0]
        if (first !== undefined) {
          return yield* fail(
            codeOfReason(first.error.reason),
            `repair failed for ${report.failed.length} of ${report.checked} blob${report.checked === 1 ? "" : "s"}`
          )
        }
      })
    )
  })).pipe(Command.withDescription("Check blobs and restore missing or corrupted ones from their replicas"))
