/**
 * The context of every CasBlobStore function: the services it works over
 * and its checked options, built once per store by `make`.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import type { BlobError } from "../core/Errors.js"
import { KeyValueStore } from "../ports/KeyValueStore.js"
import { MutableObjectStore } from "../ports/ObjectStore.js"
import { ReplicaIndex } from "../ports/ReplicaIndex.js"
import { UnitOfWork } from "../ports/UnitOfWork.js"
import * as Instrument from "../kit/Instrument.js"
import { BACKEND } from "./errors.js"
import { defaults, type Options, resolve, type Settings } from "./options.js"

/** What a CasBlobStore works with. */
export interface Cas {
  /** Holds the bytes: monolithic blobs, blocks, staged puts. */
  readonly objects: MutableObjectStore["Type"]
  /** Holds blob and block records (see BlobMeta). */
  readonly kv: KeyValueStore["Type"]
  /** Learns the locator of every object written. */
  readonly replicas: ReplicaIndex["Type"]
  /** Present on a transactional backend: finalizing steps then run as one transaction (see `atomically`). */
  readonly unitOfWork: Option.Option<UnitOfWork["Type"]>
  readonly instrument: Instrument.Instrument
  /** The checked options, or why they are invalid (puts then fail with it; reads work). */
  readonly settings: Either.Either<Settings, BlobError>
  /** How long another writer's Pending or Deleting record is respected (see Options.lease). */
  readonly leaseMillis: number
}

/** The context over the services in the Effect context. */
export const make = (options: Options): Effect.Effect<Cas, never, MutableObjectStore | KeyValueStore | ReplicaIndex> =>
  Effect.gen(function*() {
    const settings = resolve(options)
    return {
      objects: yield* MutableObjectStore,
      kv: yield* KeyValueStore,
      replicas: yield* ReplicaIndex,
      unitOfWork: yield* Effect.serviceOption(UnitOfWork),
      instrument: yield* Instrument.make(BACKEND, "BlobStore"),
      settings,
      leaseMillis: Either.match(settings, { onLeft: () => Duration.toMillis(defaults.lease), onRight: (s) => s.leaseMillis })
    }
  })

export const now = Clock.currentTimeMillis

/** Whether a record set at `since` has outlived the lease at `at` (its writer is presumed gone). */
export const isStale = (cas: Cas, since: number, at: number): boolean => at - since > cas.leaseMillis
