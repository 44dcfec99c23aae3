/**
 * One walk over a content-addressed store, shared by gc and check. Every
 * listing is streamed and merged in order (merge.ts); manifest references
 * are spilled to the key-value store (spill.ts). The phases:
 *
 *   content  monolithic objects (`<algo>/…`) against the blob records;
 *            chunked manifests are spilled on the way; claims (Pending)
 *            of puts that never published are reclaimed
 *   blocks   block objects (`<blocks>/…`) against the block records and
 *            the spilled reference counts
 *   uploads  resumable uploads past their deadline
 *   staging  the staging area (`<staging>/…`)
 *   multipart the object store's unfinished multipart uploads
 *
 * Safety against concurrent writers. Nothing younger than the grace period
 * is removed: an object by its modification time (a store that keeps none
 * never loses one), a block by the time its last reference was taken
 * (BlockRecord.at: a put holds references that are in no manifest until it
 * publishes). A block is removed through a compareAndSet on the record as
 * listed, so one that gained a reference since is kept; a put that comes
 * later finds the record Deleting and writes a fresh copy, as after any
 * delete. So the grace period must exceed the longest put (see
 * Lifecycle.DEFAULT_GRACE).
 */
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { randomUUID } from "node:crypto"
import * as BinaryKey from "../core/BinaryKey.js"
import * as BlobLocator from "../core/BlobLocator.js"
import type { StorageError } from "../core/Errors.js"
import * as Hashing from "../core/Hashing.js"
import type { ObjectStat } from "../core/Models.js"
import * as BlobMeta from "../blobs/BlobMeta.js"
import * as Counters from "../blobs/counters.js"
import { NAMESPACE as UPLOADS } from "../uploads/Uploads.js"
import { type Address, type Context, joinKeyOf, parseContent, prefixOf } from "./context.js"
import { type Group, type Keyed, outerJoin } from "./merge.js"
import * as Records from "./records.js"
import { MAX_PROBLEMS, type LeftoverKind, type ProblemKind, type RepairKind, type Tallies } from "./report.js"
import * as Spill from "./spill.js"

/** What a walk does besides counting. */
export interface Mode {
  readonly now: number
  /** Milliseconds: leftovers younger than this are kept. */
  readonly grace: number
  /** Remove the leftovers older than the grace period (gc without --dry-run). */
  readonly reclaim: boolean
  /** Look for inconsistencies (check). */
  readonly check: boolean
  /** Re-hash every object a live record names (check --read-data). */
  readonly readData: boolean
  /** Fix what can be fixed without guessing (check --repair). */
  readonly repair: boolean
}

interface Walk {
  readonly ctx: Context
  readonly mode: Mode
  readonly t: Tallies
  readonly spill: Spill.Spill
  /** `<scheme>://<bucket>/`: locator texts of this store start with it. */
  readonly rootText: string
  /** No blob record at all while objects exist: the metadata may be lost, and orphans are kept (see `orphan`). */
  metadataMissing: boolean
  /** Orphans kept because the metadata may be missing. */
  heldOrphans: number
}

const problem = (w: Walk, kind: ProblemKind, subject: string, description: string, repaired = false) =>
  Effect.sync(() => {
    w.t.problemCounts[kind]++
    if (w.t.problems.length < MAX_PROBLEMS) w.t.problems.push({ kind, subject, description, repaired })
  })

const repaired = (w: Walk, kind: RepairKind) => Effect.sync(() => void w.t.repairs[kind]++)

const leftover = (w: Walk, kind: LeftoverKind, bytes: number) =>
  Effect.sync(() => {
    w.t.leftovers[kind].count++
    w.t.leftovers[kind].bytes += bytes
  })

const young = (w: Walk, kind: LeftoverKind) => Effect.sync(() => void w.t.young[kind]++)

/** Whether an object is past the grace period; one without a modification time never is. */
const pastGrace = (w: Walk, stat: ObjectStat): boolean =>
  Option.match(stat.lastModified, { onNone: () => false, onSome: (d) => w.mode.now - d.getTime() > w.mode.grace })

