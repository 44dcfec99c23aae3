/**
 * `graviton uploads ls|status|abort|gc`: resumable uploads in progress (see
 * `upload`). `gc` removes uploads past their deadline with their staged bytes.
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as BinaryKey from "../../core/BinaryKey.js"
import * as RangeSet from "../../core/RangeSet.js"
import { Uploads, type UploadStatus } from "../../uploads/Uploads.js"
import * as Globals from "../globals.js"
import * as Output from "../output.js"
import { withUploads } from "../session.js"

const id = Args.text({ name: "id" }).pipe(Args.withDescription("The upload id (printed by graviton upload)"))

/** The JSON form of a status. */
export const statusJson = (s: UploadStatus) => ({
  id: s.id,
  size: Option.getOrNull(s.size),
  received: s.received,
  landed: s.landed.map((x) => [x.start, x.end]),
  missing: s.missing.map((x) => [x.start, x.end]),
  expectedKey: Option.getOrNull(Option.map(s.expectedKey, BinaryKey.render)),
  createdAt: s.createdAt.toISOString(),
  expiresAt: s.expiresAt.toISOString(),
  staging: s.staging,
  completing: s.completing
})

const summary = (s: UploadStatus): string =>
  `${s.id}  ${Output.formatBytes(s.received)} / ${Option.match(s.size, { onNone: () => "?", onSome: Output.formatBytes })}` +
  `  expires ${s.expiresAt.toISOString()}${s.completing ? "  (completing)" : ""}`

const ls = Command.make("ls", Globals.options, (args) =>
  Effect.gen(function*() {
    const globals = yield* Globals.resolve(args)
    yield* withUploads(
      globals,
      Effect.flatMap(Uploads, (uploads) =>
        Stream.runForEach(uploads.list, (s) => globals.json ? Output.json(statusJson(s)) : Output.line(summary(s))))
    )
  })).pipe(Command.withDescription("List uploads in progress"))

const status = Command.make("status", { ...Globals.options, id }, (args) =>
  Effect.gen(function*() {
    const globals = yield* Globals.resolve(args)
    yield* withUploads(
      globals,
      Effect.gen(function*() {
        const s = yield* (yield* Uploads).status(args.id)
        if (globals.json) return yield* Output.json(statusJson(s))
        yield* Output.line(summary(s))
        yield* Output.line(`landed:  ${RangeSet.format(s.landed)}`)
        yield* Output.line(`missing: ${RangeSet.format(s.missing)}`)
      })
    )
  })).pipe(Command.withDescription("Show what an upload has received and what it still misses"))

const abort = Command.make("abort", { ...Globals.options, id }, (args) =>
  Effect.gen(function*() {
    const globals = yield* Globals.resolve(args)
    yield* withUploads(
      globals,
      Effect.gen(function*() {
        const uploads = yield* Uploads
        // Like `rm` of a key that is not stored: nothing to do is no failure, but it is said.
        const known = yield* uploads.status(args.id).pipe(
          Effect.as(true),
          Effect.catchIf((e) => e.reason === "NotFound", () => Effect.succeed(false))
        )
        yield* uploads.abort(args.id)
        if (globals.json) return yield* Output.json({ id: args.id, aborted: known })
        yield* Output.note(known ? `aborted ${args.id}` : `unknown upload ${args.id}: nothing to abort`)
      })
    )
  })).pipe(Command.withDescription("Abort an upload and remove its staged bytes (exit 0 when it is unknown, as rm)"))

const gc = Command.make("gc", Globals.options, (args) =>
  Effect.gen(function*() {
    const globals = yield* Globals.resolve(args)
    yield* withUploads(
      globals,
      Effect.gen(function*() {
        const removed = yield* (yield* Uploads).expire
        if (globals.json) return yield* Output.json({ expired: removed })
        for (const r of removed) yield* Output.line(r)
        yield* Output.note(`removed ${removed.length} expired upload${removed.length === 1 ? "" : "s"}`)
      })
    )
  })).pipe(Command.withDescription("Remove uploads past their deadline, with their staged bytes"))

/** The `uploads` command group. */
export const uploads = Command.make("uploads", Globals.options).pipe(
  Command.withSubcommands([ls, status, abort, gc]),
  Command.withDescription("Resumable uploads in progress: ls, status <id>, abort <id>, gc")
)
