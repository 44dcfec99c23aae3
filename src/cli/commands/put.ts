/** `graviton put <file|->`: stores content, prints its key, says whether it was deduplicated. */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as BinaryKey from "../../core/BinaryKey.js"
import * as BlobLocator from "../../core/BlobLocator.js"
import { BlobStore } from "../../ports/BlobStore.js"
import * as Globals from "../globals.js"
import * as Io from "../io.js"
import * as Output from "../output.js"
import * as Progress from "../progress.js"
import { withStore } from "../session.js"

const file = Args.text({ name: "file" }).pipe(Args.withDescription("The file to store, or - to read standard input"))

const algorithm = Options.choice("algorithm", ["sha256", "blake3"] as const).pipe(
  Options.withDescription("Hash algorithm of the key (default: the store's, sha256)"),
  Options.optional
)

/** The `put` command. */
export const put = Command.make("put", { ...Globals.options, file, algorithm }, (args) =>
  Effect.gen(function*() {
    const globals = yield* Globals.resolve(args)
    yield* withStore(
      globals,
      Effect.gen(function*() {
        const input = yield* Io.input(args.file)
        const progress = yield* Progress.make("put", input.size)
        const store = yield* BlobStore
        const started = performance.now()
        const result = yield* Stream.run(
          progress.track(input.stream),
          store.put(Option.match(args.algorithm, { onNone: () => ({}), onSome: (a) => ({ algorithm: a }) }))
        )
        const seconds = (performance.now() - started) / 1000
        const key = BinaryKey.render(result.key)
        if (globals.json) {
          return yield* Output.json({
            key,
            size: result.size,
            deduplicated: result.deduplicated,
            repaired: result.repaired === true,
            locator: BlobLocator.render(result.locator),
            seconds: Math.round(seconds * 1000) / 1000
          })
        }
        yield* Output.line(key)
        yield* Output.note(
          result.repaired === true
            ? `repaired: ${input.name} (${Output.formatBytes(result.size)}) was stored with missing or damaged bytes; stored them again`
            : result.deduplicated
            ? `deduplicated: ${input.name} (${Output.formatBytes(result.size)}) is already stored; nothing new written`
            : `stored ${input.name} (${Output.formatBytes(result.size)}) in ${seconds.toFixed(2)} s${
              result.size >= 1024 * 1024 ? `, ${Output.formatRate(result.size, seconds)}` : ""
            }`
        )
      })
    )
  })).pipe(Command.withDescription("Store a file (or standard input with -) and print its content key"))
