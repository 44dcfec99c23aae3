/** `graviton migrate`: applies the PostgreSQL migrations (GRAVITON_PG_* settings); a no-op when up to date. */
import * as Command from "@effect/cli/Command"
import * as Effect from "effect/Effect"
import * as Globals from "../globals.js"
import * as Output from "../output.js"

/** The `migrate` command. */
export const migrate = Command.make("migrate", { ...Globals.options }, (args) =>
  Effect.gen(function*() {
    const globals = yield* Globals.resolve(args)
    // Loaded only here, so no other command pays for the pg driver.
    const pg = yield* Effect.promise(() => import("../../stores/PgStore.js"))
    const applied = yield* Effect.flatMap(pg.config, pg.migrate)
    const names = applied.map(([id, name]) => `V${id}__${name}`)
    if (globals.json) return yield* Output.json({ applied: names })
    yield* Output.note(names.length === 0 ? "database schema is up to date" : `applied ${names.join(", ")}`)
  })).pipe(Command.withDescription("Apply the PostgreSQL migrations (GRAVITON_PG_URL, GRAVITON_PG_SCHEMA)"))
