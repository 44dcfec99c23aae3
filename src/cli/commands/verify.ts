/**
 * `graviton verify [key]`: re-reads stored blobs through the verifying read
 * path and reports every one whose bytes no longer match its key (or whose
 * bytes are gone). Exit code 4 when any blob is bad.
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as BinaryKey from "../../core/BinaryKey.js"
import * as Lending from "../../core/Lending.js"
import type { BlobError } from "../../core/Errors.js"
import type { BlobStat } from "../../core/Models.js"
import { BlobStore } from "../../ports/BlobStore.js"
import { ExitCode, fail } from "../exitCodes.js"
import * as Globals from "../globals.js"
import * as Keys from "../keys.js"
import * as Output from "../output.js"
import * as Progress from "../progress.js"
import { withStore } from "../session.js"

const key = Keys.arg.pipe(Args.withDescription("Verify only this key (default: every stored blob)"), Args.optional)

/** One blob that failed verification. */
interface Bad {
  readonly key: string
  readonly reason: "Corrupted" | "NotFound"
  readonly description: string
}

/** Reads one blob to the end; Some(problem) when its bytes are corrupted or missing. */
const check = (stat: BlobStat): Effect.Effect<Option.Option<Bad>, BlobError, BlobStore> =>
  Effect.scoped(
    Effect.gen(function*() {
      const store = yield* BlobStore
      const progress = yield* Progress.make("verify", Option.some(stat.size))
      // The store hashed each chunk before emitting it: nothing needs it any more (see Lending).
      const consumed = Stream.runForEachChunk(progress.track(store.get(stat.key)), (chunks) =>
        Effect.sync(() => {
          for (const c of chunks) Lending.giveBack(c)
        }))
      return yield* consumed.pipe(
        Effect.as(Option.none<Bad>()),
        Effect.catchIf(
          (e) => e.reason === "Corrupted" || e.reason === "NotFound",
          (e) =>
            Effect.succeed(Option.some<Bad>({
              key: BinaryKey.render(stat.key),
              reason: e.reason as Bad["reason"],
              description: e.description ?? (e.reason === "NotFound" ? "the stored bytes are missing" : "hash mismatch")
            }))
        )
      )
    })
  )

/** The `verify` command. */
export const verify = Command.make("verify", { ...Globals.options, key }, (args) =>
  Effect.gen(function*() {
    const globals = yield* Globals.resolve(args)
    yield* withStore(
      globals,
      Effect.gen(function*() {
        const store = yield* BlobStore
        const stats: Stream.Stream<BlobStat, unknown, BlobStore> = Option.match(args.key, {
          onNone: () => store.list,
          onSome: (text) => Stream.fromEffect(Effect.flatMap(Keys.parse(text), Keys.statOrFail))
        })
        const bad: Array<Bad> = []
        const [checked, bytes] = yield* Stream.runFoldEffect(
          stats,
          [0, 0] as readonly [number, number],
          ([n, total], stat) =>
            check(stat).pipe(
              Effect.tap(Option.match({
                onNone: () => Effect.void,
                onSome: (b) => {
                  bad.push(b)
                  return globals.json ? Effect.void : Output.line(`${b.reason.toUpperCase()} ${b.key}: ${b.description}`)
                }
              })),
              Effect.as([n + 1, total + stat.size] as const)
            )
        )
        if (globals.json) {
          yield* Output.json({ checked, bytes, ok: checked - bad.length, bad })
        } else if (bad.length === 0) {
          yield* Output.note(`verified ${checked} blob${checked === 1 ? "" : "s"} (${Output.formatBytes(bytes)}): all intact`)
        }
        if (bad.length > 0) {
          return yield* fail(
            ExitCode.Corrupted,
            `verification failed: ${bad.length} of ${checked} blob${checked === 1 ? "" : "s"} corrupted or missing; ` +
              `putting the same content again repairs a blob (graviton put FILE), or a replica does (graviton repair)`
          )
        }
      })
    )
  })).pipe(Command.withDescription("Re-hash stored blobs and report each one that is corrupted (exit code 4 if any)"))
