/**
 * The port conformance suites on LevelDB, in one temporary directory for
 * this file: the KeyValueStore (the suite's namespaces declared, each its
 * own sublevel, so that listings merge across sublevels), and the kit's
 * KV-backed RangeTracker and ReplicaIndex over LevelLayers.live.
 */
import { afterAll } from "@effect/vitest"
import * as Layer from "effect/Layer"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as LevelLayers from "../../../src/backends/level/LevelLayers.js"
import * as Metrics from "../../../src/kit/Metrics.js"
import { NAMESPACES, testKeyValueStore } from "../../../src/testing/KeyValueStore.js"
import { testRangeTracker } from "../../../src/testing/RangeTracker.js"
import { testReplicaIndex } from "../../../src/testing/ReplicaIndex.js"

const root = mkdtempSync(join(tmpdir(), "graviton-level-conformance-"))
afterAll(() => rmSync(root, { recursive: true, force: true }))

testKeyValueStore(
  "level",
  LevelLayers.metadata({ path: join(root, "kv"), namespaces: NAMESPACES })
)

// The same suite with a MetricsRegistry present, so the metric paths run under every operation too.
testKeyValueStore(
  "level with metrics",
  LevelLayers.metadata({ path: join(root, "kv-metrics"), namespaces: NAMESPACES }).pipe(
    Layer.provide(Metrics.layer)
  )
)

testRangeTracker("kv over level", LevelLayers.live({ path: join(root, "ranges") }))

testReplicaIndex("kv over level", LevelLayers.live({ path: join(root, "replicas") }))
