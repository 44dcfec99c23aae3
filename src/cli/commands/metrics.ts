/**
 * `graviton metrics`: the store's metrics in Prometheus text format: the
 * series accumulated by every earlier CLI run on this store (see
 * metricsState.ts) plus two gauges measured now by listing the store.
 */
import * as Command from "@effect/cli/Command"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { BlobStore } from "../../ports/BlobStore.js"
import { MetricsRegistry } from "../../ports/MetricsRegistry.js"
import * as Globals from "../globals.js"
import * as MetricsState from "../metricsState.js"
import * as Output from "../output.js"
import { withStore } from "../session.js"

/** Gauge: number of blobs stored, measured by `graviton metrics`. */
export const STORED_BLOBS = "graviton_stored_blobs"
/** Gauge: total bytes of the blobs stored (logical sizes, before dedup of blocks). */
export const STORED_BYTES = "graviton_stored_bytes"

/** The `metrics` command. */
export const metrics = Command.make("metrics", { ...Globals.options }, (args) =>
  Effect.gen(function*() {
    const globals = yield* Globals.resolve(args)
    yield* withStore(
      globals,
      Effect.gen(function*() {
        const store = yield* BlobStore
        const registry = yield* MetricsRegistry
        const [count, bytes] = yield* Stream.runFold(
          store.list,
          [0, 0] as readonly [number, number],
          ([n, total], s) => [n + 1, total + s.size] as const
        )
        yield* registry.gauge(STORED_BLOBS, count)
        yield* registry.gauge(STORED_BYTES, bytes)
        const samples = yield* MetricsState.current
        if (globals.json) return yield* Output.json(samples.map((s) => s._tag === "Histogram"
          ? { ...s, buckets: s.buckets.map(([bound, n]) => [bound === Infinity ? "+Inf" : bound, n]) }
          : s))
        process.stdout.write(MetricsState.prometheus(samples))
      })
    )
  })).pipe(
    Command.withDescription("Print the store's metrics (cumulative over CLI runs) in Prometheus text format")
  )
