/**
 * PostgreSQL backend benchmark (`npm run bench:pg`, BENCH_QUICK=1 for a smoke run).
 *
 * One server for the whole run: GRAVITON_TEST_PG_URL if set, else a
 * throwaway cluster from the machine's binaries (test/harness/pgCluster.ts).
 * Each comparison runs the adapter ("ours") and the same storage scheme
 * written directly with `pg` ("baseline": the same statements, no Effect)
 * alternately on the same data, and prints one BENCH line:
 *
 * - pg.object.put.256MiB / pg.object.get.256MiB (MB/s): one object streamed
 *   in 64 KiB pieces, stored as 1 MiB chunk rows, and read back;
 * - pg.object.write.1KiB (ops/s): 10k small objects, one after the other,
 *   through `write` (bytes in hand: one statement each);
 * - pg.object.put.1KiB (ops/s): the same through the streaming `put` (a
 *   one-chunk Stream run into the Sink; Effect's stream machinery costs
 *   ~80-100 µs per run on its own);
 * - pg.kv.put / pg.kv.get (ops/s): 10k 100-byte values;
 * - pg.stalled.head.p99 / pg.stalled.get1KiB.p99 (ms): head and small get
 *   while as many puts as the pool has connections stall mid-stream;
 * - pg.object.put.peakRss.* (MiB): peak RSS of a separate process doing
 *   only one put, for three object sizes (16 MiB, 256 MiB, 1 GiB), to show
 *   memory does not grow with size.
 *
 * - pg.tracing.{off,on}.* (ops/s, MB/s): small writes, KV puts and the large
 *   put with no tracer installed ("off") and with @effect/opentelemetry
 *   recording every span into an in-memory exporter ("on"), each against
 *   the same calls on the ports as the backend built them without their
 *   span wrappers (TracingPorts.untraced; the statement-level check, made
 *   in the fiber step that finds the statement's connection, is in both);
 *
 * BENCH_PG_ONLY=kv,write (comma-separated substrings of the names) runs only
 * the matching comparisons, for iterating on one of them.
 */
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import type * as Tracer from "effect/Tracer"
import { fileURLToPath } from "node:url"
import * as Pg from "pg"
import * as PgLayers from "../src/backends/pg/PgLayers.js"
import * as BlobLocator from "../src/core/BlobLocator.js"
import { KeyValueStore } from "../src/ports/KeyValueStore.js"
import { ImmutableObjectStore, MutableObjectStore } from "../src/ports/ObjectStore.js"
import { untraced } from "../src/kit/TracingPorts.js"
import { startCluster } from "../test/harness/pgCluster.js"
import { makeTracing } from "../test/observability/fixtures.js"
import { type Comparison, compare as compareAll, mbps, peakRssMiB, quick, single, size, time } from "./harness.js"

const only = (process.env.BENCH_PG_ONLY ?? "").split(",").filter((s) => s.length > 0)
const wanted = (name: string): boolean => only.length === 0 || only.some((s) => name.includes(s))
const compare = async (c: Comparison): Promise<void> => {
  if (wanted(c.name)) await compareAll(c)
}

const MiB = 1024 * 1024
const CHUNK = MiB
const PIECE = 64 * 1024

/** `total` bytes as 64 KiB pieces of one random MiB (views: the generator holds 1 MiB whatever the total). */
const source = (() => {
  const block = new Uint8Array(MiB)
  for (let i = 0; i < block.length; i++) block[i] = (i * 2654435761) >>> 24
  return block
})()
const pieces = function*(total: number): Generator<Uint8Array> {
  for (let offset = 0; offset < total; offset += PIECE) {
    const start = offset % MiB
    yield source.subarray(start, start + Math.min(PIECE, total - offset))
  }
}
const pieceStream = (total: number) => Stream.fromIterable({ [Symbol.iterator]: () => pieces(total) })

const locator = (path: string) => {
  const l = BlobLocator.make("pg", "bench", path)
  if (l._tag === "Left") throw new Error(l.left.message)
  return l.right
}


// ---------------------------------------------------------------- raw driver

