/**
 * Runs a command body against the store chosen by the global options: builds
 * the store's layer (opening files and databases only for commands that need
 * them), scopes the body's resources, and folds the run's metrics into the
 * store's cumulative series on the way out, whatever the outcome.
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { ExitCode, fail } from "./exitCodes.js"
import type { Globals } from "./globals.js"
import * as MetricsState from "./metricsState.js"
import * as Stores from "./stores.js"
import type { Uploads } from "../uploads/Uploads.js"

/** Provides the selected store to `body`. */
export const withStore = <A, E>(
  globals: Globals,
  body: Effect.Effect<A, E, Stores.StoreServices | Scope.Scope>
): Effect.Effect<A, unknown> => {
  const entry = Stores.get(globals.store)
  if (entry === undefined) {
    return Effect.fail(fail(ExitCode.Usage, `unknown store ${JSON.stringify(globals.store)}`))
  }
  return Effect.scoped(body).pipe(
    Effect.ensuring(MetricsState.save),
    Effect.provide(entry.layer(globals.settings))
  )
}

/** Like `withStore`, with the store's resumable uploads (uploads/Uploads) too. */
export const withUploads = <A, E>(
  globals: Globals,
  body: Effect.Effect<A, E, Stores.StoreServices | Uploads | Scope.Scope>
): Effect.Effect<A, unknown> => {
  const entry = Stores.get(globals.store)
  if (entry === undefined) {
    return Effect.fail(fail(ExitCode.Usage, `unknown store ${JSON.stringify(globals.store)}`))
  }
  if (entry.uploads === undefined) {
    return Effect.fail(fail(ExitCode.Usage, `the ${globals.store} store does not support resumable uploads`))
  }
  return Effect.scoped(body).pipe(
    Effect.ensuring(MetricsState.save),
    Effect.provide(entry.uploads(globals.settings))
  )
}
