/**
 * PgMutableObjectStore / PgImmutableObjectStore: object content in
 * PostgreSQL, streamed both ways in constant memory.
 *
 * Storage scheme (migrations/V1__init.sql): an object row points at an
 * immutable *content*, whose bytes are fixed-size `bytea` chunk rows
 * (chunk `seq` holds bytes `[seq * chunk_size, (seq + 1) * chunk_size)`).
 * We chose chunked `bytea` rows over large objects because:
 * - they are ordinary rows: a put is visible exactly when its transaction
 *   commits, and a rolled-back or interrupted put leaves nothing, with no
 *   orphaned large objects for `vacuumlo` to find later;
 * - a ranged read computes which chunks hold the range and fetches only
 *   those, and only the bytes of the range (`substring` on uncompressed
 *   out-of-line storage reads just the TOAST slices it needs);
 * - they work over any connection, with the pool's ordinary statements,
 *   under row-level privileges, and logical replication carries them;
 * - large objects need their own privilege model (`lo_compat_privileges`)
 *   and their own cleanup, and `pg_largeobject` cannot be partitioned.
 * The cost is one row (plus ~512 TOAST rows) per MiB, which PostgreSQL
 * handles well, and a per-object chunk size fixed at write time.
 *
 * Contents are shared: `copy` points the destination at the source's
 * content (no byte moves at all, not even server-side), `move` renames the
 * row (in one transaction). A trigger counts references and deletes a content with its chunks
 * when its last object goes away, in the same transaction.
 *
 * A put holds one transaction (and so one pooled connection) from its first
 * full chunk to its last byte, at most `maxWriters` puts at a time (see
 * internal/writers.ts); inside a transaction the caller opened with
 * `SqlClient.withTransaction` it becomes a savepoint of that transaction.
 * Reads hold no connection between pages: each page is its own statement,
 * and a content deleted mid-read (its object replaced or removed) fails the
 * stream with Conflict instead of returning a mix.
 */
import { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Channel from "effect/Channel"
import * as Chunk from "effect/Chunk"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import type * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as Sink from "effect/Sink"
import * as Stream from "effect/Stream"
import * as BlobLocator from "../../core/BlobLocator.js"
import { type ErrorReason, type InvalidValue, ObjectStoreError, toPortError } from "../../core/Errors.js"
import type { ObjectStat, PutOptions } from "../../core/Models.js"
import { type ByteRange, resolveRange } from "../../core/RangeSet.js"
import { ObjectCopied, ObjectDeleted, ObjectWritten, UploadAborted } from "../../ports/BackendEvents.js"
import { ImmutableObjectStore, MutableObjectStore, type MutableObjectStoreShape, writeThroughPut } from "../../ports/ObjectStore.js"
import type { ObjectStoreCapabilities } from "../../ports/ObjectStoreCapabilities.js"
import * as Events from "../../kit/Events.js"
import * as Instrument from "../../kit/Instrument.js"
import * as Retry from "../../kit/Retry.js"
import * as TracingPorts from "../../kit/TracingPorts.js"
import { PgPool } from "./internal/pool.js"
import * as Query from "./internal/query.js"
import { bufferOf, likePrefix, num, retriers, transaction } from "./internal/sql.js"
import * as Writers from "./internal/writers.js"
import { BACKEND, objectStoreError, safeToRepeat, sqlState } from "./PgErrors.js"
import * as PgMetrics from "./PgMetrics.js"

const PORT = "ObjectStore"

/** Default chunk size: 1 MiB rows (a few hundred TOAST slices each). */
export const DEFAULT_CHUNK_SIZE = 1024 * 1024
export const MIN_CHUNK_SIZE = 1024
export const MAX_CHUNK_SIZE = 64 * 1024 * 1024

/** A ranged or whole read fetches about this many bytes per statement. */
const READ_PAGE_BYTES = 4 * 1024 * 1024
/** Objects per listing statement. */
const LIST_PAGE = 500

/** Options of the object store. */
export interface Options {
  /** Bytes per chunk row for new objects (default 1 MiB; 1 KiB .. 64 MiB). Existing objects keep theirs. */
  readonly chunkSize?: number | undefined
  /**
   * Streaming puts that may hold a connection at once (default: half the pool, at least 1); the
   * others wait for one of them to end, and the rest of the pool stays free for reads, small
   * writes and metadata, whatever the writers do.
   */
  readonly maxWriters?: number | undefined
}

interface ObjectRow {
  readonly content_id: string
  readonly content_type: string | null
  readonly metadata: Record<string, string> | null
  readonly last_modified: Date
  readonly size: string
}

interface ListRow extends ObjectRow {
  readonly path: string
}

const fail = (method: string, reason: ErrorReason, description: string) =>
  new ObjectStoreError({ reason, backend: BACKEND, method, description })

const invalid = (method: string) => (e: InvalidValue) => toPortError(ObjectStoreError, BACKEND, method)(e)

/** Re-checks a locator: one built with `new` skips the parser's rules. */
const validLocator = (method: string, l: BlobLocator.BlobLocator): Either.Either<BlobLocator.BlobLocator, ObjectStoreError> =>
  typeof l !== "object" || l === null
    ? Either.left(fail(method, "InvalidInput", "the locator is missing"))
    : Either.mapLeft(BlobLocator.make(l.scheme, l.bucket, l.path), invalid(method))

/** `validLocator` as an effect. */
const checkLocator = (method: string, l: BlobLocator.BlobLocator): Effect.Effect<BlobLocator.BlobLocator, ObjectStoreError> =>
  Either.match(validLocator(method, l), { onLeft: Effect.fail, onRight: Effect.succeed })

/** The problem with a put's options, if any. */
const optionsProblem = (options: PutOptions | undefined): ObjectStoreError | undefined => {
  if (options === undefined) return undefined
  if (options.size !== undefined && (!Number.isSafeInteger(options.size) || options.size < 0)) {
    return fail("put", "InvalidInput", `the declared size must be a non-negative integer, got ${options.size}`)
  }
  if (options.contentType !== undefined && typeof options.contentType !== "string") {
    return fail("put", "InvalidInput", "the content type must be a string")
  }
  if (options.contentType?.includes("\u0000")) {
    return fail("put", "InvalidInput", "the content type contains NUL")
  }
  for (const [k, v] of Object.entries(options.metadata ?? {})) {
    if (typeof v !== "string") return fail("put", "InvalidInput", `metadata ${JSON.stringify(k)} is not a string`)
    // jsonb cannot hold NUL characters.
    if (k.includes("\u0000") || v.includes("\u0000")) {
      return fail("put", "InvalidInput", `metadata ${JSON.stringify(k)} contains NUL`)
    }
  }
  return undefined
}

const INITIAL_BUFFER = 16 * 1024

/**
 * A buffer of at least `needed` bytes (doubling, at most the chunk size) holding the first `used` bytes of `old`;
 * a put that declared its size gets exactly that much the first time, when it fits in a chunk.
 */
const growTo = (chunkSize: number) => (old: Buffer | undefined, used: number, needed: number, declared?: number): Buffer => {
  let capacity = old === undefined && declared !== undefined && declared >= needed
    ? Math.min(chunkSize, declared)
    : Math.min(chunkSize, Math.max(INITIAL_BUFFER, old?.length ?? 0))
  while (capacity < needed) capacity = Math.min(chunkSize, capacity * 2)
  const next = Buffer.allocUnsafe(capacity)
  if (old !== undefined && used > 0) old.copy(next, 0, 0, used)
  return next
}

const etagOf = (contentId: string): string => `pg-${contentId}`

const toStat = (locator: BlobLocator.BlobLocator, row: ObjectRow): ObjectStat => ({
  locator,
  size: num(row.size),
  etag: Option.some(etagOf(row.content_id)),
  lastModified: Option.some(row.last_modified),
  contentType: Option.fromNullable(row.content_type),
  metadata: { ...row.metadata }
})

/**
 * The object row of a content named `content` in the WITH clause before it; parameters from $${first}.
 * Create-only: a plain insert, whose unique violation (AlreadyExists) undoes the whole statement.
 */
const upsertObject = (first: number, createOnly = false) =>
  `INSERT INTO objects (scheme, bucket, path, content_id, content_type, metadata, last_modified)
   SELECT $${first}, $${first + 1}, $${first + 2}, id, $${first + 3}, $${first + 4}::jsonb, clock_timestamp()
   FROM content
   ${
    createOnly ? "" : `ON CONFLICT (scheme, bucket, path) DO UPDATE SET
     content_id = EXCLUDED.content_id, content_type = EXCLUDED.content_type,
     metadata = EXCLUDED.metadata, last_modified = EXCLUDED.last_modified`
  }
   RETURNING content_id::text AS content_id, last_modified`

/** A whole object that fits in one chunk: content ($1 size, $2 chunk size), its chunk ($3) and the object row. */
const putSmall = (createOnly: boolean) => `
  WITH content AS (
    INSERT INTO object_contents (id, size, chunk_size) VALUES (nextval('object_content_ids'), $1, $2) RETURNING id
  ), chunk AS (
    INSERT INTO object_chunks (content_id, seq, data) SELECT id, 0, $3 FROM content WHERE $1::bigint > 0
  )
  ${upsertObject(4, createOnly)}`
const PUT_SMALL = putSmall(false)
const PUT_SMALL_NEW = putSmall(true)

/** The content ($1 id, $2 size, $3 chunk size) of a chunked put, whose chunks are in, and the object row. */
const putFinish = (createOnly: boolean) => `
  WITH content AS (
    INSERT INTO object_contents (id, size, chunk_size) VALUES ($1::bigint, $2, $3) RETURNING id
  )
  ${upsertObject(4, createOnly)}`
const PUT_FINISH = putFinish(false)
const PUT_FINISH_NEW = putFinish(true)

const NEXT_CONTENT_ID = "SELECT nextval('object_content_ids')::text AS id"
const INSERT_CHUNK = "INSERT INTO object_chunks (content_id, seq, data) VALUES ($1::bigint, $2, $3)"

/** The object at ($1 scheme, $2 bucket, $3 path) with its content's size and chunk size. */
const SELECT_OBJECT = `
  SELECT o.content_id::text AS content_id, o.content_type, o.metadata, o.last_modified,
         c.size::text AS size, c.chunk_size
  FROM objects o JOIN object_contents c ON c.id = o.content_id
  WHERE o.scheme = $1 AND o.bucket = $2 AND o.path = $3`

/** Bytes [$2, $3) of content $1 (chunk size $4) in chunks $5 .. $6; only the bytes of the range leave the server. */
const READ_CHUNKS = `
  SELECT seq, substring(data
    FROM (greatest($2::bigint - seq::bigint * $4::bigint, 0) + 1)::integer
    FOR (least($3::bigint - seq::bigint * $4::bigint, $4::bigint)
         - greatest($2::bigint - seq::bigint * $4::bigint, 0))::integer) AS data
  FROM object_chunks
  WHERE content_id = $1::bigint AND seq >= $5 AND seq <= $6
  ORDER BY seq`

const DELETE_OBJECT = "DELETE FROM objects WHERE scheme = $1 AND bucket = $2 AND path = $3"

/**
 * Rows, not files: move renames the row, copy points at the same content, a
 * create-only put is a plain INSERT. Puts are one transaction, not parts.
 */
export const capabilities: ObjectStoreCapabilities = {
  nativeMove: true,
  nativeCopy: true,
  multipart: false,
  conditionalWrite: true,
  rangedRead: true,
  contentType: true,
  metadata: true,
  etag: true,
  lastModified: true,
  encryption: "none",
  fileAndPrefix: true,
  maxObjectSize: undefined
}

/** Builds the object store over the SqlClient of the context (a PgClient). */
export const make = (options: Options = {}): Effect.Effect<MutableObjectStoreShape, ObjectStoreError, SqlClient> =>
  Effect.gen(function*() {
    const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE
    if (!Number.isSafeInteger(chunkSize) || chunkSize < MIN_CHUNK_SIZE || chunkSize > MAX_CHUNK_SIZE) {
      return yield* fail("make", "InvalidInput", `chunkSize must be an integer in [${MIN_CHUNK_SIZE}, ${MAX_CHUNK_SIZE}]`)
    }
    const sql = yield* SqlClient
    // Single statements skip @effect/sql's per-statement work; see query.ts.
    const pool = yield* Effect.serviceOption(PgPool)
    const query = Query.make(sql, pool)
    const maxWriters = options.maxWriters ?? Writers.defaultPermits(Option.match(pool, { onNone: () => 10, onSome: (p) => p.options.max ?? 10 }))
    if (!Number.isSafeInteger(maxWriters) || maxWriters < 1) {
      return yield* fail("make", "InvalidInput", `maxWriters must be a positive integer, got ${maxWriters}`)
    }
    const writers = yield* Writers.make(sql, pool, query, maxWriters)
    const instrument = yield* Instrument.make(BACKEND, PORT)
    const retry = retriers(instrument)
    const metrics = yield* PgMetrics.make
    const inTransaction = transaction(sql)
    const readPageChunks = Math.max(1, Math.floor(READ_PAGE_BYTES / chunkSize))
    const grow = growTo(chunkSize)

    /** Maps a statement's failure, counting it by SQLSTATE class. */
    const q = (method: string) => <A, R>(effect: Effect.Effect<A, SqlError | ObjectStoreError, R>) =>
      effect.pipe(
        Effect.tapError((e) => (e._tag === "ObjectStoreError" ? Effect.void : metrics.failure(PORT, method, e))),
        Effect.mapError(objectStoreError(method))
      )

    /** Retries of calls that are not idempotent (move): only when the failed attempt surely had no effect. */
    const repeatable = Retry.defaultSchedule.pipe(Schedule.whileInput((e) => safeToRepeat(e as ObjectStoreError)))

    interface Found extends ObjectRow {
      readonly chunk_size: number
    }

    const selectObject = (l: BlobLocator.BlobLocator) => query<Found>(SELECT_OBJECT, [l.scheme, l.bucket, l.path])

    const lookup = (method: string, l: BlobLocator.BlobLocator) =>
      selectObject(l).pipe(
        q(method),
        Effect.flatMap((rows) =>
          rows.length === 0
            ? Effect.fail(fail(method, "NotFound", `no object at ${BlobLocator.render(l)}`))
            : Effect.succeed(rows[0]!)
        )
      )

    const head: MutableObjectStoreShape["head"] = (locator) =>
      checkLocator("head", locator).pipe(
        Effect.flatMap((l) =>
          selectObject(l).pipe(
            q("head"),
            Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), (row) => toStat(l, row))),
            retry("head")
          )
        ),
        instrument.observe("head")
      )

    /** Bytes [start, end) of a content, page by page; each page is one statement over the chunks it needs. */
    const readContent = (contentId: string, contentChunkSize: number, start: number, end: number) => {
      if (start >= end) return Stream.empty
      const first = Math.floor(start / contentChunkSize)
      const last = Math.floor((end - 1) / contentChunkSize)
      const page = (from: number) => {
        const to = Math.min(last, from + readPageChunks - 1)
        return query<{ readonly seq: number; readonly data: Buffer }>(
          READ_CHUNKS,
          [contentId, start, end, contentChunkSize, from, to]
        ).pipe(
          q("get"),
          retry("get"),
          Effect.flatMap((rows) => {
            if (rows.length !== to - from + 1 || rows.some((r, i) => r.seq !== from + i)) {
              return Effect.fail(fail("get", "Conflict", "the object was replaced or deleted while it was being read"))
            }
            const bytes = rows.reduce((n, r) => n + r.data.length, 0)
            return Effect.as(
              metrics.bytesRead(bytes),
              [Chunk.unsafeFromArray(rows.map((r): Uint8Array => r.data)), to < last ? Option.some(to + 1) : Option.none()] as const
            )
          })
        )
      }
      return Stream.paginateChunkEffect(first, page)
    }

    const get: MutableObjectStoreShape["get"] = (locator, range?: ByteRange) =>
      Stream.unwrap(
        checkLocator("get", locator).pipe(
          Effect.flatMap((l) => retry("get")(lookup("get", l))),
          Effect.flatMap((row) =>
            Either.match(resolveRange(range, num(row.size)), {
              onLeft: (e) => Effect.fail(invalid("get")(e)),
              onRight: ([start, end]) => Effect.succeed(readContent(row.content_id, row.chunk_size, start, end))
            })
          )
        )
      ).pipe(instrument.observeStream("get"))

    const list: MutableObjectStoreShape["list"] = (prefix) =>
      Either.match(
        typeof prefix !== "object" || prefix === null
          ? Either.left(fail("list", "InvalidInput", "the prefix is missing"))
          : Either.mapLeft(BlobLocator.makePrefix(prefix.scheme, prefix.bucket, prefix.path), invalid("list")),
        {
          onLeft: (e) => Stream.fail(e),
          onRight: (p) => {
            const pattern = likePrefix(p.path)
            // Keyset pagination: each page starts after the last path of the previous one.
            const page = (after: string) =>
              sql<ListRow>`
                SELECT o.path, o.content_id::text AS content_id, o.content_type, o.metadata, o.last_modified,
                       c.size::text AS size
                FROM objects o JOIN object_contents c ON c.id = o.content_id
                WHERE o.scheme = ${p.scheme} AND o.bucket = ${p.bucket}
                  AND o.path LIKE ${pattern} ESCAPE '\\' AND o.path > ${after}
                ORDER BY o.path
                LIMIT ${LIST_PAGE}`.pipe(
                q("list"),
                retry("list"),
                Effect.map((rows) =>
                  [
                    Chunk.unsafeFromArray(rows.map((r) =>
                      toStat(new BlobLocator.BlobLocator({ scheme: p.scheme, bucket: p.bucket, path: r.path }), r)
                    )),
                    rows.length === LIST_PAGE ? Option.some(rows[rows.length - 1]!.path) : Option.none()
                  ] as const
                )
              )
            return Stream.paginateChunkEffect("", page).pipe(instrument.observeStream("list"))
          }
        }
      )

    /** Parameters of `upsertObject`. */
    const objectParams = (l: BlobLocator.BlobLocator, putOptions: PutOptions | undefined) =>
      [l.scheme, l.bucket, l.path, putOptions?.contentType ?? null, JSON.stringify(putOptions?.metadata ?? {})] as const

    interface Written {
      readonly content_id: string
      readonly last_modified: Date
    }

    /** Counts a completed write, announces it and describes the object. */
    const recordWrite = (
      l: BlobLocator.BlobLocator,
      putOptions: PutOptions | undefined,
      size: number,
      row: Written
    ): Effect.Effect<ObjectStat> =>
      metrics.bytesWritten(size).pipe(
        Effect.zipRight(Events.now),
        Effect.flatMap((at) =>
          instrument.publish(new ObjectWritten({ backend: BACKEND, at, locator: BlobLocator.render(l), size }))
        ),
        Effect.as(toStat(l, {
          content_id: row.content_id,
          content_type: putOptions?.contentType ?? null,
          metadata: putOptions?.metadata ?? {},
          last_modified: row.last_modified,
          size: String(size)
        }))
      )

    // A put is a hand-written channel, not Sink combinators over an effect: a 1 KiB put is one
    // statement, and unwrap/forEachChunk/mapEffect around it cost more than the statement itself.
    const put: MutableObjectStoreShape["put"] = (locator, putOptions) =>
      Sink.suspend(() => {
        const checked = validLocator("put", locator)
        if (Either.isLeft(checked)) return Sink.fail(checked.left)
        const problem = optionsProblem(putOptions)
        if (problem !== undefined) return Sink.fail(problem)
        const l = checked.right
        const declared = putOptions?.size
        // The transaction opens with the first full chunk: an object that fits in one chunk is
        // written by a single statement at the end, which is atomic by itself.
        let tx: Writers.PutTransaction | undefined
        // Holds the transaction's connection; closed (rolling back unless committed) when the sink ends.
        let scope: Scope.CloseableScope | undefined
        let id = ""
        let size = 0
        let seq = 0
        let committed = false
        // One reusable chunk buffer: memory stays at one chunk whatever the object's size. It starts
        // small (or at the declared size) and doubles up to the chunk size.
        let buffer: Buffer | undefined
        let used = 0
        const end = (exit: Exit.Exit<ObjectStat, ObjectStoreError>): Effect.Effect<void> =>
          Effect.suspend(() => {
            const release = scope === undefined ? Effect.void : Scope.close(scope, exit)
            scope = undefined
            return committed || (tx === undefined && size === 0)
              ? release
              : Effect.zipRight(
                release,
                Effect.flatMap(Events.now, (at) =>
                  instrument.publish(
                    new UploadAborted({ backend: BACKEND, at, locator: BlobLocator.render(l), why: "the put did not complete" })
                  ))
              )
          })

        const begin = Effect.gen(function*() {
          const s = yield* Scope.make()
          scope = s
          // Waits here (not in the pool's queue, which has a timeout) while `maxWriters` puts hold connections.
          const permit = yield* Scope.extend(writers.permit, s)
          // Nothing is written before the content id is taken: a failed attempt (no connection, the
          // server restarting) is retried on a fresh connection, its own scope closed first.
          const attempt = Effect.flatMap(Scope.fork(s, ExecutionStrategy.sequential), (inner) =>
            Scope.extend(writers.open(permit), inner).pipe(
              Effect.flatMap((t) => Effect.map(t.run<{ readonly id: string }>(NEXT_CONTENT_ID, []), (ids) => [t, ids[0]!.id] as const)),
              q("put"),
              Effect.onExit((exit) => (exit._tag === "Failure" ? Scope.close(inner, exit) : Effect.void))
            ))
          const [opened, contentId] = yield* retry("put")(attempt)
          id = contentId
          tx = opened
          return opened
        })

        const insert = (data: Buffer) =>
          Effect.gen(function*() {
            const t = tx ?? (yield* begin)
            yield* t.run(INSERT_CHUNK, [id, seq, data]).pipe(q("put"))
            seq++
          })

        /**
         * Takes `bytes` from `offset` on: copies synchronously into the chunk buffer and
         * only becomes an effect when a full chunk must be written first (small objects never do).
         */
        const write = (bytes: Uint8Array, offset: number): Effect.Effect<void, ObjectStoreError> => {
          while (offset < bytes.length) {
            if (used === 0 && bytes.length - offset >= chunkSize) {
              // A whole chunk inside the input: sent from the caller's array, no copy.
              const next = offset + chunkSize
              return Effect.zipRight(insert(bufferOf(bytes.subarray(offset, next))), Effect.suspend(() => write(bytes, next)))
            }
            const n = Math.min(chunkSize - used, bytes.length - offset)
            if (buffer === undefined || buffer.length < used + n) buffer = grow(buffer, used, used + n, declared)
            buffer.set(bytes.subarray(offset, offset + n), used)
            used += n
            offset += n
            if (used === chunkSize) {
              const next = offset
              const full = buffer
              // Reused afterwards: safe, the statement has completed, so pg has serialized the bytes.
              return Effect.zipRight(
                insert(full),
                Effect.suspend(() => {
                  used = 0
                  return write(bytes, next)
                })
              )
            }
          }
          return Effect.void
        }

        /** Takes a chunk of input; `Effect.void` (a singleton) when it only went into the buffer. */
        const writeAll = (items: ReadonlyArray<Uint8Array>, i: number): Effect.Effect<void, ObjectStoreError> => {
          for (; i < items.length; i++) {
            const bytes = items[i]!
            size += bytes.length
            const pending = write(bytes, 0)
            if (pending !== Effect.void) {
              const rest = i + 1
              return Effect.zipRight(pending, Effect.suspend(() => writeAll(items, rest)))
            }
          }
          return Effect.void
        }

        const written = (row: Written): Effect.Effect<ObjectStat> => {
          used = 0
          committed = true
          return recordWrite(l, putOptions, size, row)
        }

        const finish = Effect.suspend((): Effect.Effect<ObjectStat, ObjectStoreError> => {
          if (declared !== undefined && declared !== size) {
            return Effect.fail(fail("put", "InvalidInput", `declared ${declared} bytes but the stream had ${size}`))
          }
          const tail = buffer === undefined ? Buffer.alloc(0) : buffer.subarray(0, used)
          if (tx === undefined) {
            // Small object: content, its one chunk and the object row in one statement.
            return query<Written>(putOptions?.ifAbsent === true ? PUT_SMALL_NEW : PUT_SMALL, [size, chunkSize, tail, ...objectParams(l, putOptions)]).pipe(
              q("put"),
              // Retried only when the statement surely had no effect (no connection, or the server refused it).
              retry("put", repeatable),
              Effect.flatMap((rows) => written(rows[0]!))
            )
          }
          const t = tx
          return Effect.gen(function*() {
            if (used > 0) yield* insert(tail)
            const finishing = putOptions?.ifAbsent === true ? PUT_FINISH_NEW : PUT_FINISH
            const rows = yield* t.run<Written>(finishing, [id, size, chunkSize, ...objectParams(l, putOptions)]).pipe(q("put"))
            yield* q("put")(t.commit)
            return yield* written(rows[0]!)
          })
        })

        const loop: Channel.Channel<Chunk.Chunk<never>, Chunk.Chunk<Uint8Array>, ObjectStoreError, never, ObjectStat, unknown> = Channel
          .readWithCause({
            onInput: (chunk: Chunk.Chunk<Uint8Array>) => {
              const pending = writeAll(Chunk.toReadonlyArray(chunk), 0)
              return pending === Effect.void ? loop : Channel.zipRight(Channel.fromEffect(pending), loop)
            },
            onFailure: Channel.failCause,
            onDone: () => Channel.fromEffect(finish)
          })
        return Sink.fromChannel(Channel.ensuringWith(loop, end))
      }).pipe(instrument.observeSink("put"))

    // Bytes that fit in one chunk are one statement (PUT_SMALL), with no stream or transaction around it.
    const writeLarge = writeThroughPut(put)
    const write: MutableObjectStoreShape["write"] = (locator, bytes, putOptions) =>
      bytes.length > chunkSize ? writeLarge(locator, bytes, putOptions) : Effect.suspend(() => {
        const checked = validLocator("put", locator)
        if (Either.isLeft(checked)) return Effect.fail(checked.left)
        const problem = optionsProblem(putOptions)
        if (problem !== undefined) return Effect.fail(problem)
        if (putOptions?.size !== undefined && putOptions.size !== bytes.length) {
          return Effect.fail(fail("put", "InvalidInput", `declared ${putOptions.size} bytes but got ${bytes.length}`))
        }
        const l = checked.right
        const statement = putOptions?.ifAbsent === true ? PUT_SMALL_NEW : PUT_SMALL
        return query<Written>(statement, [bytes.length, chunkSize, bufferOf(bytes), ...objectParams(l, putOptions)]).pipe(
          q("put"),
          retry("put", repeatable),
          Effect.flatMap((rows) => recordWrite(l, putOptions, bytes.length, rows[0]!))
        )
      }).pipe(instrument.observe("write"))

    const del: MutableObjectStoreShape["delete"] = (locator) =>
      checkLocator("delete", locator).pipe(
        Effect.flatMap((l) =>
          query(DELETE_OBJECT, [l.scheme, l.bucket, l.path]).pipe(
            q("delete"),
            retry("delete"),
            Effect.zipRight(Events.now),
            Effect.flatMap((at) =>
              instrument.publish(new ObjectDeleted({ backend: BACKEND, at, locator: BlobLocator.render(l) }))
            )
          )
        ),
        instrument.observe("delete")
      )

    const copy: MutableObjectStoreShape["copy"] = (source, destination) =>
      Effect.gen(function*() {
        const from = yield* checkLocator("copy", source)
        const to = yield* checkLocator("copy", destination)
        // One statement: the destination points at the source's content (the trigger counts the reference).
        const rows = yield* sql<ObjectRow>`
          WITH src AS (
            SELECT content_id, content_type, metadata FROM objects
            WHERE scheme = ${from.scheme} AND bucket = ${from.bucket} AND path = ${from.path}
          ), written AS (
            INSERT INTO objects (scheme, bucket, path, content_id, content_type, metadata, last_modified)
            SELECT ${to.scheme}, ${to.bucket}, ${to.path}, content_id, content_type, metadata, clock_timestamp() FROM src
            ON CONFLICT (scheme, bucket, path) DO UPDATE SET
              content_id = EXCLUDED.content_id, content_type = EXCLUDED.content_type,
              metadata = EXCLUDED.metadata, last_modified = EXCLUDED.last_modified
            RETURNING content_id, content_type, metadata, last_modified
          )
          SELECT w.content_id::text AS content_id, w.content_type, w.metadata, w.last_modified, c.size::text AS size
          FROM written w JOIN object_contents c ON c.id = w.content_id`.pipe(
          // The source's content was deleted between reading and referencing it: the source is gone.
          Effect.catchIf(
            (e) => sqlState(e) === "23503",
            () => Effect.fail(fail("copy", "NotFound", `no object at ${BlobLocator.render(from)}`))
          ),
          q("copy"),
          retry("copy")
        )
        if (rows.length === 0) return yield* fail("copy", "NotFound", `no object at ${BlobLocator.render(from)}`)
        const at = yield* Events.now
        yield* instrument.publish(
          new ObjectCopied({
            backend: BACKEND,
            at,
            source: BlobLocator.render(from),
            destination: BlobLocator.render(to),
            moved: false
          })
        )
        return toStat(to, rows[0]!)
      }).pipe(instrument.observe("copy"))

    const move: MutableObjectStoreShape["move"] = (source, destination) =>
      Effect.gen(function*() {
        const from = yield* checkLocator("move", source)
        const to = yield* checkLocator("move", destination)
        const row = yield* inTransaction(Effect.gen(function*() {
          const found = yield* sql<ObjectRow>`
            SELECT o.content_id::text AS content_id, o.content_type, o.metadata, o.last_modified, c.size::text AS size
            FROM objects o JOIN object_contents c ON c.id = o.content_id
            WHERE o.scheme = ${from.scheme} AND o.bucket = ${from.bucket} AND o.path = ${from.path}
            FOR UPDATE OF o`
          if (found.length === 0) return yield* fail("move", "NotFound", `no object at ${BlobLocator.render(from)}`)
          if (BlobLocator.render(from) !== BlobLocator.render(to)) {
            // Reference the content from the destination first, then drop the source: the content's
            // count goes 1 -> 2 -> 1 and is never collected in between. An upsert, so a destination
            // being written by another transaction is waited for and then replaced, not a conflict.
            yield* sql`
              INSERT INTO objects (scheme, bucket, path, content_id, content_type, metadata, last_modified)
              SELECT ${to.scheme}, ${to.bucket}, ${to.path}, content_id, content_type, metadata, last_modified
              FROM objects WHERE scheme = ${from.scheme} AND bucket = ${from.bucket} AND path = ${from.path}
              ON CONFLICT (scheme, bucket, path) DO UPDATE SET
                content_id = EXCLUDED.content_id, content_type = EXCLUDED.content_type,
                metadata = EXCLUDED.metadata, last_modified = EXCLUDED.last_modified`
            yield* sql`DELETE FROM objects WHERE scheme = ${from.scheme} AND bucket = ${from.bucket} AND path = ${from.path}`
          }
          return found[0]!
        })).pipe(q("move"), retry("move", repeatable))
        const at = yield* Events.now
        const size = num(row.size)
        yield* instrument.publish(new ObjectWritten({ backend: BACKEND, at, locator: BlobLocator.render(to), size }))
        yield* instrument.publish(
          new ObjectCopied({
            backend: BACKEND,
            at,
            source: BlobLocator.render(from),
            destination: BlobLocator.render(to),
            moved: true
          })
        )
        return toStat(to, row)
      }).pipe(instrument.observe("move"))

    return TracingPorts.objectStore(BACKEND, { capabilities, head, list, get, put, write, delete: del, copy, move })
  })

