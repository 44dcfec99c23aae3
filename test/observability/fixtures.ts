/**
 * What the observability tests share: `@effect/opentelemetry`'s NodeSdk with
 * an in-memory span exporter (and optionally a metric reader), the recorded
 * spans as trees, and a scan of every attribute for a secret.
 */
import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import { type MetricReader } from "@opentelemetry/sdk-metrics"
import { BatchSpanProcessor, InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"

/**
 * An exporter that keeps every finished span, the layer that installs it as
 * the tracer, and `spans`: what it holds so far, once the processor has
 * flushed. Read the spans inside the layer's scope: closing it shuts the
 * exporter down, which empties it.
 */
export const makeTracing = (metricReader?: MetricReader, options: { readonly batch?: boolean } = {}) => {
  const exporter = new InMemorySpanExporter()
  // Batching, as a deployment does (the benchmarks); the tests export each span as it ends.
  const processor = options.batch === true ? new BatchSpanProcessor(exporter) : new SimpleSpanProcessor(exporter)
  const layer = NodeSdk.layer(() => ({
    resource: { serviceName: "graviton-test" },
    spanProcessor: processor,
    ...(metricReader === undefined ? {} : { metricReader })
  })) as Layer.Layer<never>
  const spans: Effect.Effect<ReadonlyArray<ReadableSpan>> = Effect.promise(() => processor.forceFlush()).pipe(
    Effect.map(() => [...exporter.getFinishedSpans()])
  )
  return { exporter, layer, spans }
}

/** One span with the spans it parents. */
export interface Node {
  readonly name: string
  readonly span: ReadableSpan
  readonly attributes: Readonly<Record<string, unknown>>
  readonly children: Array<Node>
}

const parentId = (span: ReadableSpan): string | undefined =>
  (span as unknown as { readonly parentSpanContext?: { readonly spanId: string } }).parentSpanContext?.spanId ??
    (span as unknown as { readonly parentSpanId?: string }).parentSpanId

/** The recorded spans as trees, children in start order. */
export const trees = (spans: ReadonlyArray<ReadableSpan>): Array<Node> => {
  const nodes = new Map<string, Node>()
  for (const span of spans) {
    nodes.set(span.spanContext().spanId, { name: span.name, span, attributes: span.attributes, children: [] })
  }
  const roots: Array<Node> = []
  const byStart = (a: Node, b: Node) =>
    a.span.startTime[0] - b.span.startTime[0] || a.span.startTime[1] - b.span.startTime[1]
  for (const node of nodes.values()) {
    const parent = parentId(node.span)
    const owner = parent === undefined ? undefined : nodes.get(parent)
    if (owner === undefined) roots.push(node)
    else owner.children.push(node)
  }
  for (const node of nodes.values()) node.children.sort(byStart)
  return roots.sort(byStart)
}

/** The root named `name`. */
export const root = (spans: ReadonlyArray<ReadableSpan>, name: string): Node => {
  const found = trees(spans).find((n) => n.name === name)
  if (found === undefined) throw new Error(`no root span ${name}; roots: ${trees(spans).map((n) => n.name).join(", ")}`)
  return found
}

/** Every node under `node` (itself included), depth first. */
export const descendants = (node: Node): Array<Node> => [node, ...node.children.flatMap(descendants)]

/** The first node named `name` under `node`, at any depth. */
export const find = (node: Node, name: string): Node => {
  const found = descendants(node).find((n) => n.name === name)
  if (found === undefined) throw new Error(`no span ${name} under ${node.name}:\n${render(node)}`)
  return found
}

/** Whether `names` appear in this order down one chain of descendants under `node` (not necessarily adjacent). */
export const hasPath = (node: Node, names: ReadonlyArray<string>): boolean => descendants(node).some((n) => chainFrom(n, names))

const chainFrom = (node: Node, names: ReadonlyArray<string>): boolean =>
  node.name === names[0] &&
  (names.length === 1 || descendants(node).slice(1).some((d) => chainFrom(d, names.slice(1))))

/** The tree as indented names (for failure messages). */
export const render = (node: Node, depth = 0): string =>
  [`${"  ".repeat(depth)}${node.name}`, ...node.children.map((c) => render(c, depth + 1))].join("\n")

/** Every attribute value of every span whose text contains one of `secrets` (empty when none does). */
export const leaks = (spans: ReadonlyArray<ReadableSpan>, secrets: ReadonlyArray<string>): Array<string> => {
  const found: Array<string> = []
  for (const span of spans) {
    const texts = [span.name, ...Object.entries(span.attributes).map(([k, v]) => `${k}=${JSON.stringify(v)}`)]
    for (const event of span.events) texts.push(JSON.stringify(event))
    texts.push(JSON.stringify(span.status))
    for (const text of texts) {
      for (const secret of secrets) if (secret !== "" && text.includes(secret)) found.push(`${span.name}: ${text}`)
    }
  }
  return found
}
