/**
 * Spans for Graviton's calls, on Effect's own tracing (so `@effect/opentelemetry`
 * or any other Effect tracer exports them). The names and attributes are in
 * docs/observability.md; the port wrappers that apply them are in TracingPorts.
 *
 * Cost when nobody listens. Effect's built-in tracer keeps its spans
 * nowhere, yet still builds each one (an object, attribute maps, two clock
 * reads). Every helper here first checks that tracing is enabled and that the
 * installed tracer is not that built-in one; otherwise the effect, stream or
 * sink runs untouched and attributes are never computed (they are passed as
 * thunks for that reason). The check is one fiber-runtime step.
 *
 * Streams and sinks get a span that starts when they start running and ends
 * with them (not when they are built), counting the bytes that went through.
 */
import * as Cause from "effect/Cause"
import * as Channel from "effect/Channel"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as Option from "effect/Option"
import * as Sink from "effect/Sink"
import * as Stream from "effect/Stream"
import * as Tracer from "effect/Tracer"
import { isStorageError } from "../core/Errors.js"

/** Span attributes, computed only when a span is made. */
export type Attributes = Record<string, unknown>

/** Attribute names Graviton sets (OpenTelemetry's where one exists). */
export const attr = {
  backend: "graviton.backend",
  /** success | failure | interrupted */
  outcome: "graviton.outcome",
  /** The failure's reason (NotFound, Unavailable ...), OpenTelemetry's general `error.type`. */
  errorType: "error.type",
  /** Content bytes that went through the call (streamed in or out). */
  bytes: "graviton.bytes",
  locator: "graviton.locator",
  prefix: "graviton.prefix",
  blobKey: "graviton.blob.key",
  kvKey: "graviton.kv.key",
  deduplicated: "graviton.blob.deduplicated",
  uploadId: "graviton.upload.id",
  offset: "graviton.upload.offset",
  target: "graviton.replication.target"
} as const

/** Effect's built-in tracer: spans made through it go nowhere. */
const builtIn: Tracer.Tracer = Effect.runSync(Effect.tracer)

/**
 * Whether a span made on `fiber` now would reach a tracer. The fiber keeps
 * its tracer in a field, so the usual answer (the built-in one: no) costs
 * one comparison; the enabled flag is read only when a tracer is installed.
 */
export const isTracing = (fiber: Fiber.RuntimeFiber<unknown, unknown>): boolean =>
  fiber.currentTracer !== builtIn && fiber.getFiberRef(FiberRef.currentTracerEnabled)

/** Sets outcome and error type from an exit, plus `onSuccess`'s attributes for a value. */
const settle = <A>(
  span: Tracer.Span,
  exit: Exit.Exit<A, unknown>,
  onSuccess: ((a: A) => Attributes | undefined) | undefined
): void => {
  if (Exit.isSuccess(exit)) {
    span.attribute(attr.outcome, "success")
    const more = onSuccess?.(exit.value)
    if (more !== undefined) for (const k in more) span.attribute(k, more[k])
    return
  }
  if (Cause.isInterruptedOnly(exit.cause)) {
    span.attribute(attr.outcome, "interrupted")
    return
  }
  span.attribute(attr.outcome, "failure")
  span.attribute(attr.errorType, errorTypeOf(exit.cause))
}

/** A failure's `error.type`: the storage error's reason, else the error's tag, or "Defect". */
const errorTypeOf = (cause: Cause.Cause<unknown>): string => {
  const failure = Cause.failureOption(cause)
  return Option.isSome(failure)
    ? isStorageError(failure.value) ? failure.value.reason : String((failure.value as { _tag?: unknown })?._tag ?? "Error")
    : "Defect"
}

/** What a span is made with. */
export interface SpanInfo<A = unknown> {
  readonly kind?: Tracer.SpanKind | undefined
  /** Attributes known when the call starts. */
  readonly attributes?: (() => Attributes) | undefined
  /** Attributes of the call's result (a size, whether it was deduplicated ...). */
  readonly onSuccess?: ((a: A) => Attributes | undefined) | undefined
}

const spanOptions = (info: SpanInfo<never>): Tracer.SpanOptions => ({
  kind: info.kind ?? "internal",
  captureStackTrace: false,
  ...(info.attributes === undefined ? {} : { attributes: info.attributes() })
})

/** Runs `self` in a span named `name` (see the module comment for when it is skipped). */
export const effect = <A, E, R>(self: Effect.Effect<A, E, R>, name: string, info: SpanInfo<A> = {}): Effect.Effect<A, E, R> =>
  Effect.withFiberRuntime<A, E, R>((fiber) => isTracing(fiber) ? inSpan(self, name, spanOptions(info), info.onSuccess) : self)

/**
 * The spans made here: a statement a Graviton call runs on its own, outside
 * any transaction, is recorded on the call's span as an event rather than as
 * a child span of its own (see `owner`).
 */
const owners = new WeakSet<Tracer.AnySpan>()

const inSpan = <A, E, R>(
  self: Effect.Effect<A, E, R>,
  name: string,
  options: Tracer.SpanOptions,
  onSuccess: ((a: A) => Attributes | undefined) | undefined
): Effect.Effect<A, E, R> =>
  Effect.useSpan(name, options, (span) => {
    owners.add(span)
    return Effect.onExit(Effect.withParentSpan(self, span), (exit) => Effect.sync(() => settle(span, exit, onSuccess)))
  })

/**
 * `effect` with its parts as arguments, for the per-call wrappers: nothing is
 * built per call but the `attributes` thunk (no options object, and no closure
 * named by a property or a variable, which esbuild's keepNames, as tsx runs
 * the tests and benchmarks, would name with a defineProperty on every call).
 */
