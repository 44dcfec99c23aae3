/**
 * One walk over a content-addressed store, shared by gc and check. Every
 * listing is streamed and merged in order (merge.ts); manifest references
 * are spilled to the key-value store (spill.ts). The phases:
 *
 *   content  monolithic objects (`<algo>/…`) against the blob records;
 *            chunked manifests are spilled on the way
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
import { type Keyed, outerJoin } from "./merge.js"
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

/** Checks an object a live record names: exists, has the key's size, and (readData) hashes to it. */
const checkObject = (
  w: Walk,
  subject: string,
  key: BinaryKey.BinaryKey,
  locator: BlobLocator.BlobLocator,
  found: ObjectStat | undefined
) =>
  Effect.gen(function*() {
    const stat = found ?? Option.getOrUndefined(yield* w.ctx.objects.head(locator))
    if (stat === undefined) return yield* problem(w, "missingObject", subject, `${text(locator)} is missing`)
    if (stat.size !== key.size) {
      return yield* problem(w, "wrongSize", subject, `${text(locator)} holds ${stat.size} bytes, not ${key.size}`)
    }
    if (w.mode.readData && !(yield* holds(w, locator, key))) {
      yield* problem(w, "corrupted", subject, `${text(locator)} does not hash to ${BinaryKey.render(key)}`)
    }
  })

/**
 * The replica index's entries for `key` that point into this store: each
 * must name an existing object (the record's own locator is checked as the
 * record's object). Entries for other stores (replication targets) are not
 * this store's to check.
 */
const checkReplicas = (w: Walk, subject: string, key: BinaryKey.BinaryKey, own: BlobLocator.BlobLocator) =>
  Effect.gen(function*() {
    const entries = yield* w.ctx.replicas.replicas(key)
    for (const l of entries) {
      if (l.scheme !== w.ctx.scheme || l.bucket !== w.ctx.bucket || text(l) === text(own)) continue
      if (Option.isSome(yield* w.ctx.objects.head(l))) continue
      const fixed = w.mode.repair
      if (fixed) {
        yield* w.ctx.replicas.remove(key, l)
        yield* repaired(w, "replicaDropped")
      }
      yield* problem(w, "danglingReplica", subject, `the replica index names ${text(l)}, which is missing`, fixed)
    }
  })

// --- content: monolithic objects against blob records ------------------------

/** A blob record whose object is in the content area (monolithic: Live, Pending or Deleting). */
interface Named {
  readonly key: BinaryKey.BinaryKey
  readonly locator: BlobLocator.BlobLocator
  readonly live: boolean
}

/** The content address of `locator`, when it is one of this store's. */
const contentAddress = (w: Walk, locator: BlobLocator.BlobLocator): Option.Option<Address> =>
  locator.scheme === w.ctx.scheme && locator.bucket === w.ctx.bucket ? parseContent(locator.path) : Option.none()

/** Reads one `blobs/` entry: counts it, spills a manifest, and returns the monolithic object it names. */
const blobEntry = (w: Walk, [kvKey, bytes]: readonly [string, Uint8Array]) =>
  Effect.gen(function*() {
    const parsed = BinaryKey.parse(kvKey.slice(BlobMeta.BLOBS.length))
    if (Either.isLeft(parsed)) {
      if (w.mode.check) yield* problem(w, "undecodable", kvKey, parsed.left.message)
      return Option.none<Keyed<Named>>()
    }
    const key = parsed.right
    const decoded = BlobMeta.decodeBlob(key, bytes)
    if (Either.isLeft(decoded)) {
      if (w.mode.check) yield* problem(w, "undecodable", kvKey, decoded.left)
      return Option.none<Keyed<Named>>()
    }
    const record = decoded.right
    if (record._tag === "Live") {
      w.t.blobs++
      w.t.logicalBytes += key.size
      if (record.storage._tag === "Chunked") w.t.chunkedBlobs++
      else w.t.monolithicBytes += key.size
    }
    const blob = record._tag === "Pending" ? undefined : record._tag === "Live" ? record : record.blob
    if (blob !== undefined && blob.storage._tag === "Chunked") {
      if (record._tag !== "Live") return Option.none<Keyed<Named>>()
      // One reference per distinct block, as the record owns them.
      const seen = new Set<string>()
      for (const b of blob.storage.blocks) {
        const block = BinaryKey.render(b.key)
        if (seen.has(block)) continue
        seen.add(block)
        yield* w.spill.add(block, BinaryKey.render(key), text(b.locator))
      }
      return Option.none<Keyed<Named>>()
    }
    const locator = record._tag === "Pending" ? record.locator : (blob!.storage as { readonly locator: BlobLocator.BlobLocator }).locator
    const address = contentAddress(w, locator)
    const named: Named = { key, locator, live: record._tag === "Live" }
    // Its own address: merged with the objects. Anywhere else (not written by this store): looked up.
    if (Option.isSome(address) && address.value.joinKey === joinKeyOf(key)) {
      return Option.some<Keyed<Named>>({ key: address.value.joinKey, value: named })
    }
    if (w.mode.check && named.live) {
      yield* checkObject(w, kvKey, key, locator, undefined)
      yield* checkReplicas(w, kvKey, key, locator)
    }
    return Option.none<Keyed<Named>>()
  })

