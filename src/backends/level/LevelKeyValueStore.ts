/**
 * The KeyValueStore port on LevelDB (classic-level 3).
 *
 * - Keys are routed to their namespace's sublevel (see internal/layout.ts);
 *   `list` walks one sublevel, or merges several in UTF-8 byte order of the
 *   full key, pulling LevelDB iterators page by page (`nextv`), so memory
 *   stays bounded by a few pages whatever the number of keys.
 * - `commit` is one `db.batch`, atomic in LevelDB even across sublevels.
 * - `compareAndSet` and `commit` with checks read, compare and write while
 *   holding the lock of every key involved, and plain writes never land
 *   between such a read and its write (see internal/keyedLock.ts). This is
 *   per process: LevelDB itself admits a single process.
 *
 * Values come back as plain `Uint8Array`s over memory that classic-level
 * allocates for each read (never a shared pool), so callers own them.
 */
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { MetadataError, toPortError } from "../../core/Errors.js"
import * as KvKey from "../../core/KvKey.js"
import { KeyValueStore, type KvCheck, type KvWrite } from "../../ports/KeyValueStore.js"
import * as Instrument from "../../kit/Instrument.js"
import * as TracingPorts from "../../kit/TracingPorts.js"
import { BACKEND, invalidInput, toMetadataError } from "./errors.js"
import { compareKeys, type Source } from "./internal/layout.js"
import { CoalescingReader } from "./internal/reads.js"
import { isValidKey } from "./internal/validKey.js"
import { type Db, LevelDatabase } from "./LevelDatabase.js"
import * as LevelMetrics from "./LevelMetrics.js"

/** Entries asked of LevelDB per iterator page. */
const PAGE_SIZE = 1000

/**
 * Bytes of keys and values per iterator page (at least one entry). Four
 * times classic-level's default: fewer trips through the thread pool and
 * the stream per entry (scans ~40% faster), memory still bounded.
 */
export const PAGE_BYTES = 64 * 1024

/** Native point reads in flight at once before further gets are coalesced (see internal/reads.ts). */
const READ_SLOTS = 2

type Entry = readonly [string, Uint8Array]

/** A plain Uint8Array over a value LevelDB returned; copied only if it does not own its memory. */
const own = (bytes: Uint8Array): Uint8Array =>
  bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
    ? new Uint8Array(bytes.buffer, 0, bytes.byteLength)
    : new Uint8Array(bytes)

const viewOf = (bytes: Uint8Array): Buffer => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)

/** True when the stored value (undefined = absent) is what `expected` says. */
const holds = (current: Uint8Array | undefined, expected: Option.Option<Uint8Array>): boolean =>
  Option.isNone(expected)
    ? current === undefined
    : current !== undefined && current.byteLength === expected.value.byteLength &&
      viewOf(current).equals(viewOf(expected.value))

/** Why `key` is not a valid key (call only for keys `isValidKey` rejected). */
const keyError = (method: string, key: unknown, allowEmpty = false): MetadataError =>
  Either.match(KvKey.validate(key as string, allowEmpty), {
    onLeft: toPortError(MetadataError, BACKEND, method),
    // Unreachable while isValidKey and KvKey.validate agree (a property test checks that they do).
    onRight: () => invalidInput(method, `key ${JSON.stringify(key)} was rejected`)
  })

const checkKey = (method: string, key: string, allowEmpty = false): Either.Either<string, MetadataError> =>
  isValidKey(key, allowEmpty) ? Either.right(key) : Either.left(keyError(method, key, allowEmpty))

/** Metric label of a key outside every declared namespace (the call fails). */
const UNDECLARED = "undeclared"

