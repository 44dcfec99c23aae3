/** `graviton stats`: blob count, logical and stored bytes, dedup ratio, blocks, staging and uploads (lifecycle/stats.ts). */
import * as Command from "@effect/cli/Command"
import * as Effect from "effect/Effect"
import * as Globals from "../globals.js"
import * as Output from "../output.js"
import { withLifecycle } from "./gc.js"

/** The `stats` command. */
export const stats = Command.make("stats", Globals.options, (args) =>
  Effect.gen(function*() {
    const globals = yield* Globals.resolve(args)
    yield* withLifecycle(globals, (lifecycle) =>
      Effect.gen(function*() {
        const s = yield* lifecycle.stats
        if (globals.json) return yield* Output.json(s)
        yield* Output.line(`blobs          ${s.blobs} (${s.monolithicBlobs} monolithic, ${s.chunkedBlobs} chunked)`)
        yield* Output.line(`logical bytes  ${Output.formatBytes(s.logicalBytes)}`)
        yield* Output.line(`stored bytes   ${Output.formatBytes(s.storedBytes)}`)
        yield* Output.line(`dedup ratio    ${s.dedupRatio.toFixed(2)}`)
        yield* Output.line(`blocks         ${s.blocks} (${Output.formatBytes(s.blockBytes)}, average ${Output.formatBytes(Math.round(s.averageBlockBytes))})`)
        yield* Output.line(`staging        ${s.stagingObjects} object${s.stagingObjects === 1 ? "" : "s"} (${Output.formatBytes(s.stagingBytes)})`)
        yield* Output.line(`uploads        ${s.uploads} in progress`)
        if (s.counters === "absent") {
          yield* Output.note("note: this store has no space counters yet (written before them), so every record was read; `graviton check --repair` stores them")
        }
      }))
  })).pipe(Command.withDescription("Space accounting: blobs, logical and stored bytes, dedup ratio, blocks, staging, uploads"))
