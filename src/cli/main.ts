/**
 * The `graviton` command line. Parses arguments with @effect/cli, runs the
 * chosen command under NodeRuntime.runMain, and turns the outcome into an
 * exit code: expected failures print one line on stderr (see exitCodes.ts),
 * only defects print a stack trace.
 */
import * as CliConfig from "@effect/cli/CliConfig"
import * as Command from "@effect/cli/Command"
import * as Descriptor from "@effect/cli/CommandDescriptor"
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { readFileSync } from "node:fs"
import { check } from "./commands/check.js"
import { gc } from "./commands/gc.js"
import { cat, get } from "./commands/get.js"
import { ls } from "./commands/ls.js"
import { metrics } from "./commands/metrics.js"
import { put } from "./commands/put.js"
import { repair } from "./commands/repair.js"
import { replicateCommand as replicate } from "./commands/replicate.js"
import { migrate } from "./commands/migrate.js"
import { rm } from "./commands/rm.js"
import { serve, signalWatchdog } from "./commands/serve.js"
import { stat } from "./commands/stat.js"
import { stats } from "./commands/stats.js"
import { upload } from "./commands/upload.js"
import { uploads } from "./commands/uploads.js"
import { verify } from "./commands/verify.js"
import { AlreadyReported, classify, ExitCode, fail } from "./exitCodes.js"
import * as Globals from "./globals.js"
import * as Help from "./help.js"
import * as Output from "./output.js"
import * as Stores from "./stores.js"

const version: string = (() => {
  try {
    return JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")).version
  } catch {
    return "unknown"
  }
})()

const cliConfig = CliConfig.make({ showBuiltIns: false })

const subcommands = [put, get, cat, stat, rm, ls, verify, metrics, migrate, upload, uploads, replicate, repair, gc, check, stats, serve] as const

/** What `graviton` with no command prints: a short map (each command's `--help` has the details). */
export const overview = `graviton ${version}: content-addressed blob storage

Usage: graviton [global options] <command> [arguments] [options]

Commands:
  put <file|->           store a file (- = standard input), print its key
  get <key> [-o file]    read a blob, verified; -o writes the file only once verified
  cat <key>              write a blob to standard output, verified
  stat <key>             size, location and creation time of a blob
  rm <key>               remove a blob (succeeds when it is not stored)
  ls                     list stored keys with their sizes
  verify [key]           re-hash stored blobs, report corrupted ones (exit 4)
  metrics                metrics in Prometheus text format
  migrate                apply the PostgreSQL migrations (GRAVITON_PG_URL)
  upload <file> [--resume ID] [--parallel N]
                         resumable upload, spans in parallel; prints its id first
  uploads ls|status ID|abort ID|gc
                         uploads in progress; gc removes expired ones
  replicate <key> --to <target>  |  replicate targets [rm NAME]
                         copy a blob to another store (embedded:<dir>|pg|s3), verified
  repair [key]           restore missing or corrupted blobs from their replicas
  gc [--dry-run] [--grace 24h]
                         reclaim leftovers of interrupted work and unreferenced blocks
  check [--read-data] [--repair]
                         check that records and objects agree; --repair fixes and rebuilds the index
  stats                  blobs, logical and stored bytes, dedup ratio, blocks, staging, uploads
  serve [--listen HOST:PORT]
                         HTTP gateway: blobs, tus uploads, /metrics (docs/gateway.md)

Global options (before or after the command):
  --store <name>         which store: ${Stores.names().join(", ")}
                         (default: embedded, local files + LevelDB)
  --home <dir>           embedded store directory (default: GRAVITON_HOME or ./.graviton)
  --layout monolithic|chunked   layout of new blobs (default: GRAVITON_LAYOUT or monolithic)
  --json                 machine-readable output

Exit codes: 0 ok, 1 internal error (a bug), 2 bad input or usage, 3 not found, 4 corrupted,
            5 storage failure, 130 interrupted.
More: graviton <command> --help, and docs/cli.md.
`

/** The whole command tree; `graviton` alone prints the overview. */
export const command = Globals.root.pipe(
  Command.withHandler(() => Effect.sync(() => process.stdout.write(overview))),
  Command.withSubcommands(subcommands),
  Command.withDescription("Content-addressed blob storage: put bytes in, get a key; get verified bytes back by key")
)

const cli = Command.run(command, { name: "graviton", version, executable: "graviton" })

const tree = Help.tree(command.descriptor)

