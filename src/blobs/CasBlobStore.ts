/**
 * CasBlobStore: the content-addressed BlobStore, composed from ports so that
 * it runs unchanged over memory, fs + LevelDB, PostgreSQL or S3:
 *
 * - a MutableObjectStore holds the bytes (see addresses for where),
 * - a KeyValueStore holds blob records (`blobs/<key>`) and, in the chunked
 *   layout, block records with reference counts (`blocks/<key>`); see BlobMeta,
 * - a ReplicaIndex learns the locator of every object written,
 * - a UnitOfWork, when the backend offers one (PostgreSQL), makes each
 *   finalizing step one transaction across those ports (see records.atomically),
 * - MetricsRegistry and BackendEvents, when present, get metrics and events.
 *
 * Plan checks, the size guard, the expected-key check, verification of
 * reads and the reporting of every call are the BlobStore protocol's
 * (kit/BlobStoreProtocol); this store supplies its storage decisions. This
 * module is the public surface; each concern is a module of top-level
 * functions over one context record (context.ts):
 *
 *   putMonolithic  a put into one staging object, moved to its content address
 *   putChunked     a put cut into content-defined blocks, stored once each
 *   publish        the blob record's state machine, shared by puts and assembly
 *   blocks         block references: acquire, adopt, release
 *   assemble       BlobAssembly: staged upload parts adopted without a copy
 *   read, list, delete
 *
 * Errors of the underlying ports keep their reason (`fromPortError`); the
 * ports' own backends already retry transient failures, so nothing is
 * retried here again, except a whole UnitOfWork step.
 *
 * Known limits. A process that dies mid-put leaves its staging object
 * (or, chunked, block references that are never released: space, never
 * data); the lifecycle's gc (src/lifecycle) sweeps them after its grace period. A delete stalled between hiding a blob
 * and removing its object for longer than `lease` can remove bytes that a
 * later put of the same content placed at the same address. Without a
 * UnitOfWork the replica entry is recorded after the blob is published: if
 * that fails, the put fails although the blob is stored (a retry reports it
 * deduplicated); with one, the failure undoes the publication as well.
 */
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import { BlobAssembly } from "../ports/BlobAssembly.js"
import { BlobStore } from "../ports/BlobStore.js"
import type { KeyValueStore } from "../ports/KeyValueStore.js"
import type { MutableObjectStore } from "../ports/ObjectStore.js"
import type { ReplicaIndex } from "../ports/ReplicaIndex.js"
import * as BlobStoreProtocol from "../kit/BlobStoreProtocol.js"
import * as TracingPorts from "../kit/TracingPorts.js"
import { uploadsPrefix } from "./addresses.js"
import { assemble } from "./assemble.js"
import * as Cas from "./context.js"
import * as Counters from "./counters.js"
import { remove } from "./delete.js"
import { BACKEND } from "./errors.js"
import { list, stat } from "./list.js"
import type { Options } from "./options.js"
import * as PutChunked from "./putChunked.js"
import * as PutMonolithic from "./putMonolithic.js"
import { read } from "./read.js"

export { MANIFEST_SCHEME } from "./addresses.js"
export { chunked, defaults, type Heal, type Layout, monolithic, type Options } from "./options.js"

/** The storage decisions the BlobStore protocol asks for; invalid options fail every put in `stage`. */
const raw = (cas: Cas.Cas): BlobStoreProtocol.Raw => ({
  backend: BACKEND,
  algorithm: Either.match(cas.settings, { onLeft: () => undefined, onRight: (s) => s.algorithm }),
  stage: (plan) =>
    Effect.flatMap(cas.settings, (s) =>
      s.layout._tag === "Chunked" ? PutChunked.stage(cas, s, plan, s.layout) : PutMonolithic.stage(cas, s, plan)),
  read: read(cas),
  stat: stat(cas),
  delete: remove(cas),
  list: list(cas)
})

/** The store (the protocol over `raw`) and its BlobAssembly, over one context. */
const build = (options: Options) =>
  Effect.gen(function*() {
    const cas = yield* Cas.make(options)
    // Counting starts on an empty store; a failure only leaves `stats` to say the counters are absent.
    yield* Counters.initialize(cas.kv).pipe(
      Effect.catchAll((e) => Effect.logWarning(`cas: could not start the space counters: ${e.message}`))
    )
    return {
      store: yield* BlobStoreProtocol.make(raw(cas), cas.instrument),
      assembly: TracingPorts.blobAssembly(BACKEND, BlobAssembly.of({ stagingPrefix: uploadsPrefix(cas.settings), assemble: assemble(cas) }))
    }
  })

/**
 * Builds a CasBlobStore over the object store, key-value store and replica
 * index in the context, finalizing puts atomically when a UnitOfWork is there too.
 */
export const make = (
  options: Options = {}
): Effect.Effect<BlobStore["Type"], never, MutableObjectStore | KeyValueStore | ReplicaIndex> =>
  Effect.map(build(options), (built) => built.store)

/**
 * BlobStore over the MutableObjectStore, KeyValueStore and ReplicaIndex in
 * the context, with its BlobAssembly (staged parts adopted as blocks).
 */
export const layer = (
  options: Options = {}
): Layer.Layer<BlobStore | BlobAssembly, never, MutableObjectStore | KeyValueStore | ReplicaIndex> =>
  Layer.effectContext(
    Effect.map(build(options), (built) => Context.make(BlobStore, built.store).pipe(Context.add(BlobAssembly, built.assembly)))
  )

/** Like `layer`, with options read from `Config` (e.g. the bucket or the layout from the environment). */
export const layerConfig = (
  config: Config.Config.Wrap<Options>
): Layer.Layer<BlobStore | BlobAssembly, ConfigError.ConfigError, MutableObjectStore | KeyValueStore | ReplicaIndex> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(config), layer))
