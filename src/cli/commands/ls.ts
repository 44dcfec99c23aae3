/** `graviton ls`: streams every stored key with its size. */
import * as Command from "@effect/cli/Command"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as BinaryKey from "../../core/BinaryKey.js"
import * as BlobLocator from "../../core/BlobLocator.js"
import { BlobStore } from "../../ports/BlobStore.js"
import * as Globals from "../globals.js"
import * as Output from "../output.js"
import { withStore } from "../session.js"

/** The `ls` command. */
export const ls = Command.make("ls", { ...Globals.options }, (args) =>
  Effect.gen(function*() {
    const globals = yield* Globals.resolve(args)
    yield* withStore(
      globals,
      Effect.gen(function*() {
        const store = yield* BlobStore
        // Printed as they arrive: the listing is never collected in memory.
        const [count, bytes] = yield* Stream.runFoldEffect(
          store.list,
          [0, 0] as readonly [number, number],
          ([n, total], s) =>
            (globals.json
              ? Output.json({
                key: BinaryKey.render(s.key),
                size: s.size,
                locator: Option.getOrNull(Option.map(s.locator, BlobLocator.render)),
                createdAt: Option.getOrNull(Option.map(s.createdAt, (d) => d.toISOString()))
              })
              : Output.line(`${BinaryKey.render(s.key)}  ${Output.formatBytes(s.size)}`)).pipe(
                Effect.as([n + 1, total + s.size] as const)
              )
        )
        if (!globals.json) yield* Output.note(`${count} blob${count === 1 ? "" : "s"}, ${Output.formatBytes(bytes)}`)
      })
    )
  })).pipe(Command.withDescription("List stored blobs with their sizes (one JSON object per line with --json)"))
