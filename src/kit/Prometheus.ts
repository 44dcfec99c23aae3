/**
 * Rendering of metric samples in the Prometheus text exposition format,
 * version 0.0.4: https://prometheus.io/docs/instrumenting/exposition_formats/
 */
import type { MetricSample, MetricTags } from "../ports/MetricsRegistry.js"

/** The Content-Type a scrape endpoint should answer with. */
export const contentType = "text/plain; version=0.0.4; charset=utf-8"

/** Renders a sample value or bound the way Prometheus parses it (`NaN`, `+Inf`, `-Inf`). */
export const formatNumber = (n: number): string =>
  Number.isNaN(n) ? "NaN" : n === Infinity ? "+Inf" : n === -Infinity ? "-Inf" : String(n)

/** Escapes a label value: backslash, double quote and line feed. */
export const escapeLabelValue = (value: string): string =>
  value.replace(/\\/g, "\\\\").replace(/"/g, "\\\"").replace(/\n/g, "\\n")

/** Escapes `# HELP` text: backslash and line feed (quotes are legal there). */
export const escapeHelp = (text: string): string => text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")

/** Makes a metric name match `[a-zA-Z_:][a-zA-Z0-9_:]*` by replacing other characters with `_`. */
export const sanitizeMetricName = (name: string): string => {
  const s = name.replace(/[^a-zA-Z0-9_:]/g, "_")
  return s === "" || /^[0-9]/.test(s) ? `_${s}` : s
}

/** Makes a label name match `[a-zA-Z_][a-zA-Z0-9_]*` by replacing other characters with `_`. */
export const sanitizeLabelName = (name: string): string => {
  const s = name.replace(/[^a-zA-Z0-9_]/g, "_")
  return s === "" || /^[0-9]/.test(s) ? `_${s}` : s
}

const TYPE: Record<MetricSample["_tag"], string> = { Counter: "counter", Gauge: "gauge", Histogram: "histogram" }

const labelPairs = (tags: MetricTags, isHistogram: boolean): Array<string> =>
  Object.keys(tags).sort().map((key) => {
    // `le` belongs to the bucket label of a histogram; a user tag of that name would collide.
    const name = sanitizeLabelName(key)
    return `${isHistogram && name === "le" ? "le_" : name}="${escapeLabelValue(tags[key]!)}"`
  })

const braces = (pairs: ReadonlyArray<string>): string => (pairs.length === 0 ? "" : `{${pairs.join(",")}}`)

/**
 * Renders samples as exposition text: for each name a `# HELP` line (when
 * `help` knows the name) and a `# TYPE` line, then its series. Samples of one
 * name are grouped even when not adjacent; names keep their first appearance
 * order, so pass a sorted snapshot for a stable output. Empty input gives "".
 */
export const render = (
  samples: ReadonlyArray<MetricSample>,
  help: (name: string) => string | undefined = () => undefined
): string => {
  const groups = new Map<string, Array<MetricSample>>()
  for (const sample of samples) {
    const group = groups.get(sample.name)
    if (group === undefined) groups.set(sample.name, [sample])
    else group.push(sample)
  }
  const lines: Array<string> = []
  for (const [name, group] of groups) {
    const exported = sanitizeMetricName(name)
    const text = help(name)
    if (text !== undefined) lines.push(`# HELP ${exported} ${escapeHelp(text)}`)
    lines.push(`# TYPE ${exported} ${TYPE[group[0]!._tag]}`)
    for (const sample of group) {
      if (sample._tag === "Histogram") {
        const pairs = labelPairs(sample.tags, true)
        let sawInf = false
        for (const [bound, count] of sample.buckets) {
          if (bound === Infinity) sawInf = true
          lines.push(`${exported}_bucket${braces([...pairs, `le="${formatNumber(bound)}"`])} ${formatNumber(count)}`)
        }
        // The format requires a +Inf bucket; it always equals the count.
        if (!sawInf) lines.push(`${exported}_bucket${braces([...pairs, `le="+Inf"`])} ${formatNumber(sample.count)}`)
        lines.push(`${exported}_sum${braces(pairs)} ${formatNumber(sample.sum)}`)
        lines.push(`${exported}_count${braces(pairs)} ${formatNumber(sample.count)}`)
      } else {
        lines.push(`${exported}${braces(labelPairs(sample.tags, false))} ${formatNumber(sample.value)}`)
      }
    }
  }
  return lines.length === 0 ? "" : `${lines.join("\n")}\n`
}