/** Objects of an area, in order, as join keys (names no rule explains are counted and skipped). */
const areaObjects = (w: Walk, area: string, algorithms: ReadonlyArray<string>) =>
  Stream.flatten(Stream.fromIterable(algorithms.map((a) => w.ctx.objects.list(prefixOf(w.ctx, `${area}${a}/`))))).pipe(
    Stream.filterMap((stat) => {
      const address = parseContent(stat.locator.path.slice(area.length))
      if (Option.isNone(address)) w.t.unknownObjects++
      return Option.map(address, (a): Keyed<{ readonly stat: ObjectStat; readonly address: Address }> => ({
        key: a.joinKey,
        value: { stat, address: a }
      }))
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
const orphan = (w: Walk, stat: ObjectStat, address: Address, monolithic: boolean) =>
  Effect.gen(function*() {
    if (monolithic && w.mode.repair) {
      const key = yield* rehash(w, stat, address)
      if (Option.isSome(key) && (yield* reindex(w, key.value, stat.locator))) return
    }
    if (w.metadataMissing) return void w.heldOrphans++
    if (!pastGrace(w, stat)) return yield* young(w, "orphans")
    if (w.mode.reclaim) yield* w.ctx.objects.delete(stat.locator)
    yield* leftover(w, "orphans", stat.size)
  })

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

const contentPhase = (w: Walk) =>
  Stream.runForEach(
    outerJoin(
      areaObjects(w, "", ALGORITHMS),
      Stream.filterMap(Stream.mapEffect(w.ctx.kv.list(BlobMeta.BLOBS), (entry) => blobEntry(w, entry)), (x) => x)
    ),
    (group) =>
      Effect.gen(function*() {
        const objects = new Map(group.left.map((o) => [text(o.stat.locator), o]))
        const named = new Set(group.right.map((r) => text(r.locator)))
        for (const r of group.right) {
          if (!r.live || !w.mode.check) continue
          const subject = BlobMeta.blobKey(r.key)
          yield* checkObject(w, subject, r.key, r.locator, objects.get(text(r.locator))?.stat)
          yield* checkReplicas(w, subject, r.key, r.locator)
        }
        for (const o of group.left) {
          if (!named.has(text(o.stat.locator))) yield* orphan(w, o.stat, o.address, true)
        }
      })
  )

// --- blocks: block objects against block records and manifest references ----

interface BlockEntry {
  readonly kvKey: string
  readonly key: BinaryKey.BinaryKey
  readonly raw: Option.Option<Uint8Array>
  readonly record: Option.Option<BlobMeta.BlockRecord>
  /** Distinct manifests referencing the block. */
  readonly refs: number
  /** Where a manifest says the block is. */
  readonly manifestLocator: Option.Option<string>
}

/** Block records merged with the spilled reference counts, as join keys. */
const blockEntries = (w: Walk) =>
  outerJoin(
    Stream.map(w.ctx.kv.list(BlobMeta.BLOCKS), ([kvKey, raw]) => ({ key: kvKey.slice(BlobMeta.BLOCKS.length), value: raw })),
    w.spill.counts
  ).pipe(
    Stream.mapEffect((g) =>
      Effect.gen(function*() {
        const kvKey = BlobMeta.BLOCKS + g.key
        const parsed = BinaryKey.parse(g.key)
        if (Either.isLeft(parsed)) {
          if (w.mode.check) yield* problem(w, "undecodable", kvKey, parsed.left.message)
          return Option.none<Keyed<BlockEntry>>()
        }
        const raw = Option.fromNullable(g.left[0])
        let record = Option.none<BlobMeta.BlockRecord>()
        if (Option.isSome(raw)) {
          const decoded = BlobMeta.decodeBlock(raw.value)
          if (Either.isLeft(decoded)) {
            if (w.mode.check) yield* problem(w, "undecodable", kvKey, decoded.left)
            return Option.none<Keyed<BlockEntry>>()
          }
          record = Option.some(decoded.right)
        }
        const counted = g.right[0]
        return Option.some<Keyed<BlockEntry>>({
          key: joinKeyOf(parsed.right),
          value: {
            kvKey,
            key: parsed.right,
            raw,
            record,
            refs: counted?.count ?? 0,
            manifestLocator: Option.fromNullable(counted?.first)
          }
        })
      })
    ),
    Stream.filterMap((x) => x)
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
    yield* w.ctx.replicas.remove(e.key, locator)
    // Fails harmlessly when a put has taken the record over meanwhile.
    yield* Counters.compareAndSet(w.ctx.kv, e.kvKey, Option.some(tomb), Option.none())
  })

/** One block record (or a manifest reference without one); returns the locator it names, if any. */
const blockEntry = (w: Walk, e: BlockEntry, objects: Map<string, ObjectStat>) =>
  Effect.gen(function*() {
    const record = Option.getOrUndefined(e.record)
    if (record?._tag === "Live") {
      const named = text(record.locator)
      const stat = objects.get(named)
      // Absent in records written before `at` existed: no put of this version holds a reference then.
      const settled = w.mode.now - (record.at ?? 0) > w.mode.grace
      if (e.refs === 0) {
        if (!settled) {
          yield* young(w, "blocks")
        } else if (!w.mode.reclaim) {
          yield* leftover(w, "blocks", e.key.size)
        } else if (yield* removeBlock(w, e, record.locator)) {
          yield* leftover(w, "blocks", e.key.size)
        }
        // Named either way: a removed block's object is not an orphan as well.
        return Option.some(named)
      }
      w.t.blocks++
      w.t.blockBytes += e.key.size
      if (!w.mode.check) return Option.some(named)
      yield* checkObject(w, e.kvKey, e.key, record.locator, stat)
      if (record.refs !== e.refs && settled) {
        let fixed = false
        if (w.mode.repair) {
          const next = BlobMeta.encodeBlock({ ...record, refs: e.refs })
          fixed = yield* Counters.compareAndSet(w.ctx.kv, e.kvKey, e.raw, Option.some(next))
          if (fixed) yield* repaired(w, "recounted")
        }
        yield* problem(w, "refcount", e.kvKey, `the record counts ${record.refs} references, the manifests ${e.refs}`, fixed)
      }
      yield* checkReplicas(w, e.kvKey, e.key, record.locator)
      return Option.some(named)
    }
    if (record?._tag === "Deleting") {
      const named = text(record.locator)
      if (w.mode.check && e.refs > 0) {
        yield* problem(w, "danglingBlock", e.kvKey, `${e.refs} manifest(s) reference a block being deleted`)
      }
      if (w.mode.now - record.since <= w.mode.grace) {
        yield* young(w, "blocks")
        return Option.some(named)
      }
      // A delete that stalled: finished here.
      const bytes = objects.get(named)?.size ?? 0
      if (w.mode.reclaim) yield* finishBlock(w, e, record.locator, Option.getOrThrow(e.raw))
      yield* leftover(w, "blocks", bytes)
      return Option.some(named)
    }
    // No record, but manifests reference the block.
    const where = Option.flatMap(e.manifestLocator, (t) => Either.getRight(BlobLocator.parse(t)))
    if (w.mode.check) {
      let fixed = false
      if (w.mode.repair && Option.isSome(where) && (yield* holds(w, where.value, e.key))) {
        const live = BlobMeta.encodeBlock({ _tag: "Live", refs: e.refs, locator: where.value, at: w.mode.now })
        fixed = yield* Counters.compareAndSet(w.ctx.kv, e.kvKey, Option.none(), Option.some(live))
        if (fixed) yield* repaired(w, "blockRecordRestored")
      }
      yield* problem(w, "missingBlockRecord", e.kvKey, `${e.refs} manifest(s) reference a block with no record`, fixed)
    }
    return Option.map(where, text)
  })

const blocksPhase = (w: Walk) =>
  Stream.runForEach(
    outerJoin(areaObjects(w, w.ctx.blocks, ALGORITHMS), blockEntries(w)),
    (group) =>
      Effect.gen(function*() {
        const objects = new Map(group.left.map((o) => [text(o.stat.locator), o.stat]))
        const named = new Set<string>()
        for (const e of group.right) {
          const n = yield* blockEntry(w, e, objects)
          if (Option.isSome(n)) named.add(n.value)
        }
        for (const o of group.left) {
          if (!named.has(text(o.stat.locator))) yield* orphan(w, o.stat, o.address, false)
        }
      })
  )

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
    const w: Walk = { ctx, mode, t, spill: Spill.make(ctx, mode.now), metadataMissing: Option.isNone(anyRecord), heldOrphans: 0 }
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
