/**
 * Replicator: copies blobs from a primary BlobStore to other stores
 * (targets), records every copy in the primary's ReplicaIndex, and repairs
 * the primary from those copies.
 *
 * Targets. A target is another BlobStore with a name, `{ name, store }`.
 * Locators reported by different stores can look alike (two embedded stores
 * both answer `file://blobs/...`), so the index records target-qualified
 * locators, `replica://<target name>/<algo>:<hex>:<size>`. A target name is
 * therefore a valid locator bucket (non-empty, at most 63 UTF-8 bytes, no
 * '/', no control characters, not '.' or '..'); anything else, or two targets
 * with the same name, is InvalidInput. The primary's own entry is the one
 * CasBlobStore records when it stores a blob (its object's locator; a chunked
 * blob has none).
 *
 * Copy. `replicate(key, targets)` streams `primary.get(key)` into
 * `target.put({ expectedKey: key })`: the primary re-hashes what it reads,
 * the target hashes what it stores, so a corrupted primary fails the copy
 * and the target keeps nothing; no blob is ever buffered. A target whose
 * `stat` already shows the key gets no bytes (its put would deduplicate
 * anyway). Each successful copy adds the target's locator to the index.
 * Each target is copied independently (all of one call at once) and
 * retried on transient reasons only, with the shared retry policy; the
 * outcome of every target is returned, a failure of one does not stop the
 * others. Counted in `graviton_replications_total{target,outcome}`.
 *
 * Background. `background(options)` subscribes to BackendEvents and
 * replicates each `BlobStored` with `deduplicated: false` to the configured
 * targets, `concurrency` blobs at a time. Events a lagging subscriber loses
 * on the sliding bus (see Events) are not replicated: `replicate` them, or
 * `repair` them later. Targets should not publish on the primary's bus
 * (their own BlobStored events would be seen as new blobs; harmless, since
 * the second round finds them present, but wasted work).
 *
 * Repair. `repair(key)` reads the primary copy whole (the read verifies).
 * Healthy: nothing is copied, but the primary's index entry is put back if
 * it was missing. Missing or Corrupted: among the index's replica entries
 * of configured targets, those whose target still has the key are the
 * sources; at least one must exist before anything is touched. The primary's
 * broken blob is then deleted (a CasBlobStore put of a key whose record is
 * Live deduplicates, so overwriting is not possible through the port) and
 * a source is streamed into `primary.put({ expectedKey })`; a source that
 * turns out missing or corrupted loses its index entry and the next one is
 * tried. The restored primary is read whole once more: a chunked blob whose
 * damaged block is shared with another blob cannot be restored by a put
 * (the block is deduplicated), and repair then fails with Corrupted instead
 * of claiming success. While a repair runs the primary briefly has no
 * record; reads through ReplicatedBlobStore fall back to a replica then.
 * `repair()` without a key checks every blob the primary lists, `concurrency`
 * at a time; a key the primary no longer lists (deleted, or lost with its
 * record) is restored only when named.
 *
 * Index truthfulness: a copy is recorded only after the target confirmed it;
 * a replica found missing or corrupted (here or in ReplicatedBlobStore) is
 * removed; a repaired primary's entry is back (CasBlobStore adds it on put).
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Sink from "effect/Sink"
import * as Stream from "effect/Stream"
import * as BinaryKey from "../core/BinaryKey.js"
import * as BlobLocator from "../core/BlobLocator.js"
import { BlobError, type MetadataError, toPortError } from "../core/Errors.js"
import type { BlobStat, BlobWriteResult } from "../core/Models.js"
import { BackendEvents } from "../ports/BackendEvents.js"
import { BlobStore } from "../ports/BlobStore.js"
import { ReplicaIndex } from "../ports/ReplicaIndex.js"
import { MANIFEST_SCHEME } from "../blobs/CasBlobStore.js"
import * as Instrument from "../kit/Instrument.js"
import * as MetricKeys from "../kit/MetricKeys.js"
import * as Tracing from "../kit/Tracing.js"
import * as TracingPorts from "../kit/TracingPorts.js"
import type * as Retry from "../kit/Retry.js"

/** Backend name in errors, events and metrics of the replicator. */
export const BACKEND = "replicator"

