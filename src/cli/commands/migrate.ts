/**
 * `graviton migrate [--baseline N]`: applies the PostgreSQL migrations
 * (GRAVITON_PG_* settings); a no-op when up to date. They are recorded in
 * Flyway's `flyway_schema_history`, so Flyway may migrate the same schema
 * before or after (docs/backends/postgres.md).
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Globals from "../globals.js"
import * as Output from "../output.js"

const baseline = Options.integer("baseline").pipe(
  Options.withPseudoName("VERSION"),
  Options.withDescription(
    "First record VERSION as a Flyway baseline (the schema already holds everything up to it, but no history), then apply what follows"
  ),
  Options.optional
)

/** The `migrate` command. */
export const migrate = Command.make("migrate", { ...Globals.options, baseline }, (args) =>
  Effect.gen(function*() {
    const globals = yield* Globals.resolve(args)
    // Loaded only here, so no other command pays for the pg driver.
    const pg = yield* Effect.promise(() => import("../../stores/PgStore.js"))
    const applied = yield* Effect.flatMap(pg.config, (config) =>
      pg.migrate(config, { baseline: Option.getOrUndefined(args.baseline) }))
    const names = applied.map(([id, name]) => `V${id}__${name}`)
    if (globals.json) return yield* Output.json({ applied: names })
    yield* Output.note(names.length === 0 ? "database schema is up to date" : `applied ${names.join(", ")}`)
  })).pipe(Command.withDescription("Apply the PostgreSQL migrations (GRAVITON_PG_URL, GRAVITON_PG_SCHEMA)"))
