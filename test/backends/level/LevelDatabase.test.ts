/**
 * The LevelDB database as a resource: the directory lock (a second process
 * or handle gets a typed error), compaction and statistics with their
 * metrics in the Prometheus text, and configuration from the environment.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as KvKey from "../../../src/core/KvKey.js"
import { execFile } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import * as LevelConfig from "../../../src/backends/level/LevelConfig.js"
import { LevelDatabase } from "../../../src/backends/level/LevelDatabase.js"
import * as LevelDatabaseModule from "../../../src/backends/level/LevelDatabase.js"
import * as LevelLayers from "../../../src/backends/level/LevelLayers.js"
import * as LevelMetrics from "../../../src/backends/level/LevelMetrics.js"
import { del, KeyValueStore, put } from "../../../src/ports/KeyValueStore.js"
import { MetricsRegistry } from "../../../src/ports/MetricsRegistry.js"
import * as Metrics from "../../../src/kit/Metrics.js"
import { randomBytes, utf8 } from "../../../src/testing/bytes.js"

const root = mkdtempSync(join(tmpdir(), "graviton-level-db-"))
afterAll(() => rmSync(root, { recursive: true, force: true }))
let counter = 0
const freshPath = () => join(root, `db-${counter++}`)

const projectRoot = fileURLToPath(new URL("../../../", import.meta.url))
const layersModule = fileURLToPath(new URL("../../../src/backends/level/LevelLayers.ts", import.meta.url))

/** Opens `path` with LevelLayers.live in a separate Node process and reports how that went, as JSON. */
const openInAnotherProcess = async (path: string) => {
  const code = `
    import * as Effect from "effect/Effect"
    import * as Layer from "effect/Layer"
    import * as LevelLayers from ${JSON.stringify(layersModule)}
    const exit = await Effect.runPromiseExit(Effect.scoped(Layer.build(LevelLayers.live({ path: process.argv[1] }))))
    const error = exit._tag === "Failure" && exit.cause._tag === "Fail" ? exit.cause.error : undefined
    console.log(JSON.stringify({ exit: exit._tag, tag: error?._tag, reason: error?.reason, description: error?.description }))
  `
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ["--import", "tsx", "--input-type=module", "-e", code, path],
    { cwd: projectRoot, timeout: 30_000 }
  )
  return JSON.parse(stdout.trim().split("\n").pop()!) as {
    exit: string
    tag?: string
    reason?: string
    description?: string
  }
}

