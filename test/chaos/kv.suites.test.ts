/**
 * The KeyValueStore conformance suite, unchanged, a second time: over the
 * in-memory and LevelDB stores behind the chaos layer (a fifth of all calls
 * fail with a transient reason before reaching the store, every call is
 * delayed 0-1 ms), with the retry policy of src/kit/Retry.ts in between.
 */
import { afterAll } from "@effect/vitest"
import * as Duration from "effect/Duration"
import { rmSync } from "node:fs"
import { join } from "node:path"
import * as LevelDatabase from "../../src/backends/level/LevelDatabase.js"
import * as LevelKeyValueStore from "../../src/backends/level/LevelKeyValueStore.js"
import * as MemoryKeyValueStore from "../../src/backends/memory/MemoryKeyValueStore.js"
import * as Layer from "effect/Layer"
import * as Chaos from "../../src/kit/Chaos.js"
import { NAMESPACES, testKeyValueStore } from "../../src/testing/KeyValueStore.js"
import { faultyKv, tempDir } from "./fixtures.js"
import { summarize, trackTests } from "./summary.js"

const state = trackTests()
const root = tempDir("graviton-chaos-kv-")
afterAll(() => rmSync(root, { recursive: true, force: true }))

const options = (seed: number): Chaos.Options => ({ seed, failure: 0.2, latency: { min: 0, max: Duration.millis(1) } })
const memory = Chaos.make(options(11))
const level = Chaos.make(options(12))

testKeyValueStore("memory behind chaos, retried", faultyKv(memory).pipe(Layer.provide(MemoryKeyValueStore.layer)))
testKeyValueStore(
  "level behind chaos, retried",
  faultyKv(level).pipe(
    Layer.provide(LevelKeyValueStore.layer),
    Layer.provide(LevelDatabase.layer({ path: join(root, "kv"), namespaces: NAMESPACES }))
  )
)

summarize("KeyValueStore", state, [
  { fault: "KeyValueStore suite, memory KV: 20% transient failures on every call, 0-1 ms latency", chaos: memory },
  { fault: "KeyValueStore suite, LevelDB KV: 20% transient failures on every call, 0-1 ms latency", chaos: level }
])