/** The error of a key (or listing prefix) outside every declared namespace, naming it. */
const outside = (method: string, key: string, declared: ReadonlyArray<string>): MetadataError => {
  const namespace = KvKey.namespaceOf(key)
  return invalidInput(
    method,
    namespace === undefined
      ? `key ${JSON.stringify(key)} has no namespace (keys are <namespace>/<rest>; declared: ${declared.join(", ")})`
      : `namespace ${JSON.stringify(namespace)} of key ${JSON.stringify(key)} is not declared ` +
        `(declared: ${declared.join(", ")}; add it to the LevelDB namespaces option)`
  )
}

const checkValue = (method: string, value: unknown): Either.Either<Uint8Array, MetadataError> =>
  value instanceof Uint8Array ? Either.right(value) : Either.left(invalidInput(method, "a value must be a Uint8Array"))

const checkOptionalValue = (method: string, value: unknown): Either.Either<Option.Option<Uint8Array>, MetadataError> =>
  Option.isOption(value)
    ? Option.isNone(value)
      ? Either.right(Option.none())
      : Either.map(checkValue(method, value.value), Option.some)
    : Either.left(invalidInput(method, "an expected or next value must be an Option"))

/** One operation of a LevelDB batch. */
type BatchOp =
  | { readonly type: "put"; readonly key: string; readonly value: Uint8Array }
  | { readonly type: "del"; readonly key: string }

interface PreparedCommit {
  readonly checkKeys: ReadonlyArray<string>
  readonly expected: ReadonlyArray<Option.Option<Uint8Array>>
  readonly ops: ReadonlyArray<BatchOp>
  /** Every key involved (duplicates allowed): the keys to lock. */
  readonly keys: ReadonlyArray<string>
  /** The namespace of every key, or MIXED (the metrics' label; found while validating, not per key again). */
  readonly namespace: string
}

/** A cursor over one sublevel's iterator, holding at most one page. */
interface Cursor {
  readonly source: Source
  readonly iterator: ReturnType<Db["iterator"]>
  page: Array<[string, Uint8Array]>
  position: number
  ended: boolean
}