const text = BlobLocator.render

/** Whether the object at `locator` holds exactly the content `key` (re-hashed); a missing object does not. */
const holds = (w: Walk, locator: BlobLocator.BlobLocator, key: BinaryKey.BinaryKey) =>
  Hashing.hashStream(key.algorithm, w.ctx.objects.get(locator)).pipe(
    Effect.map((found) => found.digest === key.digest && found.size === key.size),
    Effect.catchIf((e) => e.reason === "NotFound", () => Effect.succeed(false))
  )

/** The content key an object at `address` would hold, by re-hashing it; None when it cannot be read. */
const rehash = (w: Walk, stat: ObjectStat, address: Address) =>
  Hashing.hashStream(address.algorithm, w.ctx.objects.get(stat.locator)).pipe(
    Effect.map((key) => (key.digest === address.digest ? Option.some(key) : Option.none())),
    Effect.catchIf((e) => e.reason === "NotFound", () => Effect.succeed(Option.none<BinaryKey.BinaryKey>()))
  )

/** Parses a locator text the walk holds (records keep texts; see records.ts) for a call that needs the object. */
const locatorOf = (t: string): BlobLocator.BlobLocator => Either.getOrThrow(BlobLocator.parse(t))

/** A rendered key as a BinaryKey, for the calls that need one (rare: repairs, removals, re-hashing). */
const keyOf = (rendered: string): BinaryKey.BinaryKey => Either.getOrThrow(BinaryKey.parse(rendered))

/** What is left to do after a synchronous pass: the effects it could not avoid, run in order. */
type Todo = Array<Effect.Effect<unknown, StorageError>>

const runTodo = (todo: Todo): Effect.Effect<void, StorageError> =>
  todo.length === 0 ? Effect.void : Effect.forEach(todo, (e) => e, { discard: true })

/**
 * Checks an object a live record names: exists, has the key's size, and
 * (readData) hashes to it. With the object's listing entry at hand
 * (`found`) the common case needs no effect.
 */
const checkObject = (
  w: Walk,
  todo: Todo,
  subject: string,
  rendered: string,
  size: number,
  locator: string,
  found: ObjectStat | undefined,
  listed: boolean
) => {
  /** Checks the size now; the re-hash (readData) is the only effect. */
  const sized = (stat: ObjectStat) => {
    if (stat.size !== size) {
      problemNow(w, "wrongSize", subject, `${locator} holds ${stat.size} bytes, not ${size}`)
      return undefined
    }
    if (!w.mode.readData) return undefined
    return Effect.flatMap(holds(w, locatorOf(locator), keyOf(rendered)), (ok) =>
      ok ? Effect.void : problem(w, "corrupted", subject, `${locator} does not hash to ${rendered}`))
  }
  if (found !== undefined) {
    const e = sized(found)
    if (e !== undefined) todo.push(e)
    return
  }
  // Its own address and absent from the listing: missing. Anywhere else: looked up.
  if (listed) return problemNow(w, "missingObject", subject, `${locator} is missing`)
  todo.push(Effect.flatMap(w.ctx.objects.head(locatorOf(locator)), (stat) =>
    Option.isNone(stat) ? problem(w, "missingObject", subject, `${locator} is missing`) : sized(stat.value) ?? Effect.void))
}

const problemNow = (w: Walk, kind: ProblemKind, subject: string, description: string, repaired = false) => {
  w.t.problemCounts[kind]++
  if (w.t.problems.length < MAX_PROBLEMS) w.t.problems.push({ kind, subject, description, repaired })
}

/**
 * The replica index's entries for a key that point into this store: each
 * must name an existing object (the record's own locator is checked as the
 * record's object). Entries for other stores (replication targets) are not
 * this store's to check. `entries` are the texts the replica listing gave;
 * undefined when the index has no listing (then it is asked per key).
 */
