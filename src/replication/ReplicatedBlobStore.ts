/**
 * ReplicatedBlobStore: a BlobStore wrapping a primary store whose reads fall
 * back to the replicas that Replicator recorded in the primary's ReplicaIndex.
 *
 * `get` reads the primary. When the primary fails before emitting any byte
 * with NotFound, Corrupted or a transient reason (Unavailable, Throttled,
 * Timeout), the index's replica entries (`replica://<target>/<key>`, see
 * Replicator) of the configured targets are tried in index order; the first
 * that delivers wins. Other reasons (InvalidInput, PermissionDenied ...) are
 * the caller's or the configuration's problem and are not masked.
 *
 * Late corruption. A full read is verified as it flows, so a copy whose bytes
 * do not match fails with Corrupted only after its last byte has been
 * emitted, and a stream cannot take bytes back. With `verifyFirst` (the
 * default) a full read of a key that has replica entries first reads the
 * copy it is about to serve to the end, discarding the bytes, and only then
 * streams it: a corrupted primary (or replica) is then caught before any
 * byte and the next copy is served. The price is a second read of the copy
 * served; blobs without replicas are read once, as they have no fallback
 * anyway. With `verifyFirst: false` the copy is streamed at once, and a late
 * Corrupted fails the stream (after removing the bad copy's index entry):
 * the caller retries after `Replicator.repair`. A copy that changes between
 * the check and the second read can still fail late. Ranged reads cannot be
 * checked against the key's digest: they are never pre-read, and fall back
 * only on failures before the first byte (e.g. the primary's object is gone).
 *
 * Index truthfulness. A copy found missing or corrupted loses its index
 * entry: a replica its `replica://` entry; the primary (on Corrupted, which
 * is also what CasBlobStore reports for a record whose object is gone) its
 * own entry, the locator its `stat` reports, until `repair` puts it back. A
 * transient failure removes nothing. Bookkeeping is best effort: an index
 * failure never fails a read that a replica could serve. The index has no
 * compare-and-set per entry, so a read that finds the primary corrupted
 * while a `repair` of the same key is restoring it can remove the restored
 * copy's entry (same content address); the next `repair` puts it back.
 *
 * `stat`, `list`, `put` and `delete` delegate to the primary. So `stat` of a
 * blob whose record is alive but whose object is gone still answers Some
 * (run `repair`), and `delete` removes only the primary copy: the replicas
 * and their entries stay (they are true), and `get` keeps serving the blob
 * from them, the edge-eviction pattern of docs/replication.md.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import type * as BinaryKey from "../core/BinaryKey.js"
import type * as BlobLocator from "../core/BlobLocator.js"
import { BlobError, isTransientReason } from "../core/Errors.js"
import * as RangeSet from "../core/RangeSet.js"
import { BlobStore } from "../ports/BlobStore.js"
import { ReplicaIndex } from "../ports/ReplicaIndex.js"
import * as Instrument from "../kit/Instrument.js"
import * as MetricKeys from "../kit/MetricKeys.js"
import * as TracingPorts from "../kit/TracingPorts.js"
import * as Replicator from "./Replicator.js"

/** Backend name in errors and metrics of this store. */
export const BACKEND = "replicated"

/** Reads served by a copy after the primary failed, by target and outcome (served | failed). Counter: backend, target, outcome. */
export const fallbackReadsTotal = MetricKeys.fallbackReadsTotal

/** Options of a ReplicatedBlobStore. */
export interface Options {
  /** The stores replicas are read from, by the names recorded in the index. */
  readonly targets: ReadonlyArray<Replicator.Target>
  /** Read a full copy to the end before serving it, when a fallback exists (default true; see the module comment). */
  readonly verifyFirst?: boolean | undefined
  /** Told when a replica has served a read the primary failed (after its last byte), e.g. to say so to a user. */
  readonly onFallback?: ((served: { readonly key: BinaryKey.BinaryKey; readonly target: string; readonly primaryError: BlobError }) => Effect.Effect<void>) | undefined
}

/** True for primary failures a replica may cure. */
const fallsBack = (e: BlobError): boolean =>
  e.reason === "NotFound" || e.reason === "Corrupted" || isTransientReason(e.reason)

/**
 * Runs `stream`; a failure before its first byte goes to `early` (whose
 * stream replaces it), a failure after goes through `late` and is re-raised.
 */
const guardFirstByte = (
  stream: Stream.Stream<Uint8Array, BlobError>,
  early: (e: BlobError) => Stream.Stream<Uint8Array, BlobError>,
  late: (e: BlobError) => Effect.Effect<void>
): Stream.Stream<Uint8Array, BlobError> =>
  Stream.suspend(() => {
    let emitted = false
    return stream.pipe(
      Stream.mapChunks((chunks) => {
        if (!emitted) for (const c of chunks) if (c.length > 0) emitted = true
        return chunks
      }),
      Stream.catchAll((e) => (emitted ? Stream.fromEffect(Effect.zipRight(late(e), Effect.fail(e))) : early(e)))
    )
  })

/** Reads `stream` to the end, then streams `again()` (a second read of the same copy). */
const checkedFirst = (
  stream: Stream.Stream<Uint8Array, BlobError>,
  again: () => Stream.Stream<Uint8Array, BlobError>
): Stream.Stream<Uint8Array, BlobError> => Stream.unwrap(Effect.as(Stream.runDrain(stream), Stream.suspend(again)))

/**
 * Wraps the BlobStore in the context (the primary) with reads that fall back
 * to replicas listed in the ReplicaIndex in the context. Invalid targets fail
 * with InvalidInput.
 */