/** The adapter's storage scheme written directly with `pg`. */
const raw = (pool: Pg.Pool) => {
  const upsertObject = `INSERT INTO objects (scheme, bucket, path, content_id, content_type, metadata, last_modified)
    SELECT $1, $2, $3, id, NULL, '{}'::jsonb, clock_timestamp() FROM content
    ON CONFLICT (scheme, bucket, path) DO UPDATE SET
      content_id = EXCLUDED.content_id, content_type = EXCLUDED.content_type,
      metadata = EXCLUDED.metadata, last_modified = EXCLUDED.last_modified
    RETURNING content_id::text AS content_id, last_modified`

  const putLarge = async (path: string, total: number): Promise<void> => {
    const client = await pool.connect()
    try {
      await client.query("BEGIN")
      const { rows } = await client.query("SELECT nextval('object_content_ids')::text AS id")
      const id = rows[0].id as string
      const buffer = Buffer.allocUnsafe(CHUNK)
      let used = 0
      let seq = 0
      for (const piece of pieces(total)) {
        buffer.set(piece, used)
        used += piece.length
        if (used === CHUNK) {
          await client.query("INSERT INTO object_chunks (content_id, seq, data) VALUES ($1::bigint, $2, $3)", [id, seq++, buffer])
          used = 0
        }
      }
      if (used > 0) {
        await client.query("INSERT INTO object_chunks (content_id, seq, data) VALUES ($1::bigint, $2, $3)", [
          id,
          seq++,
          buffer.subarray(0, used)
        ])
      }
      await client.query(
        `WITH content AS (INSERT INTO object_contents (id, size, chunk_size) VALUES ($4::bigint, $5, $6) RETURNING id)
         ${upsertObject}`,
        ["pg", "bench", path, id, total, CHUNK]
      )
      await client.query("COMMIT")
    } catch (e) {
      await client.query("ROLLBACK").catch(() => {})
      throw e
    } finally {
      client.release()
    }
  }

  const putSmall = async (path: string, bytes: Buffer): Promise<void> => {
    await pool.query(
      `WITH content AS (
         INSERT INTO object_contents (id, size, chunk_size) VALUES (nextval('object_content_ids'), $4, $5) RETURNING id
       ), chunk AS (
         INSERT INTO object_chunks (content_id, seq, data) SELECT id, 0, $6 FROM content WHERE $4::bigint > 0
       )
       ${upsertObject}`,
      ["pg", "bench", path, bytes.length, CHUNK, bytes]
    )
  }

  const get = async (path: string): Promise<number> => {
    const { rows } = await pool.query(
      `SELECT o.content_id::text AS content_id, c.size::text AS size, c.chunk_size
       FROM objects o JOIN object_contents c ON c.id = o.content_id
       WHERE o.scheme = $1 AND o.bucket = $2 AND o.path = $3`,
      ["pg", "bench", path]
    )
    const { chunk_size, content_id } = rows[0]
    const total = Number(rows[0].size)
    const last = Math.floor((total - 1) / chunk_size)
    const perPage = Math.max(1, Math.floor(4 * MiB / chunk_size))
    let bytes = 0
    for (let from = 0; from <= last; from += perPage) {
      const to = Math.min(last, from + perPage - 1)
      const page = await pool.query(
        `SELECT seq, substring(data
           FROM (greatest($2::bigint - seq::bigint * $4::bigint, 0) + 1)::integer
           FOR (least($3::bigint - seq::bigint * $4::bigint, $4::bigint)
                - greatest($2::bigint - seq::bigint * $4::bigint, 0))::integer) AS data
         FROM object_chunks WHERE content_id = $1::bigint AND seq >= $5 AND seq <= $6 ORDER BY seq`,
        [content_id, 0, total, chunk_size, from, to]
      )
      for (const r of page.rows) bytes += r.data.length
    }
    return bytes
  }

  const kvPut = (key: string, value: Buffer) =>
    pool.query("INSERT INTO kv (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", [
      key,
      value
    ])
  const kvGet = async (key: string): Promise<Buffer | undefined> => {
    const { rows } = await pool.query("SELECT value FROM kv WHERE key = $1", [key])
    return rows[0]?.value
  }
  return { putLarge, putSmall, get, kvPut, kvGet }
}

// ---------------------------------------------------------------- child: peak RSS of one put

const rssChild = async (url: string, total: number): Promise<void> => {
  const layer = PgLayers.live({ url: Redacted.make(url) })
  await Effect.runPromise(
    Effect.flatMap(MutableObjectStore, (store) => Stream.run(pieceStream(total), store.put(locator(`rss/${total}`)))).pipe(
      Effect.provide(layer)
    )
  )
}

