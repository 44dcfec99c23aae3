/** The lifecycle suite on the PostgreSQL store (bytes and metadata in one database). */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as PgStore from "../../src/stores/PgStore.js"
import { freshDatabase, skipReason, usePostgres } from "../harness/postgres.js"
import { blocks, lifecycleSuite } from "./suite.js"

usePostgres()

lifecycleSuite({
  name: "PostgreSQL",
  skip: skipReason(),
  layer: () =>
    Layer.unwrapScoped(Effect.map(freshDatabase("lifecycle"), (db) =>
      PgStore.layerWithUploads({ url: Redacted.make(db.url), migrate: true, layout: blocks })))
})