const checkReplicas = (w: Walk, todo: Todo, subject: string, rendered: string, own: string, entries: ReadonlyArray<string> | undefined) => {
  const ours = (texts: ReadonlyArray<string>) => texts.filter((t) => t !== own && t.startsWith(w.rootText))
  const each = (texts: ReadonlyArray<string>) =>
    Effect.forEach(texts, (t) =>
      Effect.gen(function*() {
        const l = locatorOf(t)
        if (Option.isSome(yield* w.ctx.objects.head(l))) return
        const fixed = w.mode.repair
        if (fixed) {
          yield* w.ctx.replicas.remove(keyOf(rendered), l)
          yield* repaired(w, "replicaDropped")
        }
        yield* problem(w, "danglingReplica", subject, `the replica index names ${t}, which is missing`, fixed)
      }), { discard: true })
  if (entries !== undefined) {
    const others = ours(entries)
    if (others.length > 0) todo.push(each(others))
    return
  }
  todo.push(Effect.flatMap(w.ctx.replicas.replicas(keyOf(rendered)), (ls) => each(ours(ls.map(text)))))
}

/**
 * The replica listing joined to a stream of records keyed by rendered key:
 * each record with its replica texts (undefined when the index cannot list,
 * or when no check runs and they are not needed).
 */
const withReplicas = <A>(w: Walk, records: Stream.Stream<Keyed<A>, StorageError>) => {
  const listing = w.ctx.replicas.list
  if (!w.mode.check || listing === undefined) {
    return Stream.map(records, (r) => ({ key: r.key, value: r.value, replicas: undefined as ReadonlyArray<string> | undefined }))
  }
  return outerJoin(records, Stream.map(listing, ([k, texts]): Keyed<ReadonlyArray<string>> => ({ key: k, value: texts }))).pipe(
    Stream.mapChunks((groups) => {
      const out: Array<{ key: string; value: A; replicas: ReadonlyArray<string> | undefined }> = []
      for (const g of groups) for (const v of g.left) out.push({ key: g.key, value: v, replicas: g.right[0] ?? [] })
      return Chunk.unsafeFromArray(out)
    })
  )
}

// --- content: monolithic objects against blob records ------------------------

/** A blob record whose object is at its own content address (monolithic: Live, Pending or Deleting). */
interface Named {
  readonly rendered: string
  readonly size: number
  readonly locator: string
  readonly live: boolean
  readonly replicas: ReadonlyArray<string> | undefined
  /** A Pending record: the claim of a put, and the record as listed. */
  readonly pending: { readonly key: BinaryKey.BinaryKey; readonly since: number; readonly raw: Uint8Array } | undefined
}

/** Blob records keyed by rendered key, decoded; manifests are spilled on the way, undecodable ones reported. */
const blobRecords = (w: Walk) =>
  Stream.mapChunks(w.ctx.kv.list(BlobMeta.BLOBS), (entries) => {
    const out: Array<Keyed<{ readonly key: BinaryKey.BinaryKey; readonly record: Records.Blob; readonly raw: Uint8Array }>> = []
    for (const [kvKey, bytes] of entries) {
      const rendered = kvKey.slice(BlobMeta.BLOBS.length)
      const parsed = BinaryKey.parse(rendered)
      if (Either.isLeft(parsed)) {
        if (w.mode.check) problemNow(w, "undecodable", kvKey, parsed.left.message)
        continue
      }
      const record = Records.blob(parsed.right, bytes, w.rootText, w.ctx.blocks)
      if (typeof record === "string") {
        if (w.mode.check) problemNow(w, "undecodable", kvKey, record)
        continue
      }
      out.push({ key: rendered, value: { key: parsed.right, record, raw: bytes } })
    }
    return Chunk.unsafeFromArray(out)
  })