describe("LevelDatabase", () => {
  it.live("a second process opening a database in use gets MetadataError Unavailable naming the path", () =>
    Effect.gen(function*() {
      const path = freshPath()
      const outcome = yield* Effect.scoped(Effect.gen(function*() {
        yield* Layer.build(LevelLayers.live({ path }))
        return yield* Effect.promise(() => openInAnotherProcess(path))
      }))
      expect(outcome).toEqual({
        exit: "Failure",
        tag: "MetadataError",
        reason: "Unavailable",
        description: `database at ${path} is already open in another process (LevelDB holds ${path}/LOCK)`
      })
      // Closed with our scope: now the other process gets it.
      expect((yield* Effect.promise(() => openInAnotherProcess(path))).exit).toBe("Success")
    }), 60_000)

  it.live("a second handle in this process gets the typed error too; the first keeps working", () =>
    Effect.scoped(Effect.gen(function*() {
      const path = freshPath()
      const first = yield* Layer.build(LevelLayers.live({ path }))
      const error = yield* Effect.flip(Effect.scoped(Layer.build(LevelLayers.live({ path }))))
      expect(error._tag).toBe("MetadataError")
      expect(error.reason).toBe("Unavailable")
      expect(error.method).toBe("open")
      expect(error.description).toContain(`database at ${path} is already open in this process`)
      const kv = first.unsafeMap.get(KeyValueStore.key) as KeyValueStore["Type"]
      yield* kv.put("blobs/still", utf8("fine"))
      expect((yield* kv.get("blobs/still"))._tag).toBe("Some")
    })))

  it.live("a corrupted database fails to open with reason Corrupted, which is not transient", () =>
    Effect.gen(function*() {
      const path = freshPath()
      yield* Effect.scoped(Effect.flatMap(LevelDatabaseModule.make({ path }), (db) => Effect.promise(() => db.db.put("k", utf8("v")))))
      // LevelDB reads CURRENT first; one without its trailing newline is reported as corruption.
      writeFileSync(join(path, "CURRENT"), "garbage")
      const error = yield* Effect.flip(Effect.scoped(LevelDatabaseModule.make({ path })))
      expect(error.reason).toBe("Corrupted")
      expect(error.isTransient).toBe(false)
      expect(error.description).toContain(`database at ${path} is corrupted`)
    }))

  it.live("a path that cannot be a directory, or a missing one with createIfMissing off, fails typed", () =>
    Effect.gen(function*() {
      const file = join(root, "a-file")
      writeFileSync(file, "x")
      const underFile = yield* Effect.flip(Effect.scoped(LevelDatabaseModule.make({ path: join(file, "db") })))
      expect(underFile._tag).toBe("MetadataError")
      expect(underFile.reason).toBe("InvalidInput")
      const missing = yield* Effect.flip(Effect.scoped(LevelDatabaseModule.make({ path: freshPath(), createIfMissing: false })))
      expect(missing.reason).toBe("NotFound")
    }))

  it.live("compaction records its duration and sizes; stats and operations land in the Prometheus text", () =>
    Effect.scoped(Effect.gen(function*() {
      const path = freshPath()
      const context = yield* Layer.build(
        LevelLayers.live({ path, namespaces: ["blobs", "ranges"] }).pipe(Layer.provideMerge(Metrics.layer))
      )
      const kv = context.unsafeMap.get(KeyValueStore.key) as KeyValueStore["Type"]
      const database = context.unsafeMap.get(LevelDatabase.key) as LevelDatabase["Type"]
      const registry = context.unsafeMap.get(MetricsRegistry.key) as MetricsRegistry["Type"]

      // ~2 MiB of incompressible values, so that the sizes are well above zero.
      const keys = Array.from({ length: 2000 }, (_, i) => `blobs/${String(i).padStart(5, "0")}`)
      for (let i = 0; i < keys.length; i += 500) {
        yield* kv.commit([], keys.slice(i, i + 500).map((k, j) => put(k, randomBytes(1024, i + j + 1))))
      }
      yield* kv.put("ranges/r", utf8("x"))
      yield* kv.get("ranges/r")
      yield* kv.get("replicas/missing")

      const first = yield* database.compact("blobs")
      expect(first.namespace).toBe("blobs")
      // The memtable is not counted before; after, the data sits in table files.
      expect(first.sizeAfter).toBeGreaterThan(1_000_000)
      yield* kv.commit([], keys.map((k) => del(k)))
      const second = yield* database.compact("blobs")
      expect(second.sizeBefore).toBeGreaterThan(1_000_000)
      expect(second.sizeAfter).toBeLessThan(second.sizeBefore / 10)
      const whole = yield* database.compact()
      expect(whole.namespace).toBe("*")

      const stats = yield* database.stats
      expect(stats.filesPerLevel).toHaveLength(7)
      expect(stats.memoryUsageBytes).toBeGreaterThan(0)
      expect(Object.keys(stats.namespaceSizeBytes).sort()).toEqual([...KvKey.NAMESPACES].sort())

      const text = yield* registry.prometheus
      const has = (pattern: RegExp) => expect(text).toMatch(pattern)
      has(/graviton_level_compaction_duration_seconds_count\{backend="level",namespace="blobs"\} 2/)
      has(/graviton_level_compaction_duration_seconds_count\{backend="level",namespace="\*"\} 1/)
      has(/graviton_level_compactions_total\{backend="level",namespace="blobs"\} 2/)
      has(new RegExp(`graviton_level_compaction_size_before_bytes\\{backend="level",namespace="blobs"\\} ${second.sizeBefore}`))
      has(new RegExp(`graviton_level_compaction_size_after_bytes\\{backend="level",namespace="blobs"\\} ${second.sizeAfter}`))
      has(/graviton_level_operations_total\{backend="level",namespace="blobs",op="commit",outcome="success"\} 5/)
      has(/graviton_level_operations_total\{backend="level",namespace="ranges",op="put",outcome="success"\} 1/)
      has(/graviton_level_operations_total\{backend="level",namespace="replicas",op="get",outcome="success"\} 1/)
      has(/graviton_level_operation_duration_seconds_count\{backend="level",namespace="ranges",op="get"\} 1/)
      has(/graviton_level_memory_usage_bytes\{backend="level"\} \d+/)
      has(/graviton_level_files\{backend="level",level="0"\} \d+/)
      has(/graviton_level_total_size_bytes\{backend="level"\} \d+/)
      has(/graviton_level_approximate_size_bytes\{backend="level",namespace="replicas"\} \d+/)
      // With a registry, LevelDB's own per-namespace series replace the generic
      // per-call ones (recording both doubled the cost of a microsecond call).
      expect(text).not.toMatch(/graviton_backend_operations_total\{backend="level"/)
    })))

  it.live("compacting an unknown namespace is InvalidInput; raw properties are readable", () =>
    Effect.scoped(Effect.gen(function*() {
      const database = yield* LevelDatabaseModule.make({ path: freshPath(), namespaces: ["blobs"] })
      const error = yield* Effect.flip(database.compact("nope"))
      expect(error.reason).toBe("InvalidInput")
      expect(error.description).toContain("blobs, blocks")
      expect(yield* database.property("leveldb.stats")).toContain("Compactions")
      expect((yield* database.compact("blobs")).namespace).toBe("blobs")
    })))

  it.live("the gauge sampler records LevelDB properties while the database is open", () =>
    Effect.scoped(Effect.gen(function*() {
      const context = yield* Layer.build(
        LevelDatabaseModule.layer({ path: freshPath(), gaugeInterval: "10 millis" }).pipe(Layer.provideMerge(Metrics.layer))
      )
      const registry = context.unsafeMap.get(MetricsRegistry.key) as MetricsRegistry["Type"]
      // No explicit `stats` call: the sampler fiber runs on its own.
      let sampled = false
      for (let i = 0; i < 500 && !sampled; i++) {
        sampled = (yield* registry.snapshot).some((s) => s.name === LevelMetrics.memoryUsageBytes)
        if (!sampled) yield* Effect.sleep("10 millis")
      }
      expect(sampled).toBe(true)
    })))
})

describe("LevelConfig", () => {
  const withEnv = (env: Record<string, string>) => Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))

  it.live("layerConfig reads GRAVITON_LEVEL_* and fills in the defaults", () =>
    Effect.scoped(Effect.gen(function*() {
      const path = freshPath()
      const context = yield* Layer.build(LevelLayers.layerConfig()).pipe(
        withEnv({
          GRAVITON_LEVEL_PATH: path,
          GRAVITON_LEVEL_NAMESPACES: "blobs,meta",
          GRAVITON_LEVEL_CACHE_SIZE: "1048576",
          GRAVITON_LEVEL_COMPRESSION: "false"
        })
      )
      const database = context.unsafeMap.get(LevelDatabase.key) as LevelDatabase["Type"]
      expect(database.path).toBe(path)
      // Graviton's own namespaces always, then the application's (blobs is one of Graviton's already).
      expect(database.namespaces).toEqual([...KvKey.NAMESPACES, "meta"])
      expect(database.options.cacheSize).toBe(1048576)
      expect(database.options.compression).toBe(false)
      expect(database.options.writeBufferSize).toBe(LevelConfig.defaults.writeBufferSize)
      expect(database.options.sync).toBe(false)
      expect(database.namespaceOf("meta/x")).toBe("meta")
    })))

  it.effect("a malformed size in the environment is a ConfigError", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Effect.scoped(Layer.build(LevelLayers.layerConfig())).pipe(
          withEnv({ GRAVITON_LEVEL_PATH: freshPath(), GRAVITON_LEVEL_WRITE_BUFFER_SIZE: "-5" })
        )
      )
      expect(error._tag).not.toBe("MetadataError")
      expect(String(error)).toContain("GRAVITON_LEVEL_WRITE_BUFFER_SIZE")
    }))

  it.effect("invalid namespaces and sizes fail with MetadataError InvalidInput before opening anything", () =>
    Effect.gen(function*() {
      for (
        const [options, words] of [
          [{ namespaces: ["a/b"] }, "contains '/'"],
          [{ namespaces: ["default"] }, "reserved"],
          [{ namespaces: ["with space"] }, "printable ASCII"],
          [{ namespaces: [""] }, "non-empty"],
          [{ cacheSize: 0 }, "cacheSize"],
          [{ writeBufferSize: 1.5 }, "writeBufferSize"]
        ] as const
      ) {
        const error = yield* Effect.flip(Effect.scoped(LevelDatabaseModule.make({ path: freshPath(), ...options })))
        expect(error.reason).toBe("InvalidInput")
        expect(error.description).toContain(words)
      }
      const empty = yield* Effect.flip(Effect.scoped(LevelDatabaseModule.make({ path: "" })))
      expect(empty.reason).toBe("InvalidInput")
    }))
})
