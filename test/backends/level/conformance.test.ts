/**
 * The port conformance suites on LevelDB, in one temporary directory for
 * this file: the KeyValueStore (with two of the suite's namespaces mapped
 * to sublevels and the third left in the default sublevel, so that listings
 * merge across sublevels), and the runtime's KV-backed RangeTracker and
 * ReplicaIndex over LevelLayers.live.
 */
import { afterAll } from "@effect/vitest"
import * as Layer from "effect/Layer"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as LevelKeyValueStore from "../../../src/backends/level/LevelKeyValueStore.js"
import * as LevelLayers from "../../../src/backends/level/LevelLayers.js"
import * as Metrics from "../../../src/kit/Metrics.js"
import { testKeyValueStore } from "../../../src/testing/KeyValueStore.js"
import { testRangeTracker } from "../../../src/testing/RangeTracker.js"
import { testReplicaIndex } from "../../../src/testing/ReplicaIndex.js"

const root = mkdtempSync(join(tmpdir(), "graviton-level-conformance-"))
afterAll(() => rmSync(root, { recursive: true, force: true }))

testKeyValueStore(
  "level",
  LevelKeyValueStore.layer({ path: join(root, "kv"), namespaces: ["conformance", "conformance-other"] })
)

// The same suite with a MetricsRegistry present, so the metric paths run under every operation too.
testKeyValueStore(
  "level with metrics",
  LevelKeyValueStore.layer({ path: join(root, "kv-metrics"), namespaces: ["conformance"] }).pipe(
    Layer.provide(Metrics.layer)
  )
)

testRangeTracker("kv over level", LevelLayers.live({ path: join(root, "ranges") }))

testReplicaIndex("kv over level", LevelLayers.live({ path: join(root, "replicas") }))