/** Counts a blob record, spills a manifest, and keeps a monolithic record at its own address for the merge. */
const blobEntries = (w: Walk) =>
  Stream.mapChunksEffect(withReplicas(w, blobRecords(w)), (rows) => {
    const out: Array<Keyed<Named>> = []
    const todo: Todo = []
    for (const { replicas, value: { key, raw, record } } of rows) {
      const rendered = BinaryKey.render(key)
      const live = record._tag !== "Pending" && record.live
      if (live) {
        w.t.blobs++
        w.t.logicalBytes += key.size
        if (record._tag === "Chunked") w.t.chunkedBlobs++
        else w.t.monolithicBytes += key.size
      }
      if (record._tag === "Chunked") {
        if (live) for (const [block, locator] of record.blocks) w.spill.push(block, rendered, locator)
        continue
      }
      const pending = record._tag === "Pending" ? { key, since: record.since, raw } : undefined
      const named: Named = { rendered, size: key.size, locator: record.locator, live, replicas, pending }
      const address = record.locator.startsWith(w.rootText) ? parseContent(record.locator.slice(w.rootText.length)) : Option.none()
      // Its own address: merged with the objects. Anywhere else (not written by this store): looked up.
      if (Option.isSome(address) && address.value.joinKey === joinKeyOf(key)) {
        out.push({ key: address.value.joinKey, value: named })
      } else if (pending !== undefined) {
        pendingClaim(w, todo, named, undefined)
      } else if (w.mode.check && live) {
        const subject = BlobMeta.BLOBS + rendered
        checkObject(w, todo, subject, rendered, key.size, record.locator, undefined, false)
        checkReplicas(w, todo, subject, rendered, record.locator, replicas)
      }
    }
    return Effect.as(Effect.zipRight(runTodo(todo), w.spill.flushIfFull), Chunk.unsafeFromArray(out))
  })

interface Listed {
  readonly stat: ObjectStat
  readonly address: Address
}

/** Objects of an area, in order, as join keys (names no rule explains are counted and skipped). */
const areaObjects = (w: Walk, area: string, algorithms: ReadonlyArray<string>) =>
  Stream.flatten(Stream.fromIterable(algorithms.map((a) => w.ctx.objects.list(prefixOf(w.ctx, `${area}${a}/`))))).pipe(
    Stream.mapChunks((stats) => {
      const out: Array<Keyed<Listed>> = []
      for (const stat of stats) {
        const address = parseContent(stat.locator.path.slice(area.length))
        if (Option.isNone(address)) w.t.unknownObjects++
        else out.push({ key: address.value.joinKey, value: { stat, address: address.value } })
      }
      return Chunk.unsafeFromArray(out)
    })
  )

/** Sorted as the listings are: blake3 before sha256. */
const ALGORITHMS: ReadonlyArray<BinaryKey.HashAlgorithm> = ["blake3", "sha256"]

/**
 * An object at a content or block address that no record names. With
 * `repair` a monolithic one is re-hashed and, when it holds the content its
 * address names, recorded again (index rebuild); otherwise it is a leftover
 * once past the grace period.
 */
const orphan = (w: Walk, todo: Todo, stat: ObjectStat, address: Address, monolithic: boolean) => {
  const rest = (todo: Todo) => {
    if (w.metadataMissing) return void w.heldOrphans++
    if (!pastGrace(w, stat)) return void w.t.young.orphans++
    if (w.mode.reclaim) {
      todo.push(Effect.zipRight(w.ctx.objects.delete(stat.locator), leftover(w, "orphans", stat.size)))
    } else {
      w.t.leftovers.orphans.count++
      w.t.leftovers.orphans.bytes += stat.size
    }
  }
  if (!(monolithic && w.mode.repair)) return rest(todo)
  todo.push(Effect.gen(function*() {
    const key = yield* rehash(w, stat, address)
    if (Option.isSome(key) && (yield* reindex(w, key.value, stat.locator))) return
    const later: Todo = []
    rest(later)
    yield* runTodo(later)
  }))
}