export const make = (options: Options): Effect.Effect<BlobStore["Type"], BlobError, BlobStore | ReplicaIndex> =>
  Effect.gen(function*() {
    const primary = yield* BlobStore
    const index = yield* ReplicaIndex
    const instrument = yield* Instrument.make(BACKEND, "BlobStore")
    const targets = yield* Replicator.checkTargets("make", options?.targets)
    const byName = new Map(targets.map((t) => [t.name, t]))
    const verifyFirst = options.verifyFirst ?? true

    /** Index bookkeeping never fails a read. */
    const forget = (key: BinaryKey.BinaryKey, locator: BlobLocator.BlobLocator) =>
      Effect.ignore(index.remove(key, locator))

    const forgetPrimary = (key: BinaryKey.BinaryKey) =>
      Effect.ignore(Effect.flatMap(primary.stat(key), (stat) =>
        Option.match(Option.flatMap(stat, Replicator.primaryEntry), {
          onNone: () => Effect.void,
          onSome: (l) => Effect.asVoid(index.remove(key, l))
        })))

    /** Replica entries of configured targets, in index order; none when the index cannot be read. */
    const sources = (key: BinaryKey.BinaryKey) =>
      Effect.map(
        Effect.orElseSucceed(index.replicas(key), () => []),
        (entries) =>
          entries.flatMap((l) =>
            Option.match(Option.flatMap(Replicator.targetOf(l, key), (n) => Option.fromNullable(byName.get(n))), {
              onNone: () => [],
              onSome: (t) => [[t, l] as const]
            })
          )
      )

    const exhausted = (key: BinaryKey.BinaryKey, primaryError: BlobError, tried: ReadonlyArray<string>) =>
      tried.length === 0
        ? primaryError
        : new BlobError({
          reason: primaryError.reason,
          backend: BACKEND,
          method: "get",
          description: `${primaryError.message}; no replica of ${key} could serve it either (tried ${tried.join(", ")})`,
          cause: primaryError
        })

    const get = (key: BinaryKey.BinaryKey, range?: RangeSet.ByteRange): Stream.Stream<Uint8Array, BlobError> =>
      Stream.unwrap(Effect.gen(function*() {
        const k = yield* Replicator.checkKey("get", key)
        const bounds = RangeSet.resolveRange(range, k.size)
        // A bad range is the primary's to report, with its own message.
        const whole = Either.isRight(bounds) && bounds.right[0] === 0 && bounds.right[1] === k.size
        const read = (store: BlobStore["Type"]) => (whole ? store.get(k) : store.get(k, range))

        /** Serves the replicas from `rest` in turn; the primary's error when none can. */
        const fromReplicas = (
          rest: ReadonlyArray<readonly [Replicator.Target, BlobLocator.BlobLocator]>,
          primaryError: BlobError,
          tried: ReadonlyArray<string>
        ): Stream.Stream<Uint8Array, BlobError> => {
          if (rest.length === 0) return Stream.fail(exhausted(k, primaryError, tried))
          const [[target, locator], ...others] = rest as [readonly [Replicator.Target, BlobLocator.BlobLocator], ...Array<readonly [Replicator.Target, BlobLocator.BlobLocator]>]
          const bytes = whole && verifyFirst ? checkedFirst(read(target.store), () => read(target.store)) : read(target.store)
          const failed = (e: BlobError) =>
            Effect.zipRight(
              instrument.counter(fallbackReadsTotal, 1, { target: target.name, outcome: "failed" }),
              Replicator.isBadCopy(e) ? forget(k, locator) : Effect.void
            )
          return guardFirstByte(
            Stream.concat(
              bytes,
              Stream.execute(Effect.zipRight(
                instrument.counter(fallbackReadsTotal, 1, { target: target.name, outcome: "served" }),
                options.onFallback?.({ key: k, target: target.name, primaryError }) ?? Effect.void
              ))
            ),
            (e) => Stream.unwrap(Effect.as(failed(e), fromReplicas(others, primaryError, [...tried, target.name]))),
            failed
          )
        }

        const fallback = (e: BlobError) =>
          Stream.unwrap(Effect.gen(function*() {
            if (e.reason === "Corrupted") yield* forgetPrimary(k)
            return fromReplicas(yield* sources(k), e, [])
          }))

        const lateOnPrimary = (e: BlobError) => (e.reason === "Corrupted" ? forgetPrimary(k) : Effect.void)

        if (!(whole && verifyFirst)) return guardFirstByte(read(primary), (e) => (fallsBack(e) ? fallback(e) : Stream.fail(e)), lateOnPrimary)
        // Pre-reading only pays when there is somewhere else to go.
        const known = yield* sources(k)
        const bytes = known.length === 0 ? read(primary) : checkedFirst(read(primary), () => read(primary))
        return guardFirstByte(bytes, (e) => (fallsBack(e) ? fallback(e) : Stream.fail(e)), lateOnPrimary)
      })).pipe(instrument.observeStream("get"))

    return TracingPorts.blobStore(BACKEND, BlobStore.of({
      put: (plan) => primary.put(plan),
      get,
      stat: (key) => primary.stat(key),
      delete: (key) => primary.delete(key),
      list: primary.list
    }))
  })

/**
 * A BlobStore over the primary BlobStore and ReplicaIndex in the context,
 * reading from replicas when the primary copy fails (see the module comment).
 */
export const layer = (options: Options): Layer.Layer<BlobStore, BlobError, BlobStore | ReplicaIndex> =>
  Layer.effect(BlobStore, make(options))
