/**
 * One tracing wrapper per port, applied by each backend to what its `make`
 * returns (as Chaos wraps a store from outside): every method runs in a
 * span `graviton.<Port>.<method>` carrying the backend's name and the
 * call's subject (locator, blob key, KV key). See docs/observability.md.
 *
 * Nothing here computes an attribute unless a tracer listens (Tracing).
 */
import type * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import type * as Sink from "effect/Sink"
import type * as Stream from "effect/Stream"
import type { BlobStore } from "../ports/BlobStore.js"
import type { BlobAssembly } from "../ports/BlobAssembly.js"
import type { KeyValueStore } from "../ports/KeyValueStore.js"
import type { ImmutableObjectStoreShape, MutableObjectStoreShape } from "../ports/ObjectStore.js"
import type { RangeTracker } from "../ports/RangeTracker.js"
import type { ReplicaIndex } from "../ports/ReplicaIndex.js"
import type { UnitOfWork } from "../ports/UnitOfWork.js"
import type { UploadStaging } from "../ports/UploadStaging.js"
import { attr, type Attributes, run, sink, type SpanInfo, stream } from "./Tracing.js"

/** A value as attribute text; a malformed argument (the port then fails with InvalidInput) never throws here. */
export const text = (value: unknown): string => {
  try {
    return String(value)
  } catch {
    return "<invalid>"
  }
}

const rawPort = Symbol.for("graviton/TracingPorts/raw")

/** Remembers the port a wrapper wraps (not enumerable: spreading a wrapper does not copy it). */
const wrapping = <A extends object>(wrapper: A, port: object): A =>
  Object.defineProperty(wrapper, rawPort, { value: port, enumerable: false })

/**
 * The port as its backend built it, without this module's span wrapper (the
 * benchmarks' baseline for the cost of tracing); any other value unchanged.
 */
export const untraced = <A extends object>(port: A): A => ((port as Record<symbol, unknown>)[rawPort] as A | undefined) ?? port

/** Span name of a port method. */
export const spanName = (port: string, method: string): string => `graviton.${port}.${method}`

/** SpanInfo from its parts (no function literal in it: see Tracing.run on keepNames). */
const info = <A>(attributes: () => Attributes, onSuccess?: (a: A) => Attributes | undefined): SpanInfo<A> => ({ attributes, onSuccess })

/**
 * The span helpers of one backend's implementation of one port. With no
 * tracer, a call costs one fiber step and the two closures its arguments
 * make.
 */
const spans = (backend: string, port: string, base: Attributes = {}) => {
  const withBackend = (more?: Attributes): Attributes => ({ [attr.backend]: backend, ...base, ...more })
  const names = new Map<string, string>()
  const nameOf = (method: string): string => {
    let name = names.get(method)
    if (name === undefined) names.set(method, name = spanName(port, method))
    return name
  }
  return {
    effect: <A, E, R>(method: string, self: Effect.Effect<A, E, R>, more?: () => Attributes, onSuccess?: (a: A) => Attributes | undefined) =>
      run(self, nameOf(method), "internal", () => withBackend(more?.()), onSuccess),
    stream: <A, E, R>(method: string, self: Stream.Stream<A, E, R>, more?: () => Attributes) =>
      stream(self, nameOf(method), info(() => withBackend(more?.()))),
    sink: <A, In, L, E, R>(
      method: string,
      self: Sink.Sink<A, In, L, E, R>,
      more?: () => Attributes,
      onSuccess?: (a: A) => Attributes | undefined
    ) => sink(self, nameOf(method), info(() => withBackend(more?.()), onSuccess))
  }
}

const locator = (l: unknown) => () => ({ [attr.locator]: text(l) })

/** The read side of an object store, traced. */
export const immutableObjectStore = (
  backend: string,
  store: ImmutableObjectStoreShape,
  base?: Attributes
): ImmutableObjectStoreShape => {
  const s = spans(backend, "ObjectStore", base)
  return wrapping({
    capabilities: store.capabilities,
    head: (l) => s.effect("head", store.head(l), locator(l)),
    list: (prefix) => s.stream("list", store.list(prefix), () => ({ [attr.prefix]: text(prefix) })),
    get: (l, range) =>
      s.stream("get", store.get(l, range), () => ({
        [attr.locator]: text(l),
        ...(range === undefined ? {} : { "graviton.range.start": range.start, "graviton.range.end": range.end ?? "end" })
      }))
  }, store)
}

/** An object store, traced. */
export const objectStore = (backend: string, store: MutableObjectStoreShape, base?: Attributes): MutableObjectStoreShape => {
  const s = spans(backend, "ObjectStore", base)
  const copying = (from: unknown, to: unknown) => () => ({
    [attr.locator]: text(to),
    "graviton.source": text(from)
  })
  return wrapping({
    ...immutableObjectStore(backend, store, base),
    put: (l, options) => s.sink("put", store.put(l, options), locator(l)),
    write: (l, bytes, options) =>
      s.effect("write", store.write(l, bytes, options), () => ({ [attr.locator]: text(l), [attr.bytes]: bytes?.length })),
    delete: (l) => s.effect("delete", store.delete(l), locator(l)),
    copy: (from, to) => s.effect("copy", store.copy(from, to), copying(from, to)),
    move: (from, to) => s.effect("move", store.move(from, to), copying(from, to))
  }, store)
}

const kvKey = (key: unknown) => () => ({ [attr.kvKey]: text(key) })

