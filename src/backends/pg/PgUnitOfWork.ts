/**
 * The UnitOfWork port over the SqlClient of the context: `atomically` runs
 * its effect in one database transaction, so the writes that PostgreSQL
 * ports make inside it commit together or not at all (nested units become
 * savepoints). CasBlobStore wraps its claim-move-publish step in it.
 */
import { SqlClient } from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { UnitOfWork } from "../../ports/UnitOfWork.js"
import { transaction } from "./internal/sql.js"
import * as TracingPorts from "../../kit/TracingPorts.js"
import { metadataError } from "./PgErrors.js"

/** The unit of work over the SqlClient in context. */
export const make: Effect.Effect<UnitOfWork["Type"], never, SqlClient> = Effect.map(SqlClient, (sql) =>
  TracingPorts.unitOfWork("pg", {
    atomically: <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      transaction(sql)(effect).pipe(
        Effect.catchIf((e): e is SqlError => e instanceof SqlError, (e) => Effect.fail(metadataError("commit")(e)))
      )
  }))

/** UnitOfWork over the SqlClient in context. */
export const layer: Layer.Layer<UnitOfWork, never, SqlClient> = Layer.effect(UnitOfWork, make)