/** Scheme of the target-qualified locators recorded in the ReplicaIndex. */
export const SCHEME = "replica"

/** Copies by target and outcome (copied | present | failed). Counter: backend, target, outcome. */
export const replicationsTotal = MetricKeys.replicationsTotal
/** Repairs by outcome (healthy | restored | failed). Counter: backend, outcome. */
export const repairsTotal = MetricKeys.repairsTotal

/** Blobs replicated or repaired at once by default. */
export const defaultConcurrency = 4

/** A store blobs are copied to, and read back from when the primary fails. */
export interface Target {
  /** Names the target in the ReplicaIndex (`replica://<name>/<key>`): a valid locator bucket. */
  readonly name: string
  readonly store: BlobStore["Type"]
}

/** What happened to one target in a `replicate` call. */
export type CopyOutcome =
  | {
    readonly _tag: "Copied"
    readonly target: string
    /** The entry recorded in the ReplicaIndex. */
    readonly locator: BlobLocator.BlobLocator
    /** True when the target already held the key, so no new bytes were stored there. */
    readonly deduplicated: boolean
  }
  | { readonly _tag: "Failed"; readonly target: string; readonly error: BlobError }

/** A key `repair` restored, and the target it was restored from. */
export interface Restored {
  readonly key: BinaryKey.BinaryKey
  readonly from: string
}

/** A key `repair` could not check or restore. */
export interface RepairFailure {
  readonly key: BinaryKey.BinaryKey
  readonly error: BlobError
}

/** Outcome of a `repair`: keys checked, how many were healthy, what was restored, what failed. */
export interface RepairReport {
  readonly checked: number
  readonly healthy: number
  readonly restored: ReadonlyArray<Restored>
  readonly failed: ReadonlyArray<RepairFailure>
}

/** Options of a Replicator. */
export interface Options {
  /** Targets of the background mode and sources of `repair` (default none). */
  readonly targets?: ReadonlyArray<Target> | undefined
  /** Blobs replicated or checked at once (default `defaultConcurrency`). */
  readonly concurrency?: number | undefined
  /** Retry schedule for transient failures of a copy (default Retry.defaultSchedule). */
  readonly schedule?: Retry.RetrySchedule | undefined
}

/** The replication service over one primary store and its ReplicaIndex. */
export class Replicator extends Context.Tag("graviton/Replicator")<Replicator, {
  /** Copies `key` from the primary to each target (default: the configured ones), verified, recording each copy. */
  readonly replicate: (
    key: BinaryKey.BinaryKey,
    targets?: ReadonlyArray<Target>
  ) => Effect.Effect<ReadonlyArray<CopyOutcome>, BlobError>
  /** Checks the primary copy of `key` (default: every listed blob) and restores it from a replica when missing or corrupted. */
  readonly repair: (key?: BinaryKey.BinaryKey) => Effect.Effect<RepairReport, BlobError>
  /** The configured targets. */
  readonly targets: ReadonlyArray<Target>
}>() {}

const fail = (reason: BlobError["reason"], method: string, description: string) =>
  new BlobError({ reason, backend: BACKEND, method, description })

/** The index's errors keep their reason. */
const fromIndexError = (method: string) => (e: MetadataError): BlobError =>
  new BlobError({ reason: e.reason, backend: BACKEND, method, description: e.message, cause: e })

/** Re-validates a key (it may have been built from parts without checks). */
export const checkKey = (method: string, key: BinaryKey.BinaryKey): Either.Either<BinaryKey.BinaryKey, BlobError> =>
  typeof key !== "object" || key === null
    ? Either.left(fail("InvalidInput", method, "the key is missing"))
    : Either.mapLeft(BinaryKey.make(key.algorithm, key.digest, key.size), toPortError(BlobError, BACKEND, method))

