/**
 * Space counters kept with the records, so `stats` reads a handful of keys
 * instead of every record. Every change of a blob or block record goes
 * through `commit`/`compareAndSet` here, which add the change's effect on
 * the counters to the same KV commit: a crash cannot separate the two.
 *
 * Concurrent writers would contend on one counter key, so the counts are
 * spread over SHARDS keys (`stats/shard/<n>`, one picked at random per
 * change); their sum is the count. `stats/base` holds the starting point
 * and marks the shards as complete: it is written when a store is opened
 * empty, and by `check --repair` (which folds the shards into it). A store
 * written before counters existed has no base, and `stats` says so.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as BinaryKey from "../core/BinaryKey.js"
import type { MetadataError } from "../core/Errors.js"
import * as KV from "../ports/KeyValueStore.js"
import type { KeyValueStore, KvCheck, KvWrite } from "../ports/KeyValueStore.js"
import * as BlobMeta from "./BlobMeta.js"

type Kv = KeyValueStore["Type"]

export const NAMESPACE = "stats/"
export const BASE = "stats/base"
const SHARD_PREFIX = "stats/shard/"
export const SHARDS = 16
const shardKeys = Array.from({ length: SHARDS }, (_, i) => SHARD_PREFIX + String(i).padStart(2, "0"))

/** What the live records add up to. */
export interface Counts {
  blobs: number
  chunkedBlobs: number
  logicalBytes: number
  /** Bytes of monolithic blobs' objects (each stored once). */
  monolithicBytes: number
  blocks: number
  blockBytes: number
}

const fieldNames: ReadonlyArray<keyof Counts> = ["blobs", "chunkedBlobs", "logicalBytes", "monolithicBytes", "blocks", "blockBytes"]

export const zero = (): Counts => ({ blobs: 0, chunkedBlobs: 0, logicalBytes: 0, monolithicBytes: 0, blocks: 0, blockBytes: 0 })

const add = (into: Counts, from: Counts, sign = 1): Counts => {
  for (const f of fieldNames) into[f] += sign * from[f]
  return into
}

export const equal = (a: Counts, b: Counts): boolean => fieldNames.every((f) => a[f] === b[f])

const isZero = (c: Counts) => fieldNames.every((f) => c[f] === 0)

const decoder = new TextDecoder()
const encoder = new TextEncoder()

const encode = (c: Counts): Uint8Array => encoder.encode(JSON.stringify(c))

const decode = (bytes: Uint8Array): Counts | undefined => {
  try {
    const value: unknown = JSON.parse(decoder.decode(bytes))
    if (typeof value !== "object" || value === null) return undefined
    const c = zero()
    for (const f of fieldNames) {
      const n = (value as Record<string, unknown>)[f]
      if (typeof n !== "number" || !Number.isSafeInteger(n)) return undefined
      c[f] = n
    }
    return c
  } catch {
    return undefined
  }
}

/** The `state` and `layout` of a record (see BlobMeta's wire format); only these decide what it counts. */
export const fields = (bytes: Uint8Array): { readonly state?: unknown; readonly layout?: unknown } | undefined => {
  try {
    const value: unknown = JSON.parse(decoder.decode(bytes))
    return typeof value === "object" && value !== null ? value : undefined
  } catch {
    return undefined
  }
}

/** What the value `bytes` under `kvKey` counts (a live blob or block record; anything else nothing). */
export const countOf = (kvKey: string, bytes: Option.Option<Uint8Array>): Counts => {
  const c = zero()
  if (Option.isNone(bytes)) return c
  if (kvKey.startsWith(BlobMeta.BLOBS)) {
    const key = BinaryKey.parse(kvKey.slice(BlobMeta.BLOBS.length))
    const record = fields(bytes.value)
    if (Either.isLeft(key) || record?.state !== "live") return c
    c.blobs = 1
    c.logicalBytes = key.right.size
    if (record.layout === "chunked") c.chunkedBlobs = 1
    else c.monolithicBytes = key.right.size
  } else if (kvKey.startsWith(BlobMeta.BLOCKS)) {
    // The size is the key's last field (`<algo>:<hex>:<size>`).
    const size = Number(kvKey.slice(kvKey.lastIndexOf(":") + 1))
    if (!Number.isSafeInteger(size) || fields(bytes.value)?.state !== "live") return c
    c.blocks = 1
    c.blockBytes = size
  }
  return c
}