/** Groups that do nothing by themselves: named alone they print their help, and an unknown word under them is an error. */
const groupsWithoutHandler: ReadonlySet<string> = new Set(["graviton uploads"])

/**
 * Parses the command line as `cli` will, so that a usage error is reported
 * here (`graviton: …`, exit 2, no ANSI) instead of by @effect/cli's printer.
 */
const checkUsage = (args: ReadonlyArray<string>, path: ReadonlyArray<string>) =>
  Descriptor.parse(command.descriptor, ["graviton", ...args], cliConfig).pipe(
    Effect.flatMap((directive) =>
      directive._tag === "UserDefined" && directive.leftover.length > 0
        ? Effect.fail(fail(ExitCode.Usage, `unexpected argument ${JSON.stringify(directive.leftover[0])} (see ${path.join(" ")} --help)`))
        : Effect.void
    ),
    Effect.catchIf(ValidationError.isValidationError, (e) => {
      const text = Help.docText(e.error)
      const said = text.length === 0 ? "invalid command line" : text.charAt(0).toLowerCase() + text.slice(1)
      return Effect.fail(fail(ExitCode.Usage, `${said} (see ${path.join(" ")} --help)`))
    })
  )

const print = (text: string) => Effect.sync(() => void process.stdout.write(text))

/** What the command line asks for: help, the version, a usage error, or a command to run. */
const dispatch = (argv: ReadonlyArray<string>) => {
  const args = argv.slice(2)
  const route = Help.route(tree, args, cliConfig, groupsWithoutHandler)
  switch (route._tag) {
    case "Version":
      return print(`${version}\n`)
    case "Help":
      return print(
        route.path.length === 1
          ? overview
          : Help.render(route.entry, route.path, cliConfig, Output.colours() ? Help.bold : Help.plain)
      )
    case "UnknownCommand":
      return Effect.fail(fail(ExitCode.Usage, Help.unknownCommand(route)))
    case "Run":
      return Effect.zipRight(checkUsage(args, route.path), Effect.suspend(() => cli(argv)))
  }
}

/** Runs the CLI on `argv`; every expected failure becomes `AlreadyReported(code)` after printing its message. */
export const program = (argv: ReadonlyArray<string>): Effect.Effect<void, AlreadyReported> =>
  Effect.suspend(() => dispatch(argv)).pipe(
    Effect.catchAll((error) => {
      const classified = classify(error)
      // Unknown error types are bugs: rethrown as defects so their trace is printed.
      if (classified === undefined) return Effect.die(error)
      return Effect.zipRight(
        classified.message === undefined
          ? Effect.void
          : Effect.sync(() => {
            Output.clearStatus()
            process.stderr.write(`graviton: ${Output.escapeControls(classified.message!)}\n`)
          }),
        Effect.fail(new AlreadyReported({ code: classified.code }))
      )
    }),
    Effect.provide(Layer.merge(NodeContext.layer, CliConfig.layer(cliConfig)))
  )

/** Exit code of a finished run; prints the trace of a defect. */
export const exitCode = (exit: Exit.Exit<void, AlreadyReported>): number => {
  if (Exit.isSuccess(exit)) return ExitCode.Ok
  if (Cause.isInterruptedOnly(exit.cause)) return ExitCode.Interrupted
  const failure = Cause.failureOption(exit.cause)
  if (Option.isSome(failure)) return failure.value.code
  process.stderr.write(`graviton: internal error (a bug; please report it):\n${Cause.pretty(exit.cause)}\n`)
  return ExitCode.Internal
}

// A step that cannot be interrupted (a store being opened, a filesystem call that never returns) must not keep
// a signalled command alive: a second later it dies of the signal itself (issue #16). Not process.exit: it waits
// for the thread pool, where such a call is stuck; with no listener left, the signal's default action ends it.
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () =>
    setTimeout(() => {
      process.stderr.write(`graviton: still busy after ${signal}; stopping now\n`)
      process.removeAllListeners(signal)
      process.kill(process.pid, signal)
    }, signalWatchdog.delayMs).unref())
}

// A closed pipe on stdout (`graviton cat KEY | head`) ends the command quietly.
process.stdout.on("error", (error: NodeJS.ErrnoException) => {
  if (error.code === "EPIPE") process.exit(ExitCode.Ok)
  throw error
})

NodeRuntime.runMain(program(process.argv), {
  disableErrorReporting: true,
  teardown: (exit, onExit) => onExit(exitCode(exit as Exit.Exit<void, AlreadyReported>))
})
