/**
 * Options every command accepts. They are declared on the root command and
 * again on each subcommand, so both `graviton --json ls` and
 * `graviton ls --json` work; a value given after the subcommand wins.
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { statSync } from "node:fs"
import * as path from "node:path"
import { type CliFailure, describeConfigError, ExitCode, fail } from "./exitCodes.js"
import { escapeControls } from "./output.js"
import * as Stores from "./stores.js"

const storeNames = Stores.names() as unknown as readonly [string, ...Array<string>]

/** The options shared by every command, each optional so that either position may set it. */
export const options = {
  store: Options.choice("store", storeNames).pipe(
    Options.withDescription(`Storage backend (${Stores.names().join(", ")}); default: embedded, or GRAVITON_STORE`),
    Options.optional
  ),
  home: Options.text("home").pipe(
    Options.withPseudoName("dir"),
    Options.withDescription("Directory of the embedded store; default: GRAVITON_HOME or ./.graviton"),
    Options.optional
  ),
  layout: Options.choice("layout", ["monolithic", "chunked"] as const).pipe(
    Options.withDescription("Layout of new blobs: one object per blob, or content-defined blocks; default: GRAVITON_LAYOUT or monolithic"),
    Options.optional
  ),
  json: Options.boolean("json").pipe(Options.withDescription("Print machine-readable JSON on stdout"))
}

type Parsed = {
  readonly store: Option.Option<string>
  readonly home: Option.Option<string>
  readonly layout: Option.Option<"monolithic" | "chunked">
  readonly json: boolean
}

/** The root `graviton` command: only global options; the work is in its subcommands. */
export const root = Command.make("graviton", options)

/** Global settings after merging both positions, the environment and defaults. */
export interface Globals {
  readonly store: string
  readonly json: boolean
  readonly settings: Stores.StoreSettings
}

const env = Config.all({
  store: Config.string("GRAVITON_STORE").pipe(Config.withDefault("embedded")),
  home: Config.string("GRAVITON_HOME").pipe(Config.withDefault("./.graviton")),
  layout: Config.literal("monolithic", "chunked")("GRAVITON_LAYOUT").pipe(Config.withDefault("monolithic" as const))
})

/** Stores that keep files under the home (embedded; LevelDB sidecars of s3 and level-s3). */
/** Stores whose metadata lives in the home (LevelDB), which one process holds at a time. */
export const HOME_STORES: ReadonlySet<string> = new Set(["embedded", "s3", "level-s3"])

/**
 * Fails when the home cannot be a directory because a parent of it (or the
 * home itself) is something else: said in the user's words, before a store
 * reports it as a failed mkdir deep inside.
 */
const checkHome = (home: string): Effect.Effect<void, CliFailure> =>
  Effect.suspend(() => {
    for (let at = path.resolve(home);; at = path.dirname(at)) {
      let stat: ReturnType<typeof statSync>
      try {
        stat = statSync(at, { throwIfNoEntry: false })
      } catch {
        // ENOTDIR (a parent is a file), EACCES ...: the parent walk finds the file, the store reports the rest.
        stat = undefined
      }
      if (stat !== undefined) {
        return stat.isDirectory() ? Effect.void : fail(
          ExitCode.Usage,
          `the home ${escapeControls(home)} cannot be used: ${escapeControls(at)} is not a directory`
        )
      }
      if (path.dirname(at) === at) return Effect.void
    }
  })

/** Merges the subcommand's copy of the global options with the root's, then the environment. */
export const resolve = (local: Parsed): Effect.Effect<Globals, CliFailure, Command.Command.Context<"graviton">> =>
  Effect.gen(function*() {
    const top = yield* root
    const fromEnv = yield* env.pipe(
      Effect.mapError((e) => fail(ExitCode.Usage, `invalid configuration: ${describeConfigError(e)}`))
    )
    const pick = <A>(a: Option.Option<A>, b: Option.Option<A>, fallback: A): A =>
      Option.getOrElse(Option.orElse(a, () => b), () => fallback)
    const store = pick(local.store, top.store, fromEnv.store)
    if (!Stores.names().includes(store)) {
      return yield* fail(ExitCode.Usage, `unknown store ${JSON.stringify(store)} (expected one of: ${Stores.names().join(", ")})`)
    }
    const home = pick(local.home, top.home, fromEnv.home)
    if (HOME_STORES.has(store)) yield* checkHome(home)
    return {
      store,
      json: local.json || top.json,
      settings: {
        home,
        layout: pick(local.layout, top.layout, fromEnv.layout)
      }
    }
  })