/** The change `writes` make to the counters, given the values `checks` expect (a write without a check counts as from absent). */
const deltaOf = (checks: ReadonlyArray<KvCheck>, writes: ReadonlyArray<KvWrite>): Counts => {
  const before = new Map(checks.map((c) => [c.key, c.expected]))
  const d = zero()
  for (const w of writes) {
    add(d, countOf(w.key, w._tag === "Put" ? Option.some(w.value) : Option.none()))
    add(d, countOf(w.key, before.get(w.key) ?? Option.none()), -1)
  }
  return d
}

const sameBytes = (a: Option.Option<Uint8Array>, b: Option.Option<Uint8Array>): boolean =>
  Option.isNone(a) ? Option.isNone(b) : Option.isSome(b) && Buffer.from(a.value).equals(Buffer.from(b.value))

/**
 * `kv.commit` with the counters following the writes: every write to a
 * record key must have a check (its expected value is what it replaces).
 * False only when a record check fails; a lost race on the counter shard
 * is retried on another shard.
 */
export const commit = (kv: Kv, checks: ReadonlyArray<KvCheck>, writes: ReadonlyArray<KvWrite>): Effect.Effect<boolean, MetadataError> => {
  const delta = deltaOf(checks, writes)
  if (isZero(delta)) return kv.commit(checks, writes)
  return Effect.gen(function*() {
    while (true) {
      const shard = shardKeys[Math.floor(Math.random() * SHARDS)]!
      const raw = yield* kv.get(shard)
      const current = Option.flatMap(raw, (b) => Option.fromNullable(decode(b))).pipe(Option.getOrElse(zero))
      const next = add(current, delta)
      if (yield* kv.commit([...checks, { key: shard, expected: raw }], [...writes, KV.put(shard, encode(next))])) return true
      // Which check failed: a record's (the caller's race) or only the shard's (retry).
      for (const c of checks) {
        if (!sameBytes(yield* kv.get(c.key), c.expected)) return false
      }
    }
  })
}

/** `kv.compareAndSet` with the counters following the change. */
export const compareAndSet = (kv: Kv, key: string, expected: Option.Option<Uint8Array>, next: Option.Option<Uint8Array>) =>
  commit(kv, [{ key, expected }], [Option.isSome(next) ? KV.put(key, next.value) : KV.del(key)])

/** The counters as kept: the base plus every shard; None when there is no base (see the module comment). */
export const read = (kv: Kv): Effect.Effect<Option.Option<Counts>, MetadataError> =>
  Effect.gen(function*() {
    const base = Option.flatMap(yield* kv.get(BASE), (b) => Option.fromNullable(decode(b)))
    if (Option.isNone(base)) return Option.none()
    const total = { ...base.value }
    yield* Stream.runForEach(kv.list(SHARD_PREFIX), ([, bytes]) => Effect.sync(() => void add(total, decode(bytes) ?? zero())))
    return Option.some(total)
  })

/**
 * Sets the counters to `counts`: base written, shards removed, in one commit
 * that checks the base and every shard key, so it fails (false) when any
 * counted change lands meanwhile.
 */
export const reset = (kv: Kv, counts: Counts, expectedBase?: Option.Option<Uint8Array>): Effect.Effect<boolean, MetadataError> =>
  Effect.gen(function*() {
    const checks: Array<KvCheck> = [{ key: BASE, expected: expectedBase ?? (yield* kv.get(BASE)) }]
    const writes: Array<KvWrite> = [KV.put(BASE, encode(counts))]
    for (const key of shardKeys) {
      const expected = yield* kv.get(key)
      checks.push({ key, expected })
      if (Option.isSome(expected)) writes.push(KV.del(key))
    }
    return yield* kv.commit(checks, writes)
  })

/**
 * Starts the counters of a store opened empty (no blob or block record, no
 * base): from then on the shards count every change. A store that already
 * has records is left alone (`check --repair` counts it).
 */
export const initialize = (kv: Kv): Effect.Effect<void, MetadataError> =>
  Effect.gen(function*() {
    if (Option.isSome(yield* kv.get(BASE))) return
    if (Option.isSome(yield* Stream.runHead(kv.list(BlobMeta.BLOBS)))) return
    if (Option.isSome(yield* Stream.runHead(kv.list(BlobMeta.BLOCKS)))) return
    // Shards of earlier changes are dropped with it; a put landing meanwhile fails the commit (the next open tries again).
    yield* reset(kv, zero(), Option.none())
  })