/** The KeyValueStore over the LevelDatabase in the context. */
export const make: Effect.Effect<KeyValueStore["Type"], never, LevelDatabase> = Effect.gen(function*() {
  const database = yield* LevelDatabase
  const instrument = yield* Instrument.make(BACKEND, "KeyValueStore")
  const metrics = yield* LevelMetrics.recorder
  const { db, path } = database
  const { gate, layout } = database.internals
  // Without `sync`, calls pass no options at all: abstract-level's fastest path.
  const sync = { sync: true }
  const putRaw = database.options.sync
    ? (key: string, value: Uint8Array) => db.put(key, value, sync)
    : (key: string, value: Uint8Array) => db.put(key, value)
  const delRaw = database.options.sync ? (key: string) => db.del(key, sync) : (key: string) => db.del(key)
  const batchRaw = database.options.sync
    ? (ops: ReadonlyArray<BatchOp>) => db.batch(ops as Array<BatchOp>, sync)
    : (ops: ReadonlyArray<BatchOp>) => db.batch(ops as Array<BatchOp>)
  const fail = (method: string, subject: string) => (error: unknown) => toMetadataError(method, error, { path, subject })

  /**
   * Per-namespace latency and counts (LevelMetrics) plus the generic failure
   * accounting; recording the generic latency too would double the per-call
   * metric cost on an operation that takes only microseconds.
   */
  const observe = <A>(method: string, namespace: () => string, self: Effect.Effect<A, MetadataError>) =>
    metrics.enabled
      ? metrics.observe(method, namespace(), (cause) => instrument.failed(method, cause))(self)
      : instrument.observe(method)(self)

  /** The namespace label of a key, tolerating malformed input (it fails validation anyway). */
  const namespaceOf = (key: unknown) => () =>
    (typeof key === "string" ? layout.namespaceOf(key) : undefined) ?? UNDECLARED

  /** A valid key in a declared namespace; any other is InvalidInput naming its namespace. */
  const route = (method: string, key: string): Either.Either<string, MetadataError> =>
    Either.flatMap(
      checkKey(method, key),
      (k) => layout.namespaceOf(k) === undefined ? Either.left(outside(method, k, database.namespaces)) : Either.right(k)
    )

  // Concurrent gets share getMany calls; two native reads in flight keep both cores busy.
  const reader = new CoalescingReader(db, READ_SLOTS)

  const get = (key: string) => {
    const k = route("get", key)
    return observe(
      "get",
      namespaceOf(key),
      Either.isLeft(k) ? Effect.fail(k.left) : Effect.async<Option.Option<Uint8Array>, MetadataError>((resume) =>
        reader.read(
          layout.physical(k.right),
          (v) => resume(Effect.succeed(v === undefined ? Option.none() : Option.some(own(v)))),
          (error) => resume(Effect.fail(fail("get", k.right)(error)))
        )
      )
    )
  }

  const put = (key: string, value: Uint8Array) => {
    const k = route("put", key)
    const v = checkValue("put", value)
    return observe(
      "put",
      namespaceOf(key),
      Either.isLeft(k)
        ? Effect.fail(k.left)
        : Either.isLeft(v)
        ? Effect.fail(v.left)
        : gate.write([k.right], () => putRaw(layout.physical(k.right), v.right), fail("put", k.right))
    )
  }

  const del = (key: string) => {
    const k = route("delete", key)
    return observe(
      "delete",
      namespaceOf(key),
      Either.isLeft(k)
        ? Effect.fail(k.left)
        : gate.write([k.right], () => delRaw(layout.physical(k.right)), fail("delete", k.right))
    )
  }

  const compareAndSet = (key: string, expected: Option.Option<Uint8Array>, next: Option.Option<Uint8Array>) =>
    observe(
      "compareAndSet",
      namespaceOf(key),
      Effect.gen(function*() {
        const k = yield* route("compareAndSet", key)
        const e = yield* checkOptionalValue("compareAndSet", expected)
        const n = yield* checkOptionalValue("compareAndSet", next)
        const physical = layout.physical(k)
        return yield* gate.modify([k], async () => {
          const current = await db.get(physical)
          if (!holds(current, e)) return false
          if (Option.isSome(n)) await putRaw(physical, n.value)
          else if (current !== undefined) await delRaw(physical)
          return true
        }, fail("compareAndSet", k))
      })
    )

  /** Validates every check and write before anything runs, so that one bad key fails the whole commit. */
  const prepare = (
    checks: ReadonlyArray<KvCheck>,
    writes: ReadonlyArray<KvWrite>
  ): Either.Either<PreparedCommit, MetadataError> => {
    // Plain loops with no per-key allocation beyond the batch itself: a
    // 1000-write commit must cost little more than building the batch.
    if (!Array.isArray(checks) || !Array.isArray(writes)) {
      return Either.left(invalidInput("commit", "checks and writes must be arrays"))
    }
    const checkKeys: Array<string> = []
    const expected: Array<Option.Option<Uint8Array>> = []
    const ops: Array<BatchOp> = []
    const keys: Array<string> = []
    let namespace: string | undefined
    const note = (ns: string) => {
      namespace = namespace === undefined || namespace === ns ? ns : LevelMetrics.MIXED
    }
    for (const check of checks) {
      const key = check?.key
      if (!isValidKey(key, false)) return Either.left(keyError("commit", key))
      const ns = layout.namespaceOf(key)
      if (ns === undefined) return Either.left(outside("commit", key, database.namespaces))
      note(ns)
      const e = checkOptionalValue("commit", check.expected)
      if (Either.isLeft(e)) return Either.left(e.left)
      expected.push(e.right)
      checkKeys.push(layout.physical(key))
      keys.push(key)
    }
    for (const write of writes) {
      const key = write?.key
      if (!isValidKey(key, false)) return Either.left(keyError("commit", key))
      const ns = layout.namespaceOf(key)
      if (ns === undefined) return Either.left(outside("commit", key, database.namespaces))
      note(ns)
      if (write._tag === "Put") {
        const value = write.value
        if (!(value instanceof Uint8Array)) return Either.left(invalidInput("commit", "a value must be a Uint8Array"))
        ops.push({ type: "put", key: layout.physical(key), value })
      } else if (write._tag === "Delete") {
        ops.push({ type: "del", key: layout.physical(key) })
      } else {
        return Either.left(invalidInput("commit", "a write must be a Put or a Delete"))
      }
      keys.push(key)
    }
    return Either.right({ checkKeys, expected, ops, keys, namespace: namespace ?? LevelMetrics.MIXED })
  }

  const commit = (checks: ReadonlyArray<KvCheck>, writes: ReadonlyArray<KvWrite>) => {
    const prepared = prepare(checks, writes)
    const namespace = () => (Either.isLeft(prepared) ? LevelMetrics.MIXED : prepared.right.namespace)
    return observe(
      "commit",
      namespace,
      Effect.flatMap(prepared, ({ checkKeys, expected, keys, ops }) => {
        const onError = fail("commit", `${keys.length} keys`)
        // One batch: LevelDB applies it atomically, across sublevels, in order (the last write to a key wins).
        if (checkKeys.length === 0) {
          return ops.length === 0 ? Effect.succeed(true) : Effect.as(gate.write(keys, () => batchRaw(ops), onError), true)
        }
        return gate.modify(keys, async () => {
          const current = await db.getMany(checkKeys as Array<string>)
          for (let i = 0; i < checkKeys.length; i++) if (!holds(current[i], expected[i]!)) return false
          if (ops.length > 0) await batchRaw(ops)
          return true
        }, onError)
      })
    )
  }

  const open = (sources: ReadonlyArray<Source>, prefix: string) =>
    Effect.acquireRelease(
      Effect.try({
        try: () =>
          sources.map((source): Cursor => ({
            source,
            iterator: db.iterator(
              source.lt === undefined
                ? { gte: source.gte, highWaterMarkBytes: PAGE_BYTES }
                : { gte: source.gte, lt: source.lt, highWaterMarkBytes: PAGE_BYTES }
            ),
            page: [],
            position: 0,
            ended: false
          })),
        catch: fail("list", prefix)
      }),
      (cursors) => Effect.ignore(Effect.tryPromise(() => Promise.all(cursors.map((c) => c.iterator.close()))))
    )

  /** Fetches the next page of a cursor, turning physical keys back into full keys in place. */
  const refill = async (cursor: Cursor): Promise<void> => {
    const page = (await cursor.iterator.nextv(PAGE_SIZE)) as Array<[string, Uint8Array]>
    const { restore, strip } = cursor.source
    for (const entry of page) {
      entry[0] = restore + entry[0].slice(strip)
      entry[1] = own(entry[1])
    }
    cursor.page = page
    cursor.position = 0
    if (page.length === 0) cursor.ended = true
  }

  /**
   * The next entries of a k-way merge in full-key order. It emits what can
   * be decided with the pages at hand and refills only when a cursor runs
   * dry, so at most one page per sublevel is held at a time.
   */
  const mergeNext = async (cursors: ReadonlyArray<Cursor>): Promise<Array<Entry>> => {
    const out: Array<Entry> = []
    for (;;) {
      let best: Cursor | undefined
      let dry = false
      for (const c of cursors) {
        if (c.ended) continue
        if (c.position >= c.page.length) {
          dry = true
          break
        }
        if (best === undefined || compareKeys(c.page[c.position]![0], best.page[best.position]![0]) < 0) best = c
      }
      if (dry) {
        if (out.length > 0) return out
        await Promise.all(cursors.filter((c) => !c.ended && c.position >= c.page.length).map(refill))
        continue
      }
      if (best === undefined) return out
      out.push(best.page[best.position++]!)
    }
  }

  const list = (prefix: string): Stream.Stream<Entry, MetadataError> =>
    Stream.unwrapScoped(
      Effect.flatMap(checkKey("list", prefix, true), (p) => {
        const sources = layout.sources(p)
        if (sources === undefined) return Effect.fail(outside("list", p, database.namespaces))
        const onError = fail("list", p)
        return Effect.map(open(sources, p), (cursors) => {
          const pull = cursors.length === 1
            ? () =>
              refill(cursors[0]!).then(() => {
                const page = cursors[0]!.page
                cursors[0]!.page = []
                return page as Array<Entry>
              })
            : () => mergeNext(cursors)
          const next = Effect.async<Chunk.Chunk<Entry>, Option.Option<MetadataError>>((resume) => {
            pull().then(
              (entries) =>
                resume(entries.length === 0 ? Effect.fail(Option.none()) : Effect.succeed(Chunk.unsafeFromArray(entries))),
              (error) => resume(Effect.fail(Option.some(onError(error))))
            )
          })
          const stream = Stream.repeatEffectChunkOption(next)
          return metrics.enabled
            ? metrics.observeStream("list", sources.length === 1 ? sources[0]!.namespace : LevelMetrics.MIXED)(stream)
            : stream
        })
      })
    ).pipe(instrument.observeStream("list"))

  return TracingPorts.keyValueStore(BACKEND, KeyValueStore.of({ get, put, delete: del, list, compareAndSet, commit }))
})

