/**
 * The `pg` pool under a PgClient, as a service: PgLayers.client provides it
 * next to the client it built over it, and the stores use it (when present)
 * to run single statements directly (see query.ts). Here rather than in
 * PgLayers so that the stores can look it up without importing PgLayers.
 */
import * as Context from "effect/Context"
import type * as Pg from "pg"

/** The underlying `pg` pool, for tools and the raw-driver benchmark. */
export class PgPool extends Context.Tag("graviton/pg/PgPool")<PgPool, Pg.Pool>() {}