/** The index entry of `key` on target `name`: `replica://<name>/<key>`; an invalid name is InvalidInput. */
export const replicaLocator = (
  name: string,
  key: BinaryKey.BinaryKey,
  method = "replicate"
): Either.Either<BlobLocator.BlobLocator, BlobError> =>
  typeof name !== "string"
    ? Either.left(fail("InvalidInput", method, "a target name must be a string"))
    : Either.mapLeft(
      BlobLocator.make(SCHEME, name, BinaryKey.render(key)),
      (e) => fail("InvalidInput", method, `invalid target name ${JSON.stringify(name)}: ${e.description}`)
    )

/** The target name of an index entry written by the replicator; None for any other locator (e.g. the primary's). */
export const targetOf = (locator: BlobLocator.BlobLocator, key: BinaryKey.BinaryKey): Option.Option<string> =>
  locator.scheme === SCHEME && locator.path === BinaryKey.render(key) ? Option.some(locator.bucket) : Option.none()

/** Checks a list of targets: an array of `{ name, store }` with valid, distinct names. */
export const checkTargets = (
  method: string,
  targets: ReadonlyArray<Target>
): Either.Either<ReadonlyArray<Target>, BlobError> => {
  if (!Array.isArray(targets)) return Either.left(fail("InvalidInput", method, "targets must be an array"))
  const seen = new Set<string>()
  // Any well-formed key will do: only the name is being checked.
  const probe = new BinaryKey.BinaryKey({ algorithm: "sha256", digest: "0".repeat(64), size: 0 }, true)
  for (const t of targets as ReadonlyArray<Target | undefined>) {
    if (typeof t !== "object" || t === null || typeof t.store !== "object" || t.store === null) {
      return Either.left(fail("InvalidInput", method, "each target must be { name, store }"))
    }
    const checked = replicaLocator(t.name, probe, method)
    if (Either.isLeft(checked)) return Either.left(checked.left)
    if (seen.has(t.name)) return Either.left(fail("InvalidInput", method, `two targets are named ${JSON.stringify(t.name)}`))
    seen.add(t.name)
  }
  return Either.right(targets)
}

/** A side of a copy: errors say which store failed, reading or writing. */
const sideError = (method: "read" | "write", name: string) => (e: BlobError): BlobError =>
  new BlobError({
    reason: e.reason,
    backend: BACKEND,
    method,
    description: `${method === "read" ? "reading from" : "writing to"} ${name}: ${e.message}`,
    cause: e
  })

/** Streams `key` from one store into another, verified on both sides; never buffers the blob. */
export const copy = (
  key: BinaryKey.BinaryKey,
  from: { readonly name: string; readonly store: BlobStore["Type"] },
  to: { readonly name: string; readonly store: BlobStore["Type"] }
): Effect.Effect<BlobWriteResult, BlobError> =>
  Stream.run(
    Stream.mapError(from.store.get(key), sideError("read", from.name)),
    Sink.mapError(to.store.put({ expectedKey: key }), sideError("write", to.name))
  )

/** Reasons that mean "this copy is not there or not right" (as opposed to "could not look"). */
export const isBadCopy = (e: BlobError): boolean => e.reason === "NotFound" || e.reason === "Corrupted"

/** Name of the primary in errors. */
export const PRIMARY = "primary"

/** The primary's own index entry from its stat: its object's locator; None for a chunked manifest or a replica entry. */
export const primaryEntry = (stat: BlobStat): Option.Option<BlobLocator.BlobLocator> =>
  Option.filter(stat.locator, (l) => l.scheme !== MANIFEST_SCHEME && l.scheme !== SCHEME)

/**
 * A Replicator over the BlobStore (the primary) and ReplicaIndex in the
 * context. Invalid options make `replicate` without explicit targets and
 * `repair` fail with InvalidInput.
 */