// ---------------------------------------------------------------- stalled writers

/** The `q` quantile (0..1) of `xs` (nearest rank). */
const quantile = (xs: ReadonlyArray<number>, q: number): number => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!
}

/**
 * pg.stalled.head.p99 / pg.stalled.get1KiB.p99 (ms): latency of `head` and of a 1 KiB `get` on a
 * store of the default pool (10 connections) while as many puts as the pool has connections have
 * sent 1 MiB and then stall (issue 15: ~14 s before the writer bound; target under 100 ms). Each
 * figure is the p99 of sequential calls made during the stall.
 */
const stalledWriters = async (url: string, observer: Pg.Pool): Promise<void> => {
  const poolSize = 10
  const calls = size(500, 100)
  const stalled = ManagedRuntime.make(
    PgLayers.live({ url: Redacted.make(url), poolSize }) as Layer.Layer<MutableObjectStore | ImmutableObjectStore>
  )
  try {
    const small = Buffer.from(source.subarray(0, 1024))
    await stalled.runPromise(Effect.flatMap(MutableObjectStore, (s) => s.write(locator("stalled/small"), small)))
    const writers = Array.from({ length: poolSize }, (_, i) =>
      stalled.runFork(Effect.flatMap(MutableObjectStore, (s) =>
        Stream.run(
          Stream.concat(pieceStream(MiB + PIECE), Stream.drain(Stream.fromEffect(Effect.never))),
          s.put(locator(`stalled/writer/${i}`))
        ))))
    // Wait until the writers that may hold a connection have opened their transactions.
    const deadline = Date.now() + 20_000
    let holding = 0
    while (Date.now() < deadline) {
      const { rows } = await observer.query(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle in transaction'"
      )
      holding = rows[0].n
      if (holding >= PgLayers.defaultMaxWriters(poolSize)) break
      await new Promise((r) => setTimeout(r, 50))
    }
    const heads: Array<number> = []
    const gets: Array<number> = []
    for (let i = 0; i < calls; i++) {
      heads.push(1000 * await time(() => stalled.runPromise(Effect.flatMap(ImmutableObjectStore, (s) => s.head(locator("stalled/small"))))))
      gets.push(1000 * await time(() =>
        stalled.runPromise(Effect.flatMap(ImmutableObjectStore, (s) => Stream.runDrain(s.get(locator("stalled/small")))))
      ))
    }
    await Promise.all(writers.map((f) => stalled.runPromise(Fiber.interrupt(f))))
    single("pg.stalled.head.p99", "ms", quantile(heads, 0.99))
    single("pg.stalled.get1KiB.p99", "ms", quantile(gets, 0.99))
    console.log(
      `  ${poolSize} stalled writers on a pool of ${poolSize} (${holding} holding a connection): ` +
        `head p50 ${quantile(heads, 0.5).toFixed(1)} ms, p99 ${quantile(heads, 0.99).toFixed(1)} ms; ` +
        `1 KiB get p50 ${quantile(gets, 0.5).toFixed(1)} ms, p99 ${quantile(gets, 0.99).toFixed(1)} ms (${calls} calls each)`
    )
  } finally {
    await stalled.dispose()
  }
}

// ---------------------------------------------------------------- main

