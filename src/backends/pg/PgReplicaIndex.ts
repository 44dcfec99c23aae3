/**
 * PgReplicaIndex: blob key -> set of locators, one `replicas` row per
 * (blob, locator), keyed by the canonical texts `<algo>:<hex>:<size>` and
 * `scheme://bucket/path`. `COLLATE "C"` returns each set in the UTF-8 byte
 * order of the locator text, as the port promises.
 *
 * Each change runs in one transaction holding a transaction-level advisory
 * lock on the blob key, so `update` (delete all, insert the new set) and a
 * concurrent `add` or `remove` of the same blob are serialized, and the set
 * each of them returns is the one it produced.
 */
import { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as BinaryKey from "../../core/BinaryKey.js"
import * as BlobLocator from "../../core/BlobLocator.js"
import { MetadataError, toPortError } from "../../core/Errors.js"
import * as KvKey from "../../core/KvKey.js"
import { ReplicaIndex } from "../../ports/ReplicaIndex.js"
import * as Instrument from "../../kit/Instrument.js"
import * as TracingPorts from "../../kit/TracingPorts.js"
import { retriers, transaction } from "./internal/sql.js"
import { BACKEND, metadataError } from "./PgErrors.js"
import * as PgMetrics from "./PgMetrics.js"

const PORT = "ReplicaIndex"

/** First key of the two-key advisory locks of replica sets ("GRr" + 2). */
export const LOCK_CLASS = 0x47527202

/** The canonical text of a key, re-validated (a BinaryKey built with `new` skips the parser). */
const keyText = (method: string, key: BinaryKey.BinaryKey): Either.Either<string, MetadataError> =>
  typeof key !== "object" || key === null
    ? Either.left(new MetadataError({ reason: "InvalidInput", backend: BACKEND, method, description: "the key is missing" }))
    : Either.mapLeft(
      Either.map(BinaryKey.make(key.algorithm, key.digest, key.size), BinaryKey.render),
      toPortError(MetadataError, BACKEND, method)
    )

const locatorText = (method: string, l: BlobLocator.BlobLocator): Either.Either<string, MetadataError> =>
  typeof l !== "object" || l === null
    ? Either.left(new MetadataError({ reason: "InvalidInput", backend: BACKEND, method, description: "the locator is missing" }))
    : Either.mapLeft(
      Either.map(BlobLocator.make(l.scheme, l.bucket, l.path), BlobLocator.render),
      toPortError(MetadataError, BACKEND, method)
    )

/** Parses stored locator texts; a row that does not parse means the table was written by something else. */
const toLocators = (method: string, key: string, rows: ReadonlyArray<{ readonly locator: string }>) =>
  Effect.forEach(rows, (r) =>
    Either.match(BlobLocator.parse(r.locator), {
      onLeft: (e) =>
        Effect.fail(
          new MetadataError({
            reason: "Corrupted",
            backend: BACKEND,
            method,
            description: `replica of ${key} is not a locator: ${e.message}`
          })
        ),
      onRight: Effect.succeed
    }))

/** Builds the index over the SqlClient of the context (a PgClient). */
export const make: Effect.Effect<ReplicaIndex["Type"], never, SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient
  const instrument = yield* Instrument.make(BACKEND, PORT)
  const retry = retriers(instrument)
  const metrics = yield* PgMetrics.make
  const inTransaction = transaction(sql)

  const q = (method: string) => <A, R>(effect: Effect.Effect<A, SqlError | MetadataError, R>) =>
    effect.pipe(
      Effect.tapError((e) => (e._tag === "MetadataError" ? Effect.void : metrics.failure(PORT, method, e))),
      Effect.mapError(metadataError(method))
    )

  const select = (key: string) =>
    sql<{ readonly locator: string }>`SELECT locator FROM replicas WHERE blob_key = ${key} ORDER BY locator`

  /** Runs `change` then reads the set back, in one transaction serialized per blob key. */
  const locked = <A>(method: string, key: string, change: Effect.Effect<A, SqlError>) =>
    inTransaction(
      sql`SELECT pg_advisory_xact_lock(${LOCK_CLASS}::integer, hashtext(${key}))`.pipe(
        Effect.zipRight(change),
        Effect.zipRight(select(key))
      )
    ).pipe(
      q(method),
      // Every change here is idempotent (set a set, add or remove one member): safe to repeat.
      retry(method),
      Effect.flatMap((rows) => toLocators(method, key, rows))
    )

  const replicas: ReplicaIndex["Type"]["replicas"] = (key) =>
    Effect.flatMap(keyText("replicas", key), (k) =>
      select(k).pipe(
        q("replicas"),
        retry("replicas"),
        Effect.flatMap((rows) => toLocators("replicas", k, rows))
      )).pipe(instrument.observe("replicas"))

  const update: ReplicaIndex["Type"]["update"] = (key, locators) =>
    Effect.gen(function*() {
      const k = yield* keyText("update", key)
      if (!Array.isArray(locators)) {
        return yield* new MetadataError({ reason: "InvalidInput", backend: BACKEND, method: "update", description: "locators must be an array" })
      }
      const texts = Array.from(new Set(yield* Effect.forEach(locators, (l) => locatorText("update", l)))).sort(KvKey.compare)
      yield* locked(
        "update",
        k,
        Effect.zipRight(
          sql`DELETE FROM replicas WHERE blob_key = ${k}`,
          texts.length === 0
            ? Effect.void
            : sql`INSERT INTO replicas (blob_key, locator) SELECT ${k}, unnest(${texts}::text[])`
        )
      )
    }).pipe(instrument.observe("update"))

  const add: ReplicaIndex["Type"]["add"] = (key, locator) =>
    Effect.gen(function*() {
      const k = yield* keyText("add", key)
      const l = yield* locatorText("add", locator)
      return yield* locked(
        "add",
        k,
        sql`INSERT INTO replicas (blob_key, locator) VALUES (${k}, ${l}) ON CONFLICT DO NOTHING`
      )
    }).pipe(instrument.observe("add"))

  const remove: ReplicaIndex["Type"]["remove"] = (key, locator) =>
    Effect.gen(function*() {
      const k = yield* keyText("remove", key)
      const l = yield* locatorText("remove", locator)
      return yield* locked("remove", k, sql`DELETE FROM replicas WHERE blob_key = ${k} AND locator = ${l}`)
    }).pipe(instrument.observe("remove"))

  // Keyset pages of whole sets, in the key's byte order (COLLATE "C"), over the primary key's index.
  const LIST_KEYS = 2000
  const list = Stream.paginateChunkEffect("", (after: string) =>
    sql<{ readonly blob_key: string; readonly locators: ReadonlyArray<string> }>`
      SELECT blob_key, array_agg(locator ORDER BY locator) AS locators FROM replicas
      WHERE blob_key > ${after} GROUP BY blob_key ORDER BY blob_key LIMIT ${LIST_KEYS}`.pipe(
      q("list"),
      retry("list"),
      Effect.map((rows) => [
        Chunk.unsafeFromArray(rows.map((r) => [r.blob_key, r.locators] as const)),
        rows.length === LIST_KEYS ? Option.some(rows[rows.length - 1]!.blob_key) : Option.none<string>()
      ] as const)
    )).pipe(instrument.observeStream("list"))

  return TracingPorts.replicaIndex(BACKEND, ReplicaIndex.of({ replicas, update, add, remove, list }))
})

/** The ReplicaIndex port on PostgreSQL. */
export const layer: Layer.Layer<ReplicaIndex, never, SqlClient> = Layer.effect(ReplicaIndex, make)
