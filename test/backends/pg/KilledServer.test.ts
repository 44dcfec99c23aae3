/**
 * A killed PostgreSQL (issue 15): SIGKILL the postmaster in the middle of a
 * 256 MiB put, start it again on the same data directory and port. The put
 * fails with Unavailable (the server went away), crash recovery leaves
 * nothing of it (no object, no content, no chunk row), and the same put on
 * the same layer then succeeds and reads back byte-exact.
 *
 * It runs on a cluster of its own (test/harness/pgCluster.ts), never on the
 * shared one the other test files use, so it needs the server binaries even
 * when GRAVITON_TEST_PG_URL names a server.
 */
import { afterAll, beforeAll, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import { createHash } from "node:crypto"
import * as Pg from "pg"
import * as PgLayers from "../../../src/backends/pg/PgLayers.js"
import * as BlobLocator from "../../../src/core/BlobLocator.js"
import { ImmutableObjectStore, MutableObjectStore } from "../../../src/ports/ObjectStore.js"
import { MiB, randomBytes } from "../../../src/testing/bytes.js"
import { gate } from "../../../src/testing/capabilities.js"
import { findBinDir, type PgCluster, startCluster } from "../../harness/pgCluster.js"
import { recordFault } from "../../harness/reliability.js"

const reason = findBinDir() === undefined
  ? "needs the PostgreSQL server binaries to run a cluster it may kill (scripts/install-postgres.sh)"
  : undefined
const test = gate(it.scopedLive, reason)

let cluster: PgCluster | undefined
beforeAll(async () => {
  if (reason === undefined) cluster = await startCluster()
}, 60_000)
afterAll(async () => {
  await cluster?.stop()
}, 30_000)

const TOTAL = 256 * MiB
const KILL_AT = 64 * MiB
const PIECE = 256 * 1024
const block = randomBytes(MiB)

/** 256 MiB in 256 KiB pieces (views of one random MiB, each MiB numbered so that no two are equal); `onPiece` sees the bytes sent so far. */
const content = (onPiece: (sent: number) => Effect.Effect<void>) =>
  Stream.fromIterable(Array.from({ length: TOTAL / PIECE }, (_, i) => i)).pipe(
    Stream.mapEffect((i) => {
      const piece = block.slice((i * PIECE) % MiB, (i * PIECE) % MiB + PIECE)
      piece[0] = Math.floor((i * PIECE) / MiB) & 0xff
      return Effect.as(onPiece((i + 1) * PIECE), piece)
    })
  )

const expectedDigest = Effect.runSync(
  Stream.runFold(content(() => Effect.void), createHash("sha256"), (h, piece) => h.update(piece)).pipe(
    Effect.map((h) => h.digest("hex"))
  )
)

const counts = (url: string) =>
  Effect.promise(async () => {
    const client = new Pg.Client({ connectionString: url })
    client.on("error", () => {})
    await client.connect()
    try {
      const { rows } = await client.query(
        "SELECT (SELECT count(*) FROM objects)::int AS objects, (SELECT count(*) FROM object_contents)::int AS contents, (SELECT count(*) FROM object_chunks)::int AS chunks"
      )
      return rows[0] as { objects: number; contents: number; chunks: number }
    } finally {
      await client.end().catch(() => {})
    }
  })

test("SIGKILL of the postmaster mid-put: Unavailable, nothing half-written, and a retry on the same layer succeeds", () =>
  Effect.gen(function*() {
    const server = cluster!
    const context = yield* Layer.build(PgLayers.live({ url: Redacted.make(server.url), migrate: true }))
    const l = Either.getOrThrow(BlobLocator.make("pg", "graviton", "killed/256MiB"))
    const put = (onPiece: (sent: number) => Effect.Effect<void>) =>
      Effect.flatMap(MutableObjectStore, (s) => Stream.run(content(onPiece), s.put(l))).pipe(Effect.provide(context))

    let killedAt = 0
    const exit = yield* Effect.exit(put((sent) =>
      sent === KILL_AT
        ? Effect.promise(() => server.kill("SIGKILL")).pipe(Effect.tap(() => (killedAt = sent)))
        : Effect.void
    ))
    expect(killedAt).toBe(KILL_AT)
    const failure = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
    expect(Option.map(failure, (e) => e.reason)).toEqual(Option.some("Unavailable"))

    yield* Effect.promise(() => server.restart())
    const after = yield* counts(server.url)
    expect(after).toEqual({ objects: 0, contents: 0, chunks: 0 })
    const visible = yield* Effect.flatMap(ImmutableObjectStore, (s) => s.head(l)).pipe(Effect.provide(context))
    expect(Option.isNone(visible)).toBe(true)

    // The same layer: its pool drops the dead connections and opens new ones.
    const stat = yield* put(() => Effect.void)
    expect(stat.size).toBe(TOTAL)
    const digest = yield* Effect.flatMap(ImmutableObjectStore, (s) =>
      Stream.runFold(s.get(l), createHash("sha256"), (h, c) => h.update(c))).pipe(
        Effect.map((h) => h.digest("hex")),
        Effect.provide(context)
      )
    expect(digest).toBe(expectedDigest)

    recordFault({
      area: "pg",
      fault: "postmaster SIGKILL at 64 MiB of a 256 MiB put, then restarted on the same data directory",
      expected: "the put fails with Unavailable; nothing of it left after recovery; a retry on the same layer succeeds",
      observed: `put failed with ${Option.getOrElse(Option.map(failure, (e) => e.reason), () => "no typed error")}; ` +
        `after restart ${after.objects} objects, ${after.contents} contents, ${after.chunks} chunk rows; ` +
        `retry stored ${stat.size} bytes, ${digest === expectedDigest ? "digest verified" : "digest MISMATCH"}`
    })
  }), 240_000)
