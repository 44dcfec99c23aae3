/**
 * `graviton get <key> [-o file]` and `graviton cat <key>`: verified reads.
 * With `-o` a file is replaced only once the whole stream has been verified,
 * a device, FIFO or socket is written in place (see outputFile.ts); to
 * stdout, bytes flow as they are read and a corruption found at the end is
 * reported by the exit code.
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as BinaryKey from "../../core/BinaryKey.js"
import { BlobStore } from "../../ports/BlobStore.js"
import * as Globals from "../globals.js"
import * as Keys from "../keys.js"
import * as OutputFile from "../outputFile.js"
import * as Output from "../output.js"
import * as Progress from "../progress.js"
import { withStore } from "../session.js"
import type * as Stores from "../stores.js"
import { readerFor } from "./replicate.js"

const output = Options.text("output").pipe(
  Options.withAlias("o"),
  Options.withPseudoName("file"),
  Options.withDescription(
    "Write to this file (replaced only once verified; a device, FIFO or socket is written in place) instead of standard output"
  ),
  Options.optional
)

const read = (keyText: string, target: Option.Option<string>, json: boolean, settings: Stores.StoreSettings) =>
  Effect.gen(function*() {
    const key = yield* Keys.parse(keyText)
    // Stat first: a missing key fails before any output file is created, and the size drives progress.
    const stat = yield* Keys.statOrFail(key)
    // A key with replicas on remembered targets falls back to them (see replicate.ts readerFor).
    const store = yield* readerFor(key, yield* BlobStore, settings)
    const progress = yield* Progress.make(Option.isSome(target) ? "get" : "cat", Option.some(stat.size))
    const stream = progress.track(store.get(key))
    const started = performance.now()
    if (Option.isNone(target)) {
      yield* Output.toStdout(stream)
      return
    }
    const written = yield* OutputFile.write(target.value, stream)
    const seconds = (performance.now() - started) / 1000
    if (json) {
      return yield* Output.json({ key: BinaryKey.render(key), size: written, output: target.value, verified: true })
    }
    yield* Output.note(
      `wrote ${target.value} (${Output.formatBytes(written)}, verified) in ${seconds.toFixed(2)} s${
        written >= 1024 * 1024 ? `, ${Output.formatRate(written, seconds)}` : ""
      }`
    )
  })

/** The `get` command. */
export const get = Command.make("get", { ...Globals.options, key: Keys.arg, output }, (args) =>
  Effect.flatMap(
    Globals.resolve(args),
    (globals) => withStore(globals, read(args.key, args.output, globals.json, globals.settings))
  )).pipe(
    Command.withDescription("Read a blob, verified against its key, into a file (-o) or to standard output")
  )

/** The `cat` command. */
export const cat = Command.make("cat", { ...Globals.options, key: Keys.arg }, (args) =>
  Effect.flatMap(
    Globals.resolve(args),
    (globals) => withStore(globals, read(args.key, Option.none(), globals.json, globals.settings))
  )).pipe(
    Command.withDescription("Write a blob to standard output, verified against its key (non-zero exit if corrupted)")
  )