/** Records a monolithic blob found by its bytes; false when a record exists meanwhile. */
const reindex = (w: Walk, key: BinaryKey.BinaryKey, locator: BlobLocator.BlobLocator) =>
  Effect.gen(function*() {
    const live: BlobMeta.Live = {
      _tag: "Live",
      id: randomUUID(),
      createdAt: w.mode.now,
      contentType: undefined,
      storage: { _tag: "Monolithic", locator }
    }
    const ok = yield* Counters.compareAndSet(w.ctx.kv, BlobMeta.blobKey(key), Option.none(), Option.some(BlobMeta.encodeBlob(key, live)))
    if (!ok) return false
    yield* w.ctx.replicas.add(key, locator)
    yield* repaired(w, "reindexed")
    w.t.blobs++
    w.t.logicalBytes += key.size
    w.t.monolithicBytes += key.size
    return true
  })

/**
 * A Pending record: the claim of a monolithic put, which moves its staged
 * bytes to the address and publishes Live within moments. One older than
 * the grace period belongs to a put that was killed (its staged object, if
 * the move did not happen, is a staging leftover): the claim is taken over
 * as a delete would (Pending -> Deleting, only if unchanged since listed),
 * the object it moved, if any, removed, then the record. A put of the same
 * content meanwhile finds Deleting and stores a fresh copy elsewhere, as
 * after any delete.
 */
const pendingClaim = (w: Walk, todo: Todo, r: Named, stat: ObjectStat | undefined) => {
  const p = r.pending!
  if (w.mode.now - p.since <= w.mode.grace) return void w.t.young.pending++
  const bytes = stat?.size ?? 0
  if (!w.mode.reclaim) {
    w.t.leftovers.pending.count++
    w.t.leftovers.pending.bytes += bytes
    return
  }
  todo.push(Effect.gen(function*() {
    const kvKey = BlobMeta.blobKey(p.key)
    const locator = locatorOf(r.locator)
    const tomb = BlobMeta.encodeBlob(p.key, {
      _tag: "Deleting",
      token: randomUUID(),
      since: w.mode.now,
      blob: { _tag: "Live", id: randomUUID(), createdAt: p.since, contentType: undefined, storage: { _tag: "Monolithic", locator } }
    })
    if (!(yield* Counters.compareAndSet(w.ctx.kv, kvKey, Option.some(p.raw), Option.some(tomb)))) return
    yield* w.ctx.objects.delete(locator).pipe(Effect.catchIf((e) => e.reason === "NotFound", () => Effect.void))
    // Fails harmlessly when a put has taken the record over meanwhile.
    yield* Counters.compareAndSet(w.ctx.kv, kvKey, Option.some(tomb), Option.none())
    yield* leftover(w, "pending", bytes)
  }))
}

/** Whether an object listed in a group is the one a record's locator text names. */
const sameObject = (w: Walk, o: Listed, locator: string) =>
  locator.length === w.rootText.length + o.stat.locator.path.length && locator.endsWith(o.stat.locator.path) &&
  locator.startsWith(w.rootText)

const contentPhase = (w: Walk) =>
  Stream.runForEachChunk(outerJoin(areaObjects(w, "", ALGORITHMS), blobEntries(w)), (groups) => {
    const todo: Todo = []
    for (const group of groups) {
      for (const r of group.right) {
        if (r.pending !== undefined) pendingClaim(w, todo, r, group.left.find((o) => sameObject(w, o, r.locator))?.stat)
        if (!r.live || !w.mode.check) continue
        const subject = BlobMeta.BLOBS + r.rendered
        const o = group.left.find((o) => sameObject(w, o, r.locator))
        checkObject(w, todo, subject, r.rendered, r.size, r.locator, o?.stat, true)
        checkReplicas(w, todo, subject, r.rendered, r.locator, r.replicas)
      }
      for (const o of group.left) {
        if (!group.right.some((r) => sameObject(w, o, r.locator))) orphan(w, todo, o.stat, o.address, true)
      }
    }
    return runTodo(todo)
  })

// --- blocks: block objects against block records and manifest references ----