/** Both object store ports from one PostgreSQL store. */
export const layer = (
  options: Options = {}
): Layer.Layer<MutableObjectStore | ImmutableObjectStore, ObjectStoreError, SqlClient> =>
  Layer.effectContext(
    Effect.map(make(options), (store) => Context.make(MutableObjectStore, store).pipe(Context.add(ImmutableObjectStore, store)))
  )

/** Config of `Options`: GRAVITON_PG_CHUNK_SIZE and GRAVITON_PG_MAX_WRITERS. */
export const config: Config.Config<Options> = Config.all({
  chunkSize: Config.integer("GRAVITON_PG_CHUNK_SIZE").pipe(
    Config.withDefault(DEFAULT_CHUNK_SIZE),
    Config.withDescription("Bytes per chunk row of new objects")
  ),
  maxWriters: Config.integer("GRAVITON_PG_MAX_WRITERS").pipe(
    Config.validate({ message: "must be at least 1", validation: (n) => n >= 1 }),
    Config.option,
    Config.map((o) => (o._tag === "Some" ? o.value : undefined)),
    Config.withDescription("Streaming puts holding a connection at once (default: half the pool)")
  )
})

/** Like `layer`, with options from `Config` (by default `config`). */
export const layerConfig = (
  options: Config.Config.Wrap<Options> = config
): Layer.Layer<MutableObjectStore | ImmutableObjectStore, ObjectStoreError | ConfigError.ConfigError, SqlClient> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(options), layer))