/** A KeyValueStore, traced. */
export const keyValueStore = (backend: string, store: KeyValueStore["Type"], base?: Attributes): KeyValueStore["Type"] => {
  const s = spans(backend, "KeyValueStore", base)
  return wrapping({
    get: (key) =>
      s.effect("get", store.get(key), kvKey(key), (found: Option.Option<Uint8Array>) => ({
        "graviton.kv.found": found._tag === "Some"
      })),
    put: (key, value) => s.effect("put", store.put(key, value), () => ({ [attr.kvKey]: text(key), [attr.bytes]: value?.length })),
    delete: (key) => s.effect("delete", store.delete(key), kvKey(key)),
    list: (prefix) => s.stream("list", store.list(prefix), () => ({ [attr.prefix]: text(prefix) })),
    compareAndSet: (key, expected, next) =>
      s.effect("compareAndSet", store.compareAndSet(key, expected, next), kvKey(key), (applied) => ({ "graviton.kv.applied": applied })),
    commit: (checks, writes) =>
      s.effect("commit", store.commit(checks, writes), () => ({
        "graviton.kv.checks": checks?.length,
        "graviton.kv.writes": writes?.length
      }), (applied) => ({ "graviton.kv.applied": applied }))
  }, store)
}

/** A RangeTracker, traced. */
export const rangeTracker = (backend: string, tracker: RangeTracker["Type"], base?: Attributes): RangeTracker["Type"] => {
  const s = spans(backend, "RangeTracker", base)
  const id = (value: unknown) => () => ({ [attr.uploadId]: text(value) })
  return wrapping({
    current: (i) => s.effect("current", tracker.current(i), id(i)),
    merge: (i, span) => s.effect("merge", tracker.merge(i, span), id(i)),
    clear: (i) => s.effect("clear", tracker.clear(i), id(i))
  }, tracker)
}

const blobKey = (key: unknown) => () => ({ [attr.blobKey]: text(key) })

/** A ReplicaIndex, traced. */
export const replicaIndex = (backend: string, index: ReplicaIndex["Type"], base?: Attributes): ReplicaIndex["Type"] => {
  const s = spans(backend, "ReplicaIndex", base)
  const withLocator = (key: unknown, l: unknown) => () => ({ [attr.blobKey]: text(key), [attr.locator]: text(l) })
  return wrapping({
    replicas: (key) => s.effect("replicas", index.replicas(key), blobKey(key)),
    update: (key, locators) => s.effect("update", index.update(key, locators), blobKey(key)),
    add: (key, l) => s.effect("add", index.add(key, l), withLocator(key, l)),
    remove: (key, l) => s.effect("remove", index.remove(key, l), withLocator(key, l)),
    ...(index.list === undefined ? {} : { list: s.stream("list", index.list) })
  }, index)
}

/** A BlobStore, traced; a put's span learns the key and whether it was deduplicated. */
export const blobStore = (backend: string, store: BlobStore["Type"], base?: Attributes): BlobStore["Type"] => {
  const s = spans(backend, "BlobStore", base)
  return wrapping({
    put: (plan) =>
      s.sink(
        "put",
        store.put(plan),
        () => (plan?.expectedKey === undefined ? {} : { "graviton.blob.expected_key": text(plan.expectedKey) }),
        (result) => ({ [attr.blobKey]: text(result.key), [attr.deduplicated]: result.deduplicated })
      ),
    get: (key, range) =>
      s.stream("get", store.get(key, range), () => ({
        [attr.blobKey]: text(key),
        ...(range === undefined ? {} : { "graviton.range.start": range.start, "graviton.range.end": range.end ?? "end" })
      })),
    stat: (key) => s.effect("stat", store.stat(key), blobKey(key)),
    delete: (key) => s.effect("delete", store.delete(key), blobKey(key)),
    list: s.stream("list", store.list)
  }, store)
}

/** A BlobAssembly, traced. */
export const blobAssembly = (backend: string, assembly: BlobAssembly["Type"]): BlobAssembly["Type"] => {
  const s = spans(backend, "BlobAssembly")
  return wrapping({
    stagingPrefix: assembly.stagingPrefix,
    assemble: (parts, plan, known) =>
      s.effect("assemble", assembly.assemble(parts, plan, known), () => ({ "graviton.parts": parts?.length }), (result) => ({
        [attr.blobKey]: text(result.key),
        [attr.deduplicated]: result.deduplicated
      }))
  }, assembly)
}

/** An UploadStaging, traced. */
export const uploadStaging = (backend: string, staging: UploadStaging["Type"]): UploadStaging["Type"] => {
  const s = spans(backend, "UploadStaging", { "graviton.staging": staging.name })
  const id = (value: unknown) => () => ({ [attr.uploadId]: text(value) })
  return wrapping({
    ...staging,
    begin: (i, size) => s.effect("begin", staging.begin(i, size), id(i)),
    writeSegment: (i, state, start, bytes, size) =>
      s.effect("writeSegment", staging.writeSegment(i, state, start, bytes, size), () => ({
        [attr.uploadId]: text(i),
        [attr.offset]: start
      })),
    landed: (i, state) => s.effect("landed", staging.landed(i, state), id(i)),
    complete: (i, state, size, plan, hint, onKey) =>
      s.effect("complete", staging.complete(i, state, size, plan, hint, onKey), () => ({
        [attr.uploadId]: text(i),
        [attr.bytes]: size
      }), (result) => ({ [attr.blobKey]: text(result.key), [attr.deduplicated]: result.deduplicated })),
    abort: (i, state) => s.effect("abort", staging.abort(i, state), id(i))
  }, staging)
}

/** A UnitOfWork, traced (the transaction's own span, e.g. @effect/sql's `sql.transaction`, nests inside). */
export const unitOfWork = (backend: string, unit: UnitOfWork["Type"], base?: Attributes): UnitOfWork["Type"] => {
  const s = spans(backend, "UnitOfWork", base)
  return wrapping({ atomically: (self) => s.effect("atomically", unit.atomically(self)) }, unit)
}