interface BlockEntry {
  readonly kvKey: string
  readonly rendered: string
  readonly size: number
  readonly raw: Option.Option<Uint8Array>
  readonly record: Records.Block | undefined
  /** Distinct manifests referencing the block. */
  readonly refs: number
  /** Where a manifest says the block is. */
  readonly manifestLocator: string | undefined
  readonly replicas: ReadonlyArray<string> | undefined
}

/** Block records merged with the spilled reference counts (and the replica listing), as join keys. */
const blockEntries = (w: Walk) =>
  withReplicas(
    w,
    outerJoin(
      Stream.map(w.ctx.kv.list(BlobMeta.BLOCKS), ([kvKey, raw]) => ({ key: kvKey.slice(BlobMeta.BLOCKS.length), value: raw })),
      w.spill.counts
    ).pipe(Stream.map((g): Keyed<Group<Uint8Array, { readonly count: number; readonly first: string }>> => ({ key: g.key, value: g })))
  ).pipe(
    Stream.mapChunks((rows) => {
      const out: Array<Keyed<BlockEntry>> = []
      for (const { key: rendered, replicas, value: g } of rows) {
        const kvKey = BlobMeta.BLOCKS + rendered
        const parts = Records.splitKey(rendered)
        if (parts === undefined) {
          if (w.mode.check) problemNow(w, "undecodable", kvKey, Either.match(BinaryKey.parse(rendered), { onLeft: (e) => e.message, onRight: () => "not a block key" }))
          continue
        }
        const raw = g.left[0]
        let record: Records.Block | undefined
        if (raw !== undefined) {
          const decoded = Records.block(raw, w.rootText, w.ctx.blocks)
          if (typeof decoded === "string") {
            if (w.mode.check) problemNow(w, "undecodable", kvKey, decoded)
            continue
          }
          record = decoded
        }
        const counted = g.right[0]
        out.push({
          key: Records.joinKeyOfRendered(parts),
          value: {
            kvKey,
            rendered,
            size: parts.size,
            raw: Option.fromNullable(raw),
            record,
            refs: counted?.count ?? 0,
            manifestLocator: counted?.first,
            replicas
          }
        })
      }
      return Chunk.unsafeFromArray(out)
    })
  )

/** Removes an unreferenced block: marked Deleting (only if unchanged since listed), object, replica entry, record. */
const removeBlock = (w: Walk, e: BlockEntry, locator: BlobLocator.BlobLocator) =>
  Effect.gen(function*() {
    const tomb = BlobMeta.encodeBlock({ _tag: "Deleting", token: randomUUID(), since: w.mode.now, locator })
    // A put that took a reference since the listing changed the record: the block stays.
    if (!(yield* Counters.compareAndSet(w.ctx.kv, e.kvKey, e.raw, Option.some(tomb)))) return false
    yield* finishBlock(w, e, locator, tomb)
    return true
  })

/** The end of a block's delete: its object, its replica entry, then its Deleting record `tomb`. */
const finishBlock = (w: Walk, e: BlockEntry, locator: BlobLocator.BlobLocator, tomb: Uint8Array) =>
  Effect.gen(function*() {
    yield* w.ctx.objects.delete(locator)
    yield* w.ctx.replicas.remove(keyOf(e.rendered), locator)
    // Fails harmlessly when a put has taken the record over meanwhile.
    yield* Counters.compareAndSet(w.ctx.kv, e.kvKey, Option.some(tomb), Option.none())
  })

