/**
 * In-memory KeyValueStore: the reference implementation of the port, for
 * tests, demos and as the metadata store of `MemoryLayers.live`.
 *
 * Keys are kept in UTF-8 byte order (core/KvKey.compare) so that `list`
 * walks a prefix in pages by binary search instead of copying the map.
 * Every read-modify-write (`compareAndSet`, `commit`) runs inside a single
 * synchronous `Effect.sync`: JavaScript cannot interleave another fiber in
 * the middle of one, so each is atomic without a lock, and cheaper than one.
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

const BACKEND = "memory"

/** Entries returned per `list` page; bounds the memory one pull holds. */
const PAGE_SIZE = 256

/** Below this many pending keys, inserting one by one beats a merge of the whole index. */
const SPLICE_LIMIT = 64

interface Indexed {
  readonly key: string
  readonly bytes: Buffer
}

/**
 * A map plus a lazily maintained sorted index of its keys. New keys wait in
 * `pending` and deleted ones stay in `sorted` as tombstones (`stale`) until
 * the next listing needs the order, so that bulk loads sort once instead of
 * shifting the array on every put.
 */
class SortedMap {
  readonly values = new Map<string, Uint8Array>()
  private sorted: Array<Indexed> = []
  private readonly pending = new Map<string, Buffer>()
  private readonly stale = new Set<string>()

  get(key: string): Uint8Array | undefined {
    return this.values.get(key)
  }

  set(key: string, value: Uint8Array): void {
    if (!this.values.has(key)) {
      // A tombstoned key is still in `sorted`: reviving it keeps its place.
      if (this.stale.has(key)) this.stale.delete(key)
      else this.pending.set(key, Buffer.from(key, "utf8"))
    }
    this.values.set(key, value)
  }

  delete(key: string): void {
    if (!this.values.delete(key)) return
    if (this.pending.has(key)) this.pending.delete(key)
    else this.stale.add(key)
  }

  /** Up to `limit` live entries with keys starting with `prefix`, strictly after `after` (or from the prefix). */
  page(prefix: string, prefixBytes: Buffer, after: Buffer | undefined, limit: number): Array<readonly [string, Uint8Array]> {
    this.flush()
    const sorted = this.sorted
    let i = after === undefined ? lowerBound(sorted, prefixBytes, false) : lowerBound(sorted, after, true)
    const out: Array<readonly [string, Uint8Array]> = []
    for (; i < sorted.length && out.length < limit; i++) {
      const { key } = sorted[i]!
      // Keys sharing a prefix are contiguous in byte order: the first miss ends the range.
      if (!key.startsWith(prefix)) break
      const value = this.values.get(key)
      if (value !== undefined) out.push([key, copy(value)])
    }
    return out
  }

  /** Brings `sorted` up to date: folds pending keys in and drops tombstones once they are many. */
  private flush(): void {
    if (this.pending.size === 0 && this.stale.size * 2 <= this.sorted.length) return
    const incoming = Array.from(this.pending, ([key, bytes]): Indexed => ({ key, bytes }))
    this.pending.clear()
    if (this.stale.size * 2 <= this.sorted.length && incoming.length <= SPLICE_LIMIT) {
      for (const item of incoming) this.sorted.splice(lowerBound(this.sorted, item.bytes, false), 0, item)
      return
    }
    incoming.sort((a, b) => Buffer.compare(a.bytes, b.bytes))
    const merged: Array<Indexed> = []
    let j = 0
    for (const item of this.sorted) {
      if (this.stale.has(item.key)) continue
      while (j < incoming.length && Buffer.compare(incoming[j]!.bytes, item.bytes) < 0) merged.push(incoming[j++]!)
      merged.push(item)
    }
    while (j < incoming.length) merged.push(incoming[j++]!)
    this.stale.clear()
    this.sorted = merged
  }
}

/** First index whose key is >= `bytes` (or > `bytes` when `strict`). */
const lowerBound = (sorted: ReadonlyArray<Indexed>, bytes: Buffer, strict: boolean): number => {
  let lo = 0
  let hi = sorted.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    const c = Buffer.compare(sorted[mid]!.bytes, bytes)
    if (c < 0 || (strict && c === 0)) lo = mid + 1
    else hi = mid
  }
  return lo
}

/** A private copy, so that neither the caller nor the store can change the other's bytes. */
const copy = (bytes: Uint8Array): Uint8Array => new Uint8Array(bytes)

const view = (bytes: Uint8Array): Buffer => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)

/** Byte equality of two values. */
const equalBytes = (a: Uint8Array, b: Uint8Array): boolean =>
  a.byteLength === b.byteLength && view(a).equals(view(b))

const invalid = (method: string, description: string) =>
  new MetadataError({ reason: "InvalidInput", backend: BACKEND, method, description })

const checkKey = (method: string, key: string, allowEmpty = false): Either.Either<string, MetadataError> =>
  Either.mapLeft(KvKey.validate(key, allowEmpty), toPortError(MetadataError, BACKEND, method))

const checkValue = (method: string, value: unknown): Either.Either<Uint8Array, MetadataError> =>
  value instanceof Uint8Array ? Either.right(value) : Either.left(invalid(method, "a value must be a Uint8Array"))

const checkOptionalValue = (method: string, value: unknown): Either.Either<Option.Option<Uint8Array>, MetadataError> =>
  Option.isOption(value)
    ? Option.match(value, {
      onNone: () => Either.right(Option.none()),
      onSome: (v) => Either.map(checkValue(method, v), Option.some)
    })
    : Either.left(invalid(method, "an expected or next value must be an Option"))

