/**
 * Options of the LevelDB backend, their defaults (sized for a laptop), and
 * their reading from the environment.
 */
import * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Either from "effect/Either"
import type { MetadataError } from "../../core/Errors.js"
import * as KvKey from "../../core/KvKey.js"
import { invalidInput } from "./errors.js"

/** Options of one LevelDB database. */
export interface LevelOptions {
  /** Directory of the database (created when missing, unless `createIfMissing` is false). */
  readonly path: string
  /**
   * Namespaces of the application's own keys, in addition to Graviton's
   * (KvKey.NAMESPACES, always declared). A key `<ns>/<rest>` is stored as
   * `<rest>` in sublevel `<ns>`; a key outside every declared namespace
   * fails with MetadataError InvalidInput naming its namespace.
   */
  readonly namespaces?: ReadonlyArray<string> | undefined
  /** LRU block cache in bytes (default 32 MiB). */
  readonly cacheSize?: number | undefined
  /** Memtable size in bytes before it is written out as a table (default 8 MiB). */
  readonly writeBufferSize?: number | undefined
  /** Snappy compression of table blocks (default true). */
  readonly compression?: boolean | undefined
  /** fsync every write before it returns (default false: the OS flushes; a crash may lose the last writes, never corrupt). */
  readonly sync?: boolean | undefined
  /** Create the database when the directory holds none (default true). */
  readonly createIfMissing?: boolean | undefined
  /** How often LevelDB's properties are sampled into gauges when a MetricsRegistry is present (default 15 s). */
  readonly gaugeInterval?: Duration.DurationInput | undefined
}

/**
 * The sublevel where earlier versions put keys outside every configured
 * namespace; reserved, and a database holding keys there is refused (see
 * LevelDatabase) rather than read with those keys silently missing.
 */
export const LEGACY_NAMESPACE = "default"

/** Defaults of every optional setting. */
export const defaults = {
  namespaces: [] as ReadonlyArray<string>,
  // LevelDB's own defaults (8 MiB, 4 MiB) date from small machines; a laptop affords more.
  cacheSize: 32 * 1024 * 1024,
  writeBufferSize: 8 * 1024 * 1024,
  compression: true,
  sync: false,
  createIfMissing: true,
  gaugeInterval: Duration.seconds(15)
} as const

/** Options with every default filled in and checked. */
export interface ResolvedOptions {
  readonly path: string
  /** Graviton's namespaces, then the application's. */
  readonly namespaces: ReadonlyArray<string>
  readonly cacheSize: number
  readonly writeBufferSize: number
  readonly compression: boolean
  readonly sync: boolean
  readonly createIfMissing: boolean
  readonly gaugeInterval: Duration.Duration
}

/** Sublevel names must use bytes 0x23..0x7e (abstract-level reserves '!' and '"' for its prefixes). */
const NAMESPACE = /^[\u0023-\u007e]+$/

/** Checks a namespace name; the reason why not, or undefined. */
const namespaceProblem = (namespace: unknown): string | undefined =>
  typeof namespace !== "string" || namespace.length === 0
    ? "a namespace must be a non-empty string"
    : namespace.includes("/")
    ? `namespace ${JSON.stringify(namespace)} contains '/' (a namespace is the first segment of a key)`
    : !NAMESPACE.test(namespace)
    ? `namespace ${JSON.stringify(namespace)} may only use printable ASCII other than space, '!' and '"'`
    : namespace === LEGACY_NAMESPACE
    ? `namespace "${LEGACY_NAMESPACE}" is reserved (earlier versions kept keys outside every namespace there)`
    : undefined

const positiveInteger = (method: string, name: string, value: number): Either.Either<number, MetadataError> =>
  Number.isSafeInteger(value) && value > 0
    ? Either.right(value)
    : Either.left(invalidInput(method, `${name} must be a positive integer, got ${value}`))

/** Fills in the defaults and checks every option. */
export const resolve = (options: LevelOptions): Either.Either<ResolvedOptions, MetadataError> =>
  Either.gen(function*() {
    const method = "open"
    if (typeof options?.path !== "string" || options.path.length === 0) {
      return yield* Either.left(invalidInput(method, "the database path must be a non-empty string"))
    }
    const namespaces = options.namespaces ?? defaults.namespaces
    if (!Array.isArray(namespaces)) return yield* Either.left(invalidInput(method, "namespaces must be an array"))
    for (const ns of namespaces) {
      const problem = namespaceProblem(ns)
      if (problem !== undefined) return yield* Either.left(invalidInput(method, problem))
    }
    return {
      path: options.path,
      namespaces: Array.from(new Set([...KvKey.NAMESPACES, ...namespaces])),
      cacheSize: yield* positiveInteger(method, "cacheSize", options.cacheSize ?? defaults.cacheSize),
      writeBufferSize: yield* positiveInteger(method, "writeBufferSize", options.writeBufferSize ?? defaults.writeBufferSize),
      compression: options.compression ?? defaults.compression,
      sync: options.sync ?? defaults.sync,
      createIfMissing: options.createIfMissing ?? defaults.createIfMissing,
      gaugeInterval: Duration.decode(options.gaugeInterval ?? defaults.gaugeInterval)
    }
  })

const bytes = (name: string, fallback: number, description: string) =>
  Config.integer(name).pipe(
    Config.validate({ message: `${name} must be a positive number of bytes`, validation: (n) => n > 0 }),
    Config.withDefault(fallback),
    Config.withDescription(description)
  )

/**
 * Settings from the environment: GRAVITON_LEVEL_PATH (default
 * `./.graviton/meta`), GRAVITON_LEVEL_NAMESPACES (comma-separated),
 * GRAVITON_LEVEL_CACHE_SIZE and GRAVITON_LEVEL_WRITE_BUFFER_SIZE (bytes),
 * GRAVITON_LEVEL_COMPRESSION and GRAVITON_LEVEL_SYNC (booleans).
 */
export const config: Config.Config<LevelOptions> = Config.all({
  path: Config.string("GRAVITON_LEVEL_PATH").pipe(
    Config.withDefault("./.graviton/meta"),
    Config.withDescription("Directory of the LevelDB database")
  ),
  namespaces: Config.array(Config.string(), "GRAVITON_LEVEL_NAMESPACES").pipe(
    Config.withDefault(defaults.namespaces),
    Config.withDescription("Namespaces of the application's keys besides Graviton's own (comma-separated)")
  ),
  cacheSize: bytes("GRAVITON_LEVEL_CACHE_SIZE", defaults.cacheSize, "LevelDB block cache size in bytes"),
  writeBufferSize: bytes(
    "GRAVITON_LEVEL_WRITE_BUFFER_SIZE",
    defaults.writeBufferSize,
    "LevelDB write buffer (memtable) size in bytes"
  ),
  compression: Config.boolean("GRAVITON_LEVEL_COMPRESSION").pipe(
    Config.withDefault(defaults.compression),
    Config.withDescription("Snappy-compress LevelDB table blocks")
  ),
  sync: Config.boolean("GRAVITON_LEVEL_SYNC").pipe(
    Config.withDefault(defaults.sync),
    Config.withDescription("fsync every LevelDB write before it returns")
  )
})