/** KeyValueStore over the LevelDatabase in the context (shares its database and keyed lock); see LevelLayers to open one. */
export const layer: Layer.Layer<KeyValueStore, never, LevelDatabase> = Layer.effect(KeyValueStore, make)

/**
 * A view of `kv` confined to one namespace: keys are relative to `<namespace>/`
 * (`get("x")` reads `<namespace>/x`) and listings strip that prefix again.
 */
export const confine = (kv: KeyValueStore["Type"], namespace: string): KeyValueStore["Type"] => {
  const head = `${namespace}/`
  const full = (method: string, key: string) =>
    Either.map(checkKey(method, key, method === "list"), (k) => head + k)
  const strip = ([key, value]: Entry): Entry => [key.slice(head.length), value]
  return KeyValueStore.of({
    get: (key) => Effect.flatMap(full("get", key), kv.get),
    put: (key, value) => Effect.flatMap(full("put", key), (k) => kv.put(k, value)),
    delete: (key) => Effect.flatMap(full("delete", key), kv.delete),
    list: (prefix) => Stream.unwrap(Effect.map(full("list", prefix), (p) => Stream.map(kv.list(p), strip))),
    compareAndSet: (key, expected, next) =>
      Effect.flatMap(full("compareAndSet", key), (k) => kv.compareAndSet(k, expected, next)),
    commit: (checks, writes) =>
      Effect.gen(function*() {
        if (!Array.isArray(checks) || !Array.isArray(writes)) {
          return yield* Effect.fail(invalidInput("commit", "checks and writes must be arrays"))
        }
        const cs: Array<KvCheck> = []
        for (const c of checks) cs.push({ key: yield* full("commit", c?.key), expected: c.expected })
        const ws: Array<KvWrite> = []
        for (const w of writes) {
          // Unknown tags pass through unchanged, for the store to reject.
          ws.push({ ...w, key: yield* full("commit", w?.key) })
        }
        return yield* kv.commit(cs, ws)
      })
  })
}

/** A KeyValueStore confined to one namespace (keys relative to it) of the LevelDatabase in the context. */
export const layerNamespace = (namespace: string): Layer.Layer<KeyValueStore, MetadataError, LevelDatabase> =>
  Layer.effect(
    KeyValueStore,
    Effect.gen(function*() {
      const database = yield* LevelDatabase
      if (!database.namespaces.includes(namespace)) {
        return yield* Effect.fail(
          invalidInput("open", `namespace ${JSON.stringify(namespace)} is not configured (have: ${database.namespaces.join(", ")})`)
        )
      }
      return confine(yield* make, namespace)
    })
  )
