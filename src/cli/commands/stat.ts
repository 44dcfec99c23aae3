/** `graviton stat <key>`: what the store knows about one blob. */
import * as Command from "@effect/cli/Command"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as BinaryKey from "../../core/BinaryKey.js"
import * as BlobLocator from "../../core/BlobLocator.js"
import * as Globals from "../globals.js"
import * as Keys from "../keys.js"
import * as Output from "../output.js"
import { withStore } from "../session.js"

/** The `stat` command. */
export const stat = Command.make("stat", { ...Globals.options, key: Keys.arg }, (args) =>
  Effect.gen(function*() {
    const globals = yield* Globals.resolve(args)
    yield* withStore(
      globals,
      Effect.gen(function*() {
        const s = yield* Keys.statOrFail(yield* Keys.parse(args.key))
        const locator = Option.map(s.locator, BlobLocator.render)
        const createdAt = Option.map(s.createdAt, (d) => d.toISOString())
        if (globals.json) {
          return yield* Output.json({
            key: BinaryKey.render(s.key),
            size: s.size,
            locator: Option.getOrNull(locator),
            createdAt: Option.getOrNull(createdAt)
          })
        }
        yield* Output.line(`key:      ${BinaryKey.render(s.key)}`)
        yield* Output.line(`size:     ${s.size} bytes (${Output.formatBytes(s.size)})`)
        yield* Output.line(`locator:  ${Option.getOrElse(locator, () => "(not exposed by this store)")}`)
        yield* Output.line(`created:  ${Option.getOrElse(createdAt, () => "(unknown)")}`)
      })
    )
  })).pipe(Command.withDescription("Show a stored blob's size, location and creation time"))