export const make = (options: Options = {}): Effect.Effect<Replicator["Type"], never, BlobStore | ReplicaIndex> =>
  Effect.gen(function*() {
    const primary = yield* BlobStore
    const index = yield* ReplicaIndex
    const instrument = yield* Instrument.make(BACKEND, "Replicator")
    const configured = checkTargets("replicate", options.targets ?? [])
    const concurrency = Math.max(1, Math.floor(options.concurrency ?? defaultConcurrency))
    const retry = (method: string) => instrument.retry(method, options.schedule)

    const count = (target: string, outcome: "copied" | "present" | "failed") =>
      instrument.counter(replicationsTotal, 1, { target, outcome })

    /** One target: skip when present, else copy; record the entry. Retried whole on transient reasons. */
    const replicateOne = (key: BinaryKey.BinaryKey, target: Target, locator: BlobLocator.BlobLocator) =>
      Effect.gen(function*() {
        const present = yield* Effect.mapError(target.store.stat(key), sideError("write", target.name))
        if (Option.isNone(present)) yield* copy(key, { name: PRIMARY, store: primary }, target)
        yield* Effect.mapError(index.add(key, locator), fromIndexError("replicate"))
        return Option.isSome(present)
      }).pipe(
        retry("replicate"),
        Effect.matchEffect({
          onFailure: (error) => Effect.as(count(target.name, "failed"), { _tag: "Failed", target: target.name, error } as CopyOutcome),
          onSuccess: (present) =>
            Effect.as(count(target.name, present ? "present" : "copied"), {
              _tag: "Copied",
              target: target.name,
              locator,
              deduplicated: present
            } as CopyOutcome)
        })
      )

    const replicate = (key: BinaryKey.BinaryKey, targets?: ReadonlyArray<Target>) =>
      Effect.gen(function*() {
        const k = yield* checkKey("replicate", key)
        const ts = targets === undefined ? yield* configured : yield* checkTargets("replicate", targets)
        const located = ts.map((t) => [t, Either.getOrThrow(replicaLocator(t.name, k))] as const)
        const stat = yield* primary.stat(k).pipe(Effect.mapError(sideError("read", PRIMARY)), retry("replicate"))
        if (Option.isNone(stat)) return yield* fail("NotFound", "replicate", `the primary holds no blob ${k}`)
        return yield* Effect.forEach(located, ([t, l]) => replicateOne(k, t, l), { concurrency: "unbounded" })
      }).pipe(instrument.observe("replicate"))

    /** Reads the primary copy whole; None when healthy, Some(error) when missing or corrupted. */
    const checkPrimary = (key: BinaryKey.BinaryKey) =>
      Stream.runDrain(primary.get(key)).pipe(
        Effect.mapError(sideError("read", PRIMARY)),
        retry("repair"),
        Effect.as(Option.none<BlobError>()),
        Effect.catchIf(isBadCopy, (e) => Effect.succeed(Option.some(e)))
      )

    /** Puts the primary's own entry back into the index when its stat names one. */
    const ensurePrimaryEntry = (key: BinaryKey.BinaryKey) =>
      Effect.gen(function*() {
        const stat = yield* primary.stat(key).pipe(Effect.mapError(sideError("read", PRIMARY)))
        const entry = Option.flatMap(stat, primaryEntry)
        if (Option.isSome(entry)) yield* Effect.mapError(index.add(key, entry.value), fromIndexError("repair"))
      }).pipe(retry("repair"))

    const unrecoverable = (key: BinaryKey.BinaryKey, problem: Option.Option<BlobError>, why: string) =>
      new BlobError({
        reason: Option.match(problem, { onNone: () => "NotFound" as const, onSome: (e) => e.reason }),
        backend: BACKEND,
        method: "repair",
        description: `cannot restore ${key}: ${why}${Option.match(problem, { onNone: () => "", onSome: (e) => ` (${e.message})` })}`,
        ...Option.match(problem, { onNone: () => ({}), onSome: (e) => ({ cause: e }) })
      })

    /** Repairs one key; "healthy" or the target it was restored from. */
    const repairKey = (key: BinaryKey.BinaryKey, targets: ReadonlyArray<Target>) =>
      Effect.gen(function*() {
        const stat = yield* primary.stat(key).pipe(Effect.mapError(sideError("read", PRIMARY)), retry("repair"))
        const problem = Option.isSome(stat) ? yield* checkPrimary(key) : Option.some(fail("NotFound", "repair", `the primary holds no blob ${key}`))
        if (Option.isNone(problem)) {
          yield* ensurePrimaryEntry(key)
          return Option.none<string>()
        }
        // Sources: replica entries of configured targets whose store still has the key.
        const byName = new Map(targets.map((t) => [t.name, t]))
        const entries = yield* index.replicas(key).pipe(Effect.mapError(fromIndexError("repair")), retry("repair"))
        const sources: Array<readonly [Target, BlobLocator.BlobLocator]> = []
        for (const l of entries) {
          const target = Option.flatMap(targetOf(l, key), (name) => Option.fromNullable(byName.get(name)))
          if (Option.isNone(target)) continue
          const there = yield* target.value.store.stat(key).pipe(retry("repair"), Effect.option)
          if (Option.isNone(there)) continue // could not ask: keep the entry, try the others
          if (Option.isSome(there.value)) {
            sources.push([target.value, l])
          } else {
            yield* Effect.mapError(index.remove(key, l), fromIndexError("repair"))
          }
        }
        if (sources.length === 0) return yield* unrecoverable(key, problem, "no configured target holds a replica")
        // The broken record must go first: a put of a key whose record is Live only deduplicates.
        if (Option.isSome(stat)) yield* primary.delete(key).pipe(Effect.mapError(sideError("write", PRIMARY)), retry("repair"))
        let last: BlobError | undefined
        for (const [target, locator] of sources) {
          const copied = yield* copy(key, target, { name: PRIMARY, store: primary }).pipe(retry("repair"), Effect.either)
          if (Either.isRight(copied)) {
            const after = yield* checkPrimary(key)
            if (Option.isSome(after)) {
              return yield* unrecoverable(key, after, "the primary still fails verification after the copy (a damaged block shared with another blob?)")
            }
            yield* ensurePrimaryEntry(key)
            return Option.some(target.name)
          }
          last = copied.left
          // The replica is not right: forget it and try the next one; a failure to write is the primary's.
          if (copied.left.method === "read" && isBadCopy(copied.left)) {
            yield* Effect.mapError(index.remove(key, locator), fromIndexError("repair"))
            continue
          }
          return yield* copied.left
        }
        return yield* unrecoverable(key, Option.fromNullable(last), "every replica is missing or corrupted")
      })

    const repair = (key?: BinaryKey.BinaryKey) =>
      Effect.gen(function*() {
        const targets = yield* configured
        const keys: Stream.Stream<BinaryKey.BinaryKey, BlobError> = key === undefined
          ? Stream.map(primary.list, (s) => s.key)
          : Stream.fromEffect(checkKey("repair", key))
        const restored: Array<Restored> = []
        const failed: Array<RepairFailure> = []
        let checked = 0
        let healthy = 0
        yield* keys.pipe(
          Stream.mapEffect((k) =>
            repairKey(k, targets).pipe(
              Effect.either,
              Effect.flatMap((outcome) => {
                checked++
                if (Either.isLeft(outcome)) {
                  failed.push({ key: k, error: outcome.left })
                  return instrument.counter(repairsTotal, 1, { outcome: "failed" })
                }
                if (Option.isNone(outcome.right)) {
                  healthy++
                  return instrument.counter(repairsTotal, 1, { outcome: "healthy" })
                }
                restored.push({ key: k, from: outcome.right.value })
                return instrument.counter(repairsTotal, 1, { outcome: "restored" })
              })
            ), { concurrency, unordered: true }),
          Stream.runDrain
        )
        return { checked, healthy, restored, failed } satisfies RepairReport
      }).pipe(instrument.observe("repair"))

    const { attr } = Tracing
    return Replicator.of({
      // Spans `graviton.Replicator.<method>` (docs/observability.md).
      replicate: (key, targets) =>
        Tracing.effect(replicate(key, targets), TracingPorts.spanName("Replicator", "replicate"), {
          attributes: () => ({ [attr.backend]: BACKEND, [attr.blobKey]: TracingPorts.text(key) }),
          onSuccess: (outcomes) => ({ "graviton.replication.copies": outcomes.filter((o) => o._tag === "Copied").length })
        }),
      repair: (key) =>
        Tracing.effect(repair(key), TracingPorts.spanName("Replicator", "repair"), {
          attributes: () => ({ [attr.backend]: BACKEND, ...(key === undefined ? {} : { [attr.blobKey]: TracingPorts.text(key) }) }),
          onSuccess: (report) => ({ "graviton.repair.checked": report.checked, "graviton.repair.restored": report.restored.length })
        }),
      targets: Either.getOrElse(configured, () => [])
    })
  })

