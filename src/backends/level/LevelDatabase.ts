/**
 * The one open LevelDB database behind every port of this backend: a
 * scoped resource (opened when the layer is built, closed when its scope
 * ends), its namespace layout, the write gate shared by every writer, and
 * the LevelDB-specific operations: compaction and statistics.
 *
 * LevelDB locks its directory: a second process (or a second handle in this
 * process) opening the same path fails with MetadataError reason
 * Unavailable, whose description names the path.
 */
import type { AbstractSublevel } from "abstract-level"
import { ClassicLevel } from "classic-level"
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import type { MetadataError } from "../../core/Errors.js"
import { invalidInput, toMetadataError } from "./errors.js"
import { WriteGate } from "./internal/keyedLock.js"
import { Layout, upperBound } from "./internal/layout.js"
import * as LevelConfig from "./LevelConfig.js"
import * as LevelMetrics from "./LevelMetrics.js"

/** The database handle type: string keys, byte values. */
export type Db = ClassicLevel<string, Uint8Array>

/** A sublevel of the database, as `db.sublevel(name)` returns it. */
export type Sublevel = AbstractSublevel<Db, string | Buffer | Uint8Array, string, Uint8Array>

/** Outcome of one `compact`. */
export interface CompactionResult {
  /** The compacted namespace, or "*" for the whole database. */
  readonly namespace: string
  readonly duration: Duration.Duration
  /** `approximateSize` of the range before and after (table files only, not the memtable). */
  readonly sizeBefore: number
  readonly sizeAfter: number
}

/** A reading of LevelDB's properties. */
export interface LevelStats {
  /** `leveldb.approximate-memory-usage` (memtables and block cache), in bytes. */
  readonly memoryUsageBytes: number
  /** `leveldb.num-files-at-level<N>` for N = 0..6. */
  readonly filesPerLevel: ReadonlyArray<number>
  /** Approximate table bytes of the whole database. */
  readonly totalSizeBytes: number
  /** Approximate table bytes per namespace, the default sublevel included. */
  readonly namespaceSizeBytes: Readonly<Record<string, number>>
}

/** What the KeyValueStore of this backend builds on; not meant for application code. */
export interface Internals {
  readonly layout: Layout
  /** Orders plain writes and read-modify-writes (see internal/keyedLock.ts). */
  readonly gate: WriteGate
}

/** The open LevelDB database of this backend. */
export class LevelDatabase extends Context.Tag("graviton/level/LevelDatabase")<LevelDatabase, {
  /** Directory of the database. */
  readonly path: string
  /** The options it was opened with, defaults filled in. */
  readonly options: LevelConfig.ResolvedOptions
  /** Declared namespaces (each a sublevel): Graviton's, then the application's; no other key is accepted. */
  readonly namespaces: ReadonlyArray<string>
  /** The namespace (sublevel name) a key is stored in, undefined when it is outside every declared one. */
  readonly namespaceOf: (key: string) => string | undefined
  /** The raw classic-level handle, for tools and tests; writes through it bypass the write gate. */
  readonly db: Db
  /** The sublevel of a namespace, as classic-level sees it. */
  readonly sublevel: (namespace: string) => Sublevel
  /** Compacts one namespace's sublevel, or the whole database; records duration and sizes before and after. */
  readonly compact: (namespace?: string) => Effect.Effect<CompactionResult, MetadataError>
  /** Reads LevelDB's properties and sizes, and records them as gauges. */
  readonly stats: Effect.Effect<LevelStats, MetadataError>
  /** One raw LevelDB property, e.g. `leveldb.stats` or `leveldb.sstables`. */
  readonly property: (name: string) => Effect.Effect<string, MetadataError>
  readonly internals: Internals
}>() {}

const LEVELS = [0, 1, 2, 3, 4, 5, 6]

/** The whole key space: every physical key is a sublevel key, starting with '!'. */
const EVERYTHING = ["", "\u{10FFFF}"] as const

/**
 * Fails when the legacy `default` sublevel holds a key: earlier versions
 * put keys outside the configured namespaces there, and reading such a
 * database now would silently miss them. Nothing the CLI lays out is there
 * (its homes declared every namespace it writes).
 */
const refuseLegacyKeys = (db: Db, prefix: string, path: string) =>
  Effect.flatMap(
    Effect.tryPromise({
      try: () => db.keys({ gte: prefix, lt: upperBound(prefix)!, limit: 1 }).all(),
      catch: (error) => toMetadataError("open", error, { path })
    }),
    (keys) =>
      keys.length === 0 ? Effect.void : Effect.fail(invalidInput(
        "open",
        `the database at ${path} holds keys outside its namespaces (e.g. ${JSON.stringify(keys[0]!.slice(prefix.length))}, ` +
          `in the "${LevelConfig.LEGACY_NAMESPACE}" sublevel of earlier versions): declare their namespace and move them into its sublevel`
      ))
  )