const holds = (current: Uint8Array | undefined, expected: Option.Option<Uint8Array>): boolean =>
  Option.match(expected, {
    onNone: () => current === undefined,
    onSome: (e) => current !== undefined && equalBytes(current, e)
  })

/** Validates every check and write of a commit up front, so that a bad key fails before anything is applied. */
const checkCommit = (
  checks: ReadonlyArray<KvCheck>,
  writes: ReadonlyArray<KvWrite>
): Either.Either<readonly [ReadonlyArray<KvCheck>, ReadonlyArray<KvWrite>], MetadataError> => {
  if (!Array.isArray(checks) || !Array.isArray(writes)) return Either.left(invalid("commit", "checks and writes must be arrays"))
  const outChecks: Array<KvCheck> = []
  for (const check of checks) {
    const key = checkKey("commit", check?.key)
    if (Either.isLeft(key)) return Either.left(key.left)
    const expected = checkOptionalValue("commit", check.expected)
    if (Either.isLeft(expected)) return Either.left(expected.left)
    outChecks.push({ key: key.right, expected: Option.map(expected.right, copy) })
  }
  const outWrites: Array<KvWrite> = []
  for (const write of writes) {
    const key = checkKey("commit", write?.key)
    if (Either.isLeft(key)) return Either.left(key.left)
    if (write._tag === "Delete") {
      outWrites.push({ _tag: "Delete", key: key.right })
    } else if (write._tag === "Put") {
      const value = checkValue("commit", write.value)
      if (Either.isLeft(value)) return Either.left(value.left)
      outWrites.push({ _tag: "Put", key: key.right, value: copy(value.right) })
    } else {
      return Either.left(invalid("commit", "a write must be a Put or a Delete"))
    }
  }
  return Either.right([outChecks, outWrites] as const)
}

/** Builds an empty in-memory KeyValueStore. */
export const make = Effect.gen(function*() {
  const instrument = yield* Instrument.make(BACKEND, "KeyValueStore")
  const map = new SortedMap()

  /**
   * Each call first yields to the scheduler, as a call to a real store would
   * wait on I/O: other fibers run between a caller's get and its put, so a
   * bare get-then-put that would lose updates on LevelDB or PostgreSQL loses
   * them here too, instead of passing tests by luck.
   */
  const call = (method: string) => <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<A, E> =>
    instrument.observe(method)(Effect.zipRight(Effect.yieldNow(), effect))

  const get = (key: string) =>
    call("get")(
      Effect.flatMap(checkKey("get", key), (k) =>
        Effect.sync(() => {
          const value = map.get(k)
          return value === undefined ? Option.none() : Option.some(copy(value))
        }))
    )

  const put = (key: string, value: Uint8Array) =>
    call("put")(
      Effect.flatMap(checkKey("put", key), (k) =>
        Effect.flatMap(checkValue("put", value), (v) => Effect.sync(() => map.set(k, copy(v)))))
    )

  const del = (key: string) =>
    call("delete")(Effect.flatMap(checkKey("delete", key), (k) => Effect.sync(() => map.delete(k))))

  const list = (prefix: string): Stream.Stream<readonly [string, Uint8Array], MetadataError> =>
    instrument.observeStream("list")(Stream.unwrap(
      Effect.map(checkKey("list", prefix, true), (p) => {
        const prefixBytes = Buffer.from(p, "utf8")
        // Each page resumes strictly after the last key seen, so writes between pages are tolerated.
        return Stream.paginateChunkEffect(undefined as Buffer | undefined, (after) =>
          Effect.sync(() => {
            const page = map.page(p, prefixBytes, after, PAGE_SIZE)
            const next = page.length < PAGE_SIZE
              ? Option.none<Buffer>()
              : Option.some(Buffer.from(page[page.length - 1]![0], "utf8"))
            return [Chunk.unsafeFromArray(page), next] as const
          }))
      })
    ))

  const compareAndSet = (key: string, expected: Option.Option<Uint8Array>, next: Option.Option<Uint8Array>) =>
    call("compareAndSet")(
      Effect.gen(function*() {
        const k = yield* checkKey("compareAndSet", key)
        const e = yield* checkOptionalValue("compareAndSet", expected)
        const n = Option.map(yield* checkOptionalValue("compareAndSet", next), copy)
        return yield* Effect.sync(() => {
          if (!holds(map.get(k), e)) return false
          Option.match(n, { onNone: () => map.delete(k), onSome: (v) => map.set(k, v) })
          return true
        })
      })
    )

  const commit = (checks: ReadonlyArray<KvCheck>, writes: ReadonlyArray<KvWrite>) =>
    call("commit")(
      Effect.flatMap(checkCommit(checks, writes), ([cs, ws]) =>
        Effect.sync(() => {
          for (const c of cs) if (!holds(map.get(c.key), c.expected)) return false
          for (const w of ws) {
            if (w._tag === "Put") map.set(w.key, w.value)
            else map.delete(w.key)
          }
          return true
        }))
    )

  return TracingPorts.keyValueStore(BACKEND, KeyValueStore.of({ get, put, delete: del, list, compareAndSet, commit }))
})

/** A fresh, empty in-memory KeyValueStore. */
export const layer = Layer.effect(KeyValueStore, make)