const main = async (): Promise<void> => {
  const given = process.env.GRAVITON_TEST_PG_URL
  const server = given ? undefined : await startCluster()
  const url = given ?? server!.url
  const runtime = ManagedRuntime.make(
    PgLayers.live({ url: Redacted.make(url), migrate: true, poolSize: 4 }) as Layer.Layer<
      MutableObjectStore | ImmutableObjectStore | KeyValueStore | PgLayers.PgPool
    >
  )
  try {
    const pool = await runtime.runPromise(PgLayers.PgPool)
    const baseline = raw(pool)
    const run = <A, E>(effect: Effect.Effect<A, E, MutableObjectStore | ImmutableObjectStore | KeyValueStore>) =>
      runtime.runPromise(effect)

    /**
     * Before each large run: drop the previous copy and let the server clean up (vacuum, checkpoint)
     * outside the timed region, so that neither side pays for the other's dead rows.
     */
    const settle = async (path: string) => {
      await pool.query("DELETE FROM objects WHERE scheme = 'pg' AND bucket = 'bench' AND path = $1", [path])
      await pool.query("VACUUM object_chunks").catch(() => {})
      await pool.query("CHECKPOINT").catch(() => {}) // needs superuser (or pg_checkpoint); skipped otherwise
    }

    const big = size(256 * MiB, 32 * MiB)
    const bigName = `${big / MiB}MiB`
    console.log(`PostgreSQL ${quick ? "(quick)" : ""}: ${bigName} object, chunk rows of ${CHUNK / MiB} MiB`)

    await compare({
      name: `pg.object.put.${bigName}`,
      unit: "MB/s",
      baselineName: "pg (same scheme, no Effect)",
      higherIsBetter: true,
      runs: size(5, 3),
      ours: async () => {
        await settle("big/ours")
        return mbps(
          big,
          await time(() =>
            run(Effect.flatMap(MutableObjectStore, (s) => Stream.run(pieceStream(big), s.put(locator("big/ours")))))
          )
        )
      },
      baseline: async () => {
        await settle("big/raw")
        return mbps(big, await time(() => baseline.putLarge("big/raw", big)))
      }
    })

    await compare({
      name: `pg.object.get.${bigName}`,
      unit: "MB/s",
      baselineName: "pg (same scheme, no Effect)",
      higherIsBetter: true,
      runs: size(5, 3),
      ours: async () => {
        let n = 0
        const seconds = await time(() =>
          run(Effect.flatMap(ImmutableObjectStore, (s) =>
            Stream.runForEach(s.get(locator("big/ours")), (c) =>
              Effect.sync(() => {
                n += c.length
              }))))
        )
        if (n !== big) throw new Error(`read ${n} bytes, expected ${big}`)
        return mbps(big, seconds)
      },
      baseline: async () => {
        let n = 0
        const seconds = await time(async () => {
          n = await baseline.get("big/raw")
        })
        if (n !== big) throw new Error(`read ${n} bytes, expected ${big}`)
        return mbps(big, seconds)
      }
    })

    const smallCount = size(10_000, 1_000)
    const small = Buffer.from(source.subarray(0, 1024))
    let round = 0
    /** 10k small objects, one after the other, each stored by `store` vs the raw statement. */
    const smallObjects = (
      name: string,
      store: (s: MutableObjectStore["Type"], at: BlobLocator.BlobLocator) => Effect.Effect<unknown, unknown>
    ) =>
      compare({
        name,
        unit: "ops/s",
        baselineName: "pg (same scheme, no Effect)",
        higherIsBetter: true,
        ours: async () => {
          const r = ++round
          const seconds = await time(() =>
            run(Effect.flatMap(MutableObjectStore, (s) =>
              Effect.forEach(
                Array.from({ length: smallCount }, (_, i) => i),
                (i) => store(s, locator(`small/ours/${r}/${i}`)),
                { discard: true }
              )))
          )
          return smallCount / seconds
        },
        baseline: async () => {
          const r = ++round
          const seconds = await time(async () => {
            for (let i = 0; i < smallCount; i++) await baseline.putSmall(`small/raw/${r}/${i}`, small)
          })
          return smallCount / seconds
        }
      })
    await smallObjects("pg.object.write.1KiB", (s, at) => s.write(at, small))
    await smallObjects("pg.object.put.1KiB", (s, at) => Stream.run(Stream.make(small), s.put(at)))

    const kvCount = size(10_000, 1_000)
    const value = Buffer.from(source.subarray(0, 100))
    await compare({
      name: "pg.kv.put",
      unit: "ops/s",
      baselineName: "pg (same statement, no Effect)",
      higherIsBetter: true,
      ours: async () =>
        kvCount / await time(() =>
          run(Effect.flatMap(KeyValueStore, (kv) =>
            Effect.forEach(Array.from({ length: kvCount }, (_, i) => i), (i) => kv.put(`bench/ours/${i}`, value), {
              discard: true
            })))
        ),
      baseline: async () =>
        kvCount / await time(async () => {
          for (let i = 0; i < kvCount; i++) await baseline.kvPut(`bench/raw/${i}`, value)
        })
    })
    await compare({
      name: "pg.kv.get",
      unit: "ops/s",
      baselineName: "pg (same statement, no Effect)",
      higherIsBetter: true,
      ours: async () =>
        kvCount / await time(() =>
          run(Effect.flatMap(KeyValueStore, (kv) =>
            Effect.forEach(Array.from({ length: kvCount }, (_, i) => i), (i) =>
              Effect.flatMap(kv.get(`bench/ours/${i}`), (v) =>
                Option.isSome(v) ? Effect.void : Effect.dieMessage("missing value")), { discard: true })))
        ),
      baseline: async () =>
        kvCount / await time(async () => {
          for (let i = 0; i < kvCount; i++) {
            if ((await baseline.kvGet(`bench/raw/${i}`)) === undefined) throw new Error("missing value")
          }
        })
    })

    // Tracing off (no tracer) and on (in-memory exporter), each against the unwrapped ports.
    const tracing = makeTracing(undefined, { batch: true })
    const tracingRuntime = ManagedRuntime.make(tracing.layer)
    try {
      const tracer = await tracingRuntime.runPromise(Effect.tracer)
      type Mode = "off" | "on" | "unwrapped"
      const inMode = <A, E>(mode: Mode, effect: (unwrap: <P extends object>(port: P) => P) => Effect.Effect<A, E, MutableObjectStore | KeyValueStore>) => {
        const body = effect(mode === "unwrapped" ? untraced : (port) => port)
        return run(mode === "on" ? Effect.withTracer(body, tracer as Tracer.Tracer) : body).finally(() => tracing.exporter.reset())
      }
      let tracingRound = 0
      const ops = (
        count: number,
        one: (s: MutableObjectStore["Type"], kv: KeyValueStore["Type"], r: number, i: number) => Effect.Effect<unknown, unknown>
      ) =>
      (mode: Mode) =>
      async () => {
        const r = ++tracingRound
        const seconds = await time(() =>
          inMode(mode, (unwrap) =>
            Effect.flatMap(Effect.all([MutableObjectStore, KeyValueStore]), ([s, kv]) =>
              Effect.forEach(Array.from({ length: count }, (_, i) => i), (i) => one(unwrap(s), unwrap(kv), r, i), { discard: true })))
        )
        return count / seconds
      }
      const cases = [
        ["object.write.1KiB", ops(smallCount, (s, _, r, i) => s.write(locator(`trace/${r}/${i}`), small))],
        ["kv.put", ops(kvCount, (_, kv, r, i) => kv.put(`trace/${r}/${i}`, value))]
      ] as const
      for (const mode of ["off", "on"] as const) {
        for (const [what, measure] of cases) {
          await compare({
            name: `pg.tracing.${mode}.${what}`,
            unit: "ops/s",
            baselineName: "the same calls, ports without span wrappers",
            higherIsBetter: true,
            // More runs than the others: the differences sought are a few per cent.
            runs: 5,
            ours: measure(mode),
            baseline: measure("unwrapped")
          })
        }
        const bigPut = (m: Mode) => async () => {
          await settle(`trace/${m}`)
          return mbps(big, await time(() =>
            inMode(m, (unwrap) =>
              Effect.flatMap(MutableObjectStore, (s) => Stream.run(pieceStream(big), unwrap(s).put(locator(`trace/${m}`)))))
          ))
        }
        await compare({
          name: `pg.tracing.${mode}.object.put.${bigName}`,
          unit: "MB/s",
          baselineName: "the same put, store without its span wrapper",
          higherIsBetter: true,
          runs: 5,
          ours: bigPut(mode),
          baseline: bigPut("unwrapped")
        })
      }
    } finally {
      await tracingRuntime.dispose()
    }

    if (wanted("pg.stalled")) await stalledWriters(url, pool)

    // Peak memory of a process doing only one put, at three sizes: it should not grow with the object.
    const self = fileURLToPath(import.meta.url)
    const rssSizes = quick ? [8 * MiB, big] : [16 * MiB, big, 4 * big]
    for (const total of rssSizes.filter(() => wanted("pg.object.put.peakRss"))) {
      const rss = await peakRssMiB(process.execPath, ["--import", "tsx", self, "--rss-child", String(total)], {
        GRAVITON_BENCH_PG_URL: url
      })
      single(`pg.object.put.peakRss.${total / MiB}MiB`, "MiB", rss)
      console.log(`  peak RSS of a process putting ${total / MiB} MiB: ${rss.toFixed(1)} MiB`)
    }
  } finally {
    await runtime.dispose()
    await server?.stop()
  }
}

const childIndex = process.argv.indexOf("--rss-child")
if (childIndex >= 0) {
  await rssChild(process.env.GRAVITON_BENCH_PG_URL!, Number(process.argv[childIndex + 1]))
} else {
  await main()
}