/** One block record (or a manifest reference without one); returns the locator text it names, if any. */
const blockEntry = (w: Walk, todo: Todo, e: BlockEntry, objects: ReadonlyArray<Listed>): string | undefined => {
  const record = e.record
  const find = (locator: string) => objects.find((o) => sameObject(w, o, locator))?.stat
  if (record?._tag === "Live") {
    const named = record.locator
    // Absent in records written before `at` existed: no put of this version holds a reference then.
    const settled = w.mode.now - (record.at ?? 0) > w.mode.grace
    if (e.refs === 0) {
      if (!settled) {
        w.t.young.blocks++
      } else if (!w.mode.reclaim) {
        w.t.leftovers.blocks.count++
        w.t.leftovers.blocks.bytes += e.size
      } else {
        todo.push(Effect.flatMap(removeBlock(w, e, locatorOf(record.locator)), (removed) =>
          removed ? leftover(w, "blocks", e.size) : Effect.void))
      }
      // Named either way: a removed block's object is not an orphan as well.
      return named
    }
    w.t.blocks++
    w.t.blockBytes += e.size
    if (!w.mode.check) return named
    const listed = record.locator.startsWith(w.rootText + w.ctx.blocks)
    checkObject(w, todo, e.kvKey, e.rendered, e.size, record.locator, find(record.locator), listed)
    if (record.refs !== e.refs && settled) {
      const describe = `the record counts ${record.refs} references, the manifests ${e.refs}`
      if (!w.mode.repair) {
        problemNow(w, "refcount", e.kvKey, describe)
      } else {
        todo.push(Effect.gen(function*() {
          const next = BlobMeta.encodeBlock({ _tag: "Live", refs: e.refs, locator: locatorOf(record.locator), ...(record.at === undefined ? {} : { at: record.at }) })
          const fixed = yield* Counters.compareAndSet(w.ctx.kv, e.kvKey, e.raw, Option.some(next))
          if (fixed) yield* repaired(w, "recounted")
          yield* problem(w, "refcount", e.kvKey, describe, fixed)
        }))
      }
    }
    checkReplicas(w, todo, e.kvKey, e.rendered, record.locator, e.replicas)
    return named
  }
  if (record?._tag === "Deleting") {
    const named = record.locator
    if (w.mode.check && e.refs > 0) {
      problemNow(w, "danglingBlock", e.kvKey, `${e.refs} manifest(s) reference a block being deleted`)
    }
    if (w.mode.now - record.since <= w.mode.grace) {
      w.t.young.blocks++
      return named
    }
    // A delete that stalled: finished here.
    const bytes = find(named)?.size ?? 0
    if (w.mode.reclaim) todo.push(finishBlock(w, e, locatorOf(record.locator), Option.getOrThrow(e.raw)))
    w.t.leftovers.blocks.count++
    w.t.leftovers.blocks.bytes += bytes
    return named
  }
  // No record, but manifests reference the block.
  const where = e.manifestLocator === undefined ? undefined : Either.getOrUndefined(BlobLocator.parse(e.manifestLocator))
  if (w.mode.check) {
    if (w.mode.repair && where !== undefined) {
      todo.push(Effect.gen(function*() {
        let fixed = false
        if (yield* holds(w, where, keyOf(e.rendered))) {
          const live = BlobMeta.encodeBlock({ _tag: "Live", refs: e.refs, locator: where, at: w.mode.now })
          fixed = yield* Counters.compareAndSet(w.ctx.kv, e.kvKey, Option.none(), Option.some(live))
          if (fixed) yield* repaired(w, "blockRecordRestored")
        }
        yield* problem(w, "missingBlockRecord", e.kvKey, `${e.refs} manifest(s) reference a block with no record`, fixed)
      }))
    } else {
      problemNow(w, "missingBlockRecord", e.kvKey, `${e.refs} manifest(s) reference a block with no record`)
    }
  }
  return where === undefined ? undefined : text(where)
}

const blocksPhase = (w: Walk) =>
  Stream.runForEachChunk(outerJoin(areaObjects(w, w.ctx.blocks, ALGORITHMS), blockEntries(w)), (groups) => {
    const todo: Todo = []
    for (const group of groups) {
      let named: Array<string> | undefined
      for (const e of group.right) {
        const n = blockEntry(w, todo, e, group.left)
        if (n !== undefined) (named ??= []).push(n)
      }
      for (const o of group.left) {
        if (named === undefined || !named.some((n) => sameObject(w, o, n))) orphan(w, todo, o.stat, o.address, false)
      }
    }
    return runTodo(todo)
  })