export const run = <A, E, R>(
  self: Effect.Effect<A, E, R>,
  name: string,
  kind: Tracer.SpanKind,
  attributes: () => Attributes,
  onSuccess: ((a: A) => Attributes | undefined) | undefined
): Effect.Effect<A, E, R> =>
  Effect.withFiberRuntime<A, E, R>((fiber) =>
    isTracing(fiber) ? inSpan(self, name, { kind, captureStackTrace: false, attributes: attributes() }, onSuccess) : self
  )

/**
 * The Graviton span `fiber` runs in directly (no other span in between): the
 * span a statement run outside any transaction is folded into.
 */
export const owner = (fiber: Fiber.RuntimeFiber<unknown, unknown>): Tracer.Span | undefined => {
  const span = fiber.currentSpan
  return span !== undefined && span._tag === "Span" && owners.has(span) ? span : undefined
}

/** Spans that have taken an event's `common` attributes already (set once, not per event). */
const withCommon = new WeakSet<Tracer.Span>()

/**
 * Runs `self` and records it on `span` as an event named `name` when it ends:
 * `attributes()`, the outcome, the error type of a failure and the duration in
 * milliseconds (an event is a point in time). `span` also takes `common`
 * (attributes every such event shares, such as where the database runs).
 */
export const asEvent = <A, E, R>(
  fiber: Fiber.RuntimeFiber<unknown, unknown>,
  span: Tracer.Span,
  self: Effect.Effect<A, E, R>,
  name: string,
  common: Attributes,
  attributes: () => Attributes
): Effect.Effect<A, E, R> => {
  const clock = Context.get(fiber.currentDefaultServices, Clock.Clock)
  const start = clock.unsafeCurrentTimeNanos()
  return Effect.onExit(self, (exit) =>
    Effect.sync(() => {
      if (span.status._tag === "Ended") return
      const end = clock.unsafeCurrentTimeNanos()
      if (!withCommon.has(span)) {
        withCommon.add(span)
        for (const k in common) span.attribute(k, common[k])
      }
      const recorded = attributes()
      recorded["graviton.duration_ms"] = Number(end - start) / 1e6
      recorded[attr.outcome] = Exit.isSuccess(exit) ? "success" : Cause.isInterruptedOnly(exit.cause) ? "interrupted" : "failure"
      if (Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause)) recorded[attr.errorType] = errorTypeOf(exit.cause)
      span.event(name, end, recorded)
    }))
}

/** `effect` for `pipe`. */
export const withSpan = <A>(name: string, info: SpanInfo<A> = {}) => <E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  effect(self, name, info)

/** A channel with a byte counter, made fresh for each run. */
interface Counted<OutElem, InElem, OutErr, InErr, OutDone, InDone, Env> {
  readonly channel: Channel.Channel<OutElem, InElem, OutErr, InErr, OutDone, InDone, Env>
  readonly bytes: () => number
}

/**
 * A channel run in a span that ends with the channel, recording the bytes it
 * counted just before; `plain` runs untouched when nobody traces.
 */
const channel = <OutElem, InElem, OutErr, InErr, OutDone, InDone, Env>(
  counted: () => Counted<OutElem, InElem, OutErr, InErr, OutDone, InDone, Env>,
  plain: Channel.Channel<OutElem, InElem, OutErr, InErr, OutDone, InDone, Env>,
  name: string,
  info: SpanInfo<OutDone>
): Channel.Channel<OutElem, InElem, OutErr, InErr, OutDone, InDone, Env> =>
  Channel.unwrap(Effect.withFiberRuntime((fiber) => {
    if (!isTracing(fiber)) return Effect.succeed(plain)
    const context = fiber.currentContext
    return Effect.succeed(Channel.acquireUseRelease(
      Effect.map(Effect.makeSpan(name, spanOptions(info)), (span) => {
        owners.add(span)
        return [span, counted()] as const
      }),
      ([span, run]) => Channel.provideContext(run.channel, Context.add(context, Tracer.ParentSpan, span) as Context.Context<Env>),
      ([span, run], exit) =>
        Effect.flatMap(Clock.currentTimeNanos, (now) =>
          Effect.sync(() => {
            if (span.status._tag === "Ended") return
            span.attribute(attr.bytes, run.bytes())
            settle(span, exit, info.onSuccess)
            span.end(now, exit)
          }))
    ))
  }))

/** Bytes of one chunk of stream elements, when they are bytes. */
const sizeOf = (chunk: Chunk.Chunk<unknown>): number => {
  let n = 0
  for (const item of chunk) if (item instanceof Uint8Array) n += item.length
  return n
}

/** Runs `self` in a span from its first pull to its end, counting the bytes it emits. */
export const stream = <A, E, R>(self: Stream.Stream<A, E, R>, name: string, info: SpanInfo = {}): Stream.Stream<A, E, R> =>
  Stream.fromChannel(channel(() => {
    let bytes = 0
    const counting = Stream.mapChunks(self, (chunk) => {
      bytes += sizeOf(chunk)
      return chunk
    })
    return { channel: Stream.toChannel(counting), bytes: () => bytes }
  }, Stream.toChannel(self), name, info as SpanInfo<unknown>))

/** Runs `self` in a span from its start to its result, counting the bytes it takes in. */
export const sink = <A, In, L, E, R>(
  self: Sink.Sink<A, In, L, E, R>,
  name: string,
  info: SpanInfo<A> = {}
): Sink.Sink<A, In, L, E, R> =>
  Sink.fromChannel(channel(() => {
    let bytes = 0
    const counting = Sink.mapInputChunks(self, (chunk: Chunk.Chunk<In>) => {
      bytes += sizeOf(chunk)
      return chunk
    })
    return { channel: Sink.toChannel(counting), bytes: () => bytes }
  }, Sink.toChannel(self), name, info))
