/** `graviton rm <key>`: removes a blob (bytes, metadata, replica entries); idempotent. */
import * as Command from "@effect/cli/Command"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as BinaryKey from "../../core/BinaryKey.js"
import { BlobStore } from "../../ports/BlobStore.js"
import * as Globals from "../globals.js"
import * as Keys from "../keys.js"
import * as Output from "../output.js"
import { withStore } from "../session.js"

/** The `rm` command. */
export const rm = Command.make("rm", { ...Globals.options, key: Keys.arg }, (args) =>
  Effect.gen(function*() {
    const globals = yield* Globals.resolve(args)
    yield* withStore(
      globals,
      Effect.gen(function*() {
        const key = yield* Keys.parse(args.key)
        const store = yield* BlobStore
        // Removing a missing key succeeds (like the port); the output says whether anything was there.
        const existed = Option.isSome(yield* store.stat(key))
        yield* store.delete(key)
        const text = BinaryKey.render(key)
        if (globals.json) return yield* Output.json({ key: text, removed: existed })
        yield* Output.note(existed ? `removed ${text}` : `nothing to remove: ${text} is not stored`)
      })
    )
  })).pipe(Command.withDescription("Remove a blob; removing a key that is not stored succeeds"))
