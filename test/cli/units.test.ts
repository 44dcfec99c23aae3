/** The CLI's pure pieces, in process: exit-code mapping, progress rendering, metric accumulation. */
import * as ValidationError from "@effect/cli/ValidationError"
import * as HelpDoc from "@effect/cli/HelpDoc"
import { describe, expect, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as EmbeddedStore from "../../src/stores/EmbeddedStore.js"
import * as BinaryKey from "../../src/core/BinaryKey.js"
import * as BlobLocator from "../../src/core/BlobLocator.js"
import { BlobStore } from "../../src/ports/BlobStore.js"
import { BlobError, MetadataError, ObjectStoreError } from "../../src/core/Errors.js"
import { classify, ExitCode, fail } from "../../src/cli/exitCodes.js"
import * as MetricsState from "../../src/cli/metricsState.js"
import * as Output from "../../src/cli/output.js"
import * as Progress from "../../src/cli/progress.js"
import type { MetricSample } from "../../src/ports/MetricsRegistry.js"

describe("exit codes", () => {
  it("maps each storage reason to its documented code with a one-line message", () => {
    const cases = [
      [new BlobError({ reason: "NotFound", backend: "cas", method: "get", description: "no such blob" }), 3],
      [new BlobError({ reason: "Corrupted", backend: "cas", method: "get", description: "digest mismatch" }), 4],
      [new ObjectStoreError({ reason: "InvalidInput", backend: "fs", method: "put" }), 2],
      [new MetadataError({ reason: "Unavailable", backend: "level", method: "open", description: "locked" }), 5],
      [new ObjectStoreError({ reason: "PermissionDenied", backend: "fs", method: "put" }), 5]
    ] as const
    for (const [error, code] of cases) {
      const c = classify(error)
      expect(c?.code).toBe(code)
      expect(c?.message).not.toContain("\n")
      expect(c?.message).toContain(`${error.backend}.${error.method}`)
    }
    expect(classify(cases[1][0])?.message).toBe("corrupted data: digest mismatch (cas.get)")
  })

  it("a malformed key is bad input (2); a parser error is usage (2) with nothing more to print", () => {
    const invalid = Either.getLeft(BinaryKey.parse("md5:abc:1")).pipe(Option.getOrThrow)
    expect(classify(invalid)).toEqual({ code: ExitCode.Usage, message: `invalid input: ${invalid.message}` })
    const parse = ValidationError.invalidValue(HelpDoc.p("bad option"))
    expect(classify(parse)).toEqual({ code: ExitCode.Usage, message: undefined })
    expect(classify(fail(ExitCode.NotFound, "gone"))).toEqual({ code: 3, message: "gone" })
  })

  it("anything else is not an expected failure (reported as a defect)", () => {
    expect(classify(new Error("boom"))).toBeUndefined()
    expect(classify("text")).toBeUndefined()
  })
})

describe("progress", () => {
  it("is shown only on a terminal, for large or unknown-size transfers", () => {
    expect(Progress.shouldShow(Option.some(100 * 1024 * 1024), true)).toBe(true)
    expect(Progress.shouldShow(Option.none(), true)).toBe(true)
    expect(Progress.shouldShow(Option.some(Progress.THRESHOLD_BYTES), true)).toBe(false)
    expect(Progress.shouldShow(Option.some(100 * 1024 * 1024), false)).toBe(false)
  })

  it("renders bytes, percentage and rate", () => {
    const line = Progress.render("put", 512 * 1024 * 1024, Option.some(1024 * 1024 * 1024), 2)
    expect(line).toContain("50%")
    expect(line).toContain("512.0 MiB / 1.0 GiB")
    // Rates in the units of sizes (MiB/s with MiB), issue #16.
    expect(line).toContain("256.0 MiB/s")
    expect(Progress.render("put", 3 * 1024 * 1024, Option.none(), 1)).toBe("put 3.0 MiB  3.0 MiB/s")
    expect(Output.formatRate(500, 1)).toBe("500.0 B/s")
  })

  it.scoped("counts the bytes of a tracked stream without changing it", () =>
    Effect.gen(function*() {
      const progress = yield* Progress.make("test", Option.some(10))
      const chunks = yield* Stream.runCollect(
        progress.track(Stream.make(new Uint8Array(3), new Uint8Array(7)))
      )
      expect(Array.from(chunks, (c) => c.length)).toEqual([3, 7])
      expect(progress.bytes()).toBe(10)
    }))

  it("formats sizes", () => {
    expect(Output.formatBytes(0)).toBe("0 B")
    expect(Output.formatBytes(1023)).toBe("1023 B")
    expect(Output.formatBytes(1536)).toBe("1.5 KiB")
    expect(Output.formatBytes(5 * 1024 ** 3)).toBe("5.0 GiB")
  })
})

describe("accumulated metrics", () => {
  const counter = (value: number, tags = { backend: "cas" }): MetricSample => ({
    _tag: "Counter",
    name: "graviton_bytes_ingested",
    tags,
    value
  })
  const histogram = (counts: [number, number], sum: number): MetricSample => ({
    _tag: "Histogram",
    name: "graviton_upload_duration_seconds",
    tags: {},
    buckets: [[1, counts[0]], [Infinity, counts[1]]],
    count: counts[1],
    sum
  })

  it("sums counters and histograms per series, replaces gauges, and survives encoding", () => {
    const gauge = (value: number): MetricSample => ({ _tag: "Gauge", name: "g", tags: {}, value })
    const merged = MetricsState.merge(
      [counter(10), counter(1, { backend: "other" }), histogram([1, 2], 3), gauge(5)],
      [counter(5), histogram([0, 1], 10), gauge(7)]
    )
    const find = (name: string, backend?: string) =>
      merged.find((s) => s.name === name && (backend === undefined || s.tags.backend === backend))
    expect(find("graviton_bytes_ingested", "cas")).toMatchObject({ value: 15 })
    expect(find("graviton_bytes_ingested", "other")).toMatchObject({ value: 1 })
    expect(find("graviton_upload_duration_seconds")).toMatchObject({ buckets: [[1, 1], [Infinity, 3]], count: 3, sum: 13 })
    expect(find("g")).toMatchObject({ value: 7 })

    const text = MetricsState.prometheus(merged)
    expect(text).toContain('graviton_bytes_ingested{backend="cas"} 15')
    expect(text).toContain('graviton_upload_duration_seconds_bucket{le="+Inf"} 3')
  })

  it("decodes what it stored (Infinity included) and treats garbage as no history", () => {
    const samples = [counter(3), histogram([2, 4], 1.5)]
    const roundTrip = MetricsState.decode(MetricsState.encode(samples))
    expect(roundTrip).toEqual(samples)
    expect(MetricsState.decode(new TextEncoder().encode("not json"))).toEqual([])
    expect(MetricsState.decode(new TextEncoder().encode('{"a":1}'))).toEqual([])
  })
})

describe("EmbeddedStore.layerConfig", () => {
  it.scoped("reads GRAVITON_HOME and GRAVITON_LAYOUT, and stores under <home>/blobs and <home>/meta", () =>
    Effect.gen(function*() {
      const home = fs.mkdtempSync(path.join(os.tmpdir(), "graviton-embedded-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(home, { recursive: true, force: true })))
      const provider = ConfigProvider.fromMap(new Map([["GRAVITON_HOME", home], ["GRAVITON_LAYOUT", "chunked"]]))
      const bytes = new Uint8Array(300_000).map((_, i) => (i * 7919) % 251)
      const stat = yield* Effect.gen(function*() {
        const store = yield* BlobStore
        const result = yield* Stream.run(Stream.make(bytes), store.put())
        expect(result.deduplicated).toBe(false)
        return yield* store.stat(result.key)
      }).pipe(Effect.provide(EmbeddedStore.layerConfig().pipe(Layer.provide(Layer.setConfigProvider(provider)))))
      expect(Option.map(stat, (s) => s.size)).toEqual(Option.some(bytes.length))
      // Chunked blobs are reported at their manifest, not at one object.
      expect(Option.flatMap(stat, (s) => s.locator).pipe(Option.map(BlobLocator.render), Option.getOrThrow)).toMatch(/^kv:\/\//)
      expect(fs.readdirSync(path.join(home, "meta")).length).toBeGreaterThan(0)
      expect(fs.readdirSync(path.join(home, "blobs")).length).toBeGreaterThan(0)
    }))

  it("rejects an unknown layout word", () => {
    const provider = ConfigProvider.fromMap(new Map([["GRAVITON_LAYOUT", "striped"]]))
    const exit = Effect.runSyncExit(Effect.withConfigProvider(EmbeddedStore.config, provider))
    expect(exit._tag).toBe("Failure")
  })
})