// --- uploads, staging, multipart --------------------------------------------

const uploadsPhase = (w: Walk) =>
  Option.match(w.ctx.uploads, {
    onNone: () => Effect.void,
    onSome: (uploads) =>
      Stream.runForEach(uploads.list, (s) =>
        Effect.gen(function*() {
          if (s.expiresAt.getTime() >= w.mode.now) return
          if (w.mode.reclaim) yield* uploads.abort(s.id)
          yield* leftover(w, "uploads", s.received)
        }))
  })

const stagingPhase = (w: Walk) =>
  Effect.gen(function*() {
    // Objects of one upload are listed together: its record is read once.
    let lastId: string | undefined
    let lastKnown = false
    yield* Stream.runForEach(w.ctx.objects.list(prefixOf(w.ctx, w.ctx.staging)), (stat) =>
      Effect.gen(function*() {
        const path = stat.locator.path
        if (path.startsWith(w.ctx.uploadsArea)) {
          const id = path.slice(w.ctx.uploadsArea.length).split("/")[0]!
          if (id !== lastId) {
            lastId = id
            lastKnown = Option.isSome(yield* w.ctx.kv.get(UPLOADS + id))
          }
          // An upload in progress owns its staged bytes (its deadline decides, see uploadsPhase).
          if (lastKnown) return
        }
        if (!pastGrace(w, stat)) return yield* young(w, "staging")
        if (w.mode.reclaim) yield* w.ctx.objects.delete(stat.locator)
        yield* leftover(w, "staging", stat.size)
      }))
  })

/** Whether a path is in one of the areas Graviton writes (multipart uploads elsewhere are not ours). */
const ours = (w: Walk, path: string) =>
  path.startsWith(w.ctx.staging) || path.startsWith(w.ctx.blocks) ||
  ALGORITHMS.some((a) => path.startsWith(`${a}/`))

const multipartPhase = (w: Walk) =>
  Option.match(w.ctx.multipart, {
    onNone: () => Effect.void,
    onSome: (multipart) =>
      Stream.runForEach(multipart.list(w.ctx.root), (u) =>
        Effect.gen(function*() {
          if (!ours(w, u.locator.path)) return
          const old = Option.match(u.initiated, { onNone: () => false, onSome: (d) => w.mode.now - d.getTime() > w.mode.grace })
          if (!old) return yield* young(w, "multipart")
          const bytes = yield* multipart.size(u)
          if (w.mode.reclaim) yield* multipart.abort(u)
          yield* leftover(w, "multipart", bytes)
        })).pipe(
          Effect.catchIf((e) => e.reason === "Unsupported", (e) =>
            Effect.sync(() => void w.t.notes.push(`multipart uploads not listed: ${e.message}`)))
        )
  })

/** Walks the whole store (see the module comment), adding to `t`. */
export const walk = (ctx: Context, mode: Mode, t: Tallies): Effect.Effect<void, StorageError> =>
  Effect.gen(function*() {
    yield* Spill.sweepOld(ctx, mode.now, mode.grace)
    const anyRecord = yield* Stream.runHead(ctx.kv.list(BlobMeta.BLOBS))
    const w: Walk = { ctx, mode, t, spill: Spill.make(ctx, mode.now), rootText: `${ctx.scheme}://${ctx.bucket}/`, metadataMissing: Option.isNone(anyRecord), heldOrphans: 0 }
    yield* Effect.gen(function*() {
      yield* contentPhase(w)
      yield* w.spill.flush
      yield* blocksPhase(w)
    }).pipe(Effect.ensuring(Effect.ignore(w.spill.clear)))
    if (w.heldOrphans > 0) {
      t.notes.push(
        `no blob record exists while ${w.heldOrphans} object(s) do: the metadata may be lost, so they are kept; ` +
          "`graviton check --repair` rebuilds the index from the objects"
      )
    }
    yield* uploadsPhase(w)
    yield* stagingPhase(w)
    yield* multipartPhase(w)
  })