/** Opens the database in the scope (closed when the scope ends). */
export const make = (
  options: LevelConfig.LevelOptions
): Effect.Effect<LevelDatabase["Type"], MetadataError, Scope.Scope> =>
  Effect.gen(function*() {
    const resolved = yield* LevelConfig.resolve(options)
    const { path } = resolved
    const context = { path }
    const metrics = yield* LevelMetrics.recorder

    const db = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: async () => {
          const db: Db = new ClassicLevel<string, Uint8Array>(path, {
            keyEncoding: "utf8",
            valueEncoding: "view",
            createIfMissing: resolved.createIfMissing,
            cacheSize: resolved.cacheSize,
            writeBufferSize: resolved.writeBufferSize,
            compression: resolved.compression
          })
          await db.open()
          return db
        },
        catch: (error) => toMetadataError("open", error, context)
      }),
      // Closing waits for pending operations and iterators; a failure there has no one left to report to.
      (db) => Effect.ignore(Effect.tryPromise(() => db.close()))
    )

    const sublevels = new Map<string, Sublevel>()
    const sublevel = (namespace: string): Sublevel => {
      let s = sublevels.get(namespace)
      if (s === undefined) {
        s = db.sublevel<string, Uint8Array>(namespace, { keyEncoding: "utf8", valueEncoding: "view" })
        sublevels.set(namespace, s)
      }
      return s
    }
    const layout = new Layout(resolved.namespaces, (ns) => sublevel(ns).prefix)
    const allNamespaces = resolved.namespaces
    yield* refuseLegacyKeys(db, sublevel(LevelConfig.LEGACY_NAMESPACE).prefix, path)

    const attempt = <A>(method: string, f: () => Promise<A>, subject?: string) =>
      Effect.tryPromise({ try: f, catch: (error) => toMetadataError(method, error, { path, subject }) })

    const property = (name: string) =>
      typeof name !== "string"
        ? Effect.fail(invalidInput("property", "a property name must be a string"))
        : attempt("property", async () => db.getProperty(name), name)

    const readStats = attempt("stats", async (): Promise<LevelStats> => {
      const memoryUsageBytes = Number(db.getProperty("leveldb.approximate-memory-usage"))
      const filesPerLevel = LEVELS.map((level) => Number(db.getProperty(`leveldb.num-files-at-level${level}`)))
      const namespaceSizeBytes: Record<string, number> = {}
      for (const ns of allNamespaces) {
        const [gte, lt] = layout.rangeOf(ns)!
        namespaceSizeBytes[ns] = await db.approximateSize(gte, lt)
      }
      const totalSizeBytes = await db.approximateSize(EVERYTHING[0], EVERYTHING[1])
      return { memoryUsageBytes, filesPerLevel, totalSizeBytes, namespaceSizeBytes }
    })

    const recordStats = (s: LevelStats) =>
      Effect.all([
        metrics.gauge(LevelMetrics.memoryUsageBytes, s.memoryUsageBytes, {}),
        metrics.gauge(LevelMetrics.totalSizeBytes, s.totalSizeBytes, {}),
        ...s.filesPerLevel.map((n, level) => metrics.gauge(LevelMetrics.filesAtLevel, n, { level: String(level) })),
        ...Object.entries(s.namespaceSizeBytes).map(([namespace, n]) =>
          metrics.gauge(LevelMetrics.approximateSizeBytes, n, { namespace })
        )
      ], { discard: true })

    const stats = Effect.tap(readStats, recordStats)

    const compact = (namespace?: string) =>
      Effect.gen(function*() {
        const range = namespace === undefined ? EVERYTHING : layout.rangeOf(namespace)
        if (range === undefined) {
          return yield* Effect.fail(
            invalidInput("compact", `unknown namespace ${JSON.stringify(namespace)} (known: ${allNamespaces.join(", ")})`)
          )
        }
        const label = namespace ?? LevelMetrics.MIXED
        const [start, end] = range
        const sizeBefore = yield* attempt("compact", () => db.approximateSize(start, end), label)
        const began = yield* Clock.currentTimeNanos
        yield* attempt("compact", () => db.compactRange(start, end), label)
        const duration = Duration.nanos((yield* Clock.currentTimeNanos) - began)
        const sizeAfter = yield* attempt("compact", () => db.approximateSize(start, end), label)
        const tags = { namespace: label }
        yield* Effect.all([
          metrics.counter(LevelMetrics.compactionsTotal, 1, tags),
          metrics.histogram(LevelMetrics.compactionDurationSeconds, Duration.toSeconds(duration), tags),
          metrics.gauge(LevelMetrics.compactionSizeBeforeBytes, sizeBefore, tags),
          metrics.gauge(LevelMetrics.compactionSizeAfterBytes, sizeAfter, tags),
          namespace === undefined ? Effect.void : metrics.gauge(LevelMetrics.approximateSizeBytes, sizeAfter, tags)
        ], { discard: true })
        return { namespace: label, duration, sizeBefore, sizeAfter }
      })

    if (metrics.enabled) {
      // Gauges follow the database while it is open; the fiber ends with the scope, before the close.
      yield* Effect.forkScoped(
        Effect.repeat(Effect.ignore(stats), Schedule.spaced(resolved.gaugeInterval))
      )
    }

    return LevelDatabase.of({
      path,
      options: resolved,
      namespaces: resolved.namespaces,
      namespaceOf: (key) => layout.namespaceOf(key),
      db,
      sublevel,
      compact,
      stats,
      property,
      internals: { layout, gate: new WriteGate() }
    })
  })

/** The database at `options.path`, open for the lifetime of the layer. */
export const layer = (options: LevelConfig.LevelOptions): Layer.Layer<LevelDatabase, MetadataError> =>
  Layer.scoped(LevelDatabase, make(options))

/** Like `layer`, with options from `Config` (by default the GRAVITON_LEVEL_* variables). */
export const layerConfig = (
  options: Config.Config.Wrap<LevelConfig.LevelOptions> = LevelConfig.config
): Layer.Layer<LevelDatabase, MetadataError | ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(options), layer))