/** The Replicator over the BlobStore and ReplicaIndex in the context. */
export const layer = (options: Options = {}): Layer.Layer<Replicator, never, BlobStore | ReplicaIndex> =>
  Layer.effect(Replicator, make(options))

/** Options of the background mode. */
export interface BackgroundOptions extends Options {
  /** Where every newly stored blob is copied. */
  readonly targets: ReadonlyArray<Target>
  /** Called with the outcome of each blob (for tests and logs); failures of it are ignored. */
  readonly onResult?: ((key: BinaryKey.BinaryKey, outcomes: ReadonlyArray<CopyOutcome>) => Effect.Effect<void>) | undefined
}

/**
 * Subscribes to BackendEvents now (blobs stored after this returns are seen)
 * and, until the scope closes, replicates each newly stored blob to the
 * targets, `concurrency` blobs at a time. Fails only for invalid targets.
 */
export const background = (
  options: BackgroundOptions
): Effect.Effect<void, BlobError, BlobStore | ReplicaIndex | BackendEvents | Scope.Scope> =>
  Effect.gen(function*() {
    const targets = yield* checkTargets("background", options.targets)
    const replicator = yield* make(options)
    const events = yield* BackendEvents
    const stream = yield* events.subscribe
    const concurrency = Math.max(1, Math.floor(options.concurrency ?? defaultConcurrency))
    const onResult = options.onResult ?? (() => Effect.void)
    yield* stream.pipe(
      Stream.filterMap((event) =>
        event._tag === "BlobStored" && !event.deduplicated ? Either.getRight(BinaryKey.parse(event.key)) : Option.none()
      ),
      Stream.mapEffect((key) =>
        replicator.replicate(key, targets).pipe(
          // Every target failed the same way (the primary lost the blob meanwhile, say): report it per target.
          Effect.catchAll((error) => Effect.succeed(targets.map((t): CopyOutcome => ({ _tag: "Failed", target: t.name, error })))),
          Effect.tap((outcomes) =>
            Effect.forEach(outcomes, (o) =>
              o._tag === "Failed"
                ? Effect.logWarning(`replication of ${key} to ${o.target} failed: ${o.error.message}`)
                : Effect.void, { discard: true })
          ),
          Effect.flatMap((outcomes) => Effect.catchAllCause(onResult(key, outcomes), () => Effect.void))
        ), { concurrency, unordered: true }),
      Stream.runDrain,
      Effect.forkScoped
    )
  })

/** The background mode as a layer: replicates new blobs for as long as the layer lives. */
export const layerBackground = (
  options: BackgroundOptions
): Layer.Layer<never, BlobError, BlobStore | ReplicaIndex | BackendEvents> => Layer.scopedDiscard(background(options))
