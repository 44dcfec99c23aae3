/**
 * The hand-written Prometheus renderer (src/kit/Prometheus.ts) against the
 * rules of the text exposition format 0.0.4
 * (https://prometheus.io/docs/instrumenting/exposition_formats/), checked
 * line by line, and its output parsed back by an independent parser
 * (parse-prometheus-text-format, a port of the Prometheus Python client's).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import parsePrometheusTextFormat from "parse-prometheus-text-format"
import * as Metrics from "../../src/kit/Metrics.js"
import * as Prometheus from "../../src/kit/Prometheus.js"

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/
/** A sample line: name, optional {labels}, value (a float, NaN, +Inf or -Inf). */
const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/
/** One label pair, the value with its escapes (\\, \", \n) and nothing else escaped. */
const PAIR = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"/g

/** A registry's text with every kind of series, awkward label values and help text. */
const exposition = Effect.gen(function*() {
  const m = yield* Metrics.makeWith({
    help: { "odd-name.total": "help with a \\ backslash\nand a second line", lat: "latency \"quoted\"" },
    boundaries: { lat: [0.1, 1, 10] }
  })
  yield* m.counter("odd-name.total", 3, { path: "C:\\dir \"x\"\nnext", "bad-label": "v", "1st": "w" })
  yield* m.counter("odd-name.total", 2, { path: "other" })
  yield* m.gauge("g", Number.NaN)
  yield* m.gauge("g", -Infinity, { side: "low" })
  yield* m.gauge("g", Infinity, { side: "high" })
  yield* m.histogram("lat", 0.05, { le: "user", op: "get" })
  yield* m.histogram("lat", 5, { le: "user", op: "get" })
  yield* m.histogram("lat", 50, { le: "user", op: "get" })
  yield* m.counter("a_first", 1)
  return yield* m.prometheus
})

describe("Prometheus text format rules", () => {
  it.effect("families: one HELP and one TYPE each, before their samples, samples contiguous; valid names; final line feed", () =>
    Effect.gen(function*() {
      const text = yield* exposition
      expect(text.endsWith("\n")).toBe(true)
      const lines = text.slice(0, -1).split("\n")
      const seen = new Set<string>()
      let current: string | undefined
      let typed = false
      for (const line of lines) {
        const help = /^# HELP (\S+) (.*)$/.exec(line)
        const type = /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/.exec(line)
        if (help !== null || type !== null) {
          const name = (help ?? type)![1]!
          expect(name).toMatch(METRIC_NAME)
          if (name !== current) {
            // A new family: never one seen before (families are not split).
            expect(seen.has(name), line).toBe(false)
            seen.add(name)
            current = name
            typed = false
          }
          if (type !== null) {
            expect(typed, `two TYPE lines for ${name}`).toBe(false)
            typed = true
          } else {
            expect(typed, `HELP after TYPE for ${name}`).toBe(false)
          }
          continue
        }
        const sample = SAMPLE.exec(line)
        expect(sample, line).not.toBeNull()
        const [, name, , labels, value] = sample!
        expect(typed, `sample before TYPE: ${line}`).toBe(true)
        // A histogram's samples carry the family name plus _bucket/_sum/_count.
        expect([current, `${current}_bucket`, `${current}_sum`, `${current}_count`]).toContain(name)
        expect(value).toMatch(/^(NaN|[+-]Inf|-?\d+(\.\d+)?(e[+-]?\d+)?)$/)
        if (labels !== undefined) {
          // The whole label set is pairs separated by commas, each name valid and each value escaped.
          const pairs = [...labels.matchAll(PAIR)]
          expect(pairs.map((p) => p[0]).join(","), line).toBe(labels)
          for (const p of pairs) expect(p[1]).toMatch(LABEL_NAME)
        }
      }
      expect([...seen]).toEqual(["a_first", "g", "lat", "odd_name_total"])
    }))

  it.effect("histograms: cumulative le buckets in order ending at +Inf = _count, then _sum and _count; a user 'le' is renamed", () =>
    Effect.gen(function*() {
      const text = yield* exposition
      const lines = text.split("\n").filter((l) => l.startsWith("lat"))
      expect(lines).toEqual([
        "lat_bucket{le_=\"user\",op=\"get\",le=\"0.1\"} 1",
        "lat_bucket{le_=\"user\",op=\"get\",le=\"1\"} 1",
        "lat_bucket{le_=\"user\",op=\"get\",le=\"10\"} 2",
        "lat_bucket{le_=\"user\",op=\"get\",le=\"+Inf\"} 3",
        "lat_sum{le_=\"user\",op=\"get\"} 55.05",
        "lat_count{le_=\"user\",op=\"get\"} 3"
      ])
    }))

  it.effect("escapes label values (\\\\, \\\", \\n) and help text (\\\\, \\n), and renders NaN and infinities", () =>
    Effect.gen(function*() {
      const text = yield* exposition
      expect(text).toContain("# HELP odd_name_total help with a \\\\ backslash\\nand a second line\n")
      expect(text).toContain("# HELP lat latency \"quoted\"\n")
      expect(text).toContain("odd_name_total{_1st=\"w\",bad_label=\"v\",path=\"C:\\\\dir \\\"x\\\"\\nnext\"} 3\n")
      expect(text).toContain("g NaN\n")
      expect(text).toContain("g{side=\"low\"} -Inf\n")
      expect(text).toContain("g{side=\"high\"} +Inf\n")
    }))

  it.effect("an independent parser reads back every family, label value and number", () =>
    Effect.gen(function*() {
      const parsed = parsePrometheusTextFormat(yield* exposition)
      const family = (name: string) => parsed.find((f) => f.name === name)
      expect(family("a_first")).toMatchObject({ type: "COUNTER", metrics: [{ value: "1" }] })
      const odd = family("odd_name_total")!
      expect(odd.type).toBe("COUNTER")
      expect(odd.help).toBe("help with a \\ backslash\nand a second line")
      expect(odd.metrics.map((m) => [m.labels, m.value])).toEqual([
        [{ "_1st": "w", bad_label: "v", path: "C:\\dir \"x\"\nnext" }, "3"],
        [{ path: "other" }, "2"]
      ])
      const gauges = family("g")!
      expect(gauges.type).toBe("GAUGE")
      expect(gauges.metrics.map((m) => m.value).sort()).toEqual(["+Inf", "-Inf", "NaN"])
      const lat = family("lat")!
      expect(lat.type).toBe("HISTOGRAM")
      expect(lat.help).toBe("latency \"quoted\"")
      // This parser flattens a histogram to its buckets (it keeps neither the labels nor _sum and
      // _count); the line-by-line test above checks those.
      expect(lat.metrics.map((m) => m.buckets)).toEqual([{ "0.1": "1", "1": "1", "10": "2", "+Inf": "3" }])
    }))

  it("Prometheus.render of no samples is empty text, and its content type is the 0.0.4 one", () => {
    expect(Prometheus.render([])).toBe("")
    expect(Prometheus.contentType).toBe("text/plain; version=0.0.4; charset=utf-8")
  })
})
