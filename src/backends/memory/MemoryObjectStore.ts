/**
 * In-memory object store: a fake for tests and demos that keeps every port
 * rule of Immutable/MutableObjectStore (atomic visibility of puts, ranges,
 * ordering of listings, idempotent delete), so code tested against it
 * behaves the same on a real backend.
 *
 * Objects live in an immutable red-black tree keyed by locator text and
 * ordered by UTF-8 bytes (core/KvKey.compare). Within one `scheme://bucket/`
 * that is the UTF-8 byte order of the path, which is what `list` promises;
 * a listing walks a snapshot of the tree lazily, page by page.
 *
 * The store answers to any scheme: it is a fake, and callers pick whatever
 * scheme their production locators use.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Order from "effect/Order"
import * as RedBlackTree from "effect/RedBlackTree"
import * as Ref from "effect/Ref"
import * as Sink from "effect/Sink"
import * as Stream from "effect/Stream"
import * as BlobLocator from "../../core/BlobLocator.js"
import { type InvalidValue, ObjectStoreError, toPortError } from "../../core/Errors.js"
import * as KvKey from "../../core/KvKey.js"
import type { ObjectStat, PutOptions } from "../../core/Models.js"
import { type ByteRange, resolveRange } from "../../core/RangeSet.js"
import { ObjectCopied, ObjectDeleted, ObjectWritten, UploadAborted } from "../../ports/BackendEvents.js"
import { ImmutableObjectStore, MutableObjectStore, type MutableObjectStoreShape } from "../../ports/ObjectStore.js"
import type { ObjectStoreCapabilities } from "../../ports/ObjectStoreCapabilities.js"
import * as Instrument from "../../kit/Instrument.js"
import * as TracingPorts from "../../kit/TracingPorts.js"

const BACKEND = "memory"

/** A fake with every feature of the port: a rename is a tree update, a copy shares the blocks. */
export const capabilities: ObjectStoreCapabilities = {
  nativeMove: true,
  nativeCopy: true,
  multipart: false,
  conditionalWrite: true,
  rangedRead: true,
  contentType: true,
  metadata: true,
  etag: true,
  lastModified: true,
  encryption: "none",
  fileAndPrefix: true,
  maxObjectSize: undefined
}

/** Puts are copied into blocks of this size: bounded chunk sizes on reads, whatever the writer sent. */
const BLOCK_BYTES = 256 * 1024

/** Entries a listing pulls from the tree snapshot per Stream chunk. */
const LIST_PAGE = 1000

interface Entry {
  readonly locator: BlobLocator.BlobLocator
  readonly blocks: ReadonlyArray<Uint8Array>
  readonly size: number
  readonly etag: string
  readonly lastModified: Date
  readonly contentType: Option.Option<string>
  readonly metadata: Readonly<Record<string, string>>
}

type Tree = RedBlackTree.RedBlackTree<string, Entry>

const byUtf8: Order.Order<string> = (a, b) => {
  const c = KvKey.compare(a, b)
  return c < 0 ? -1 : c > 0 ? 1 : 0
}

const fail = (method: string, reason: ObjectStoreError["reason"], description: string, cause?: unknown) =>
  new ObjectStoreError({
    reason,
    backend: BACKEND,
    method,
    description,
    ...(cause === undefined ? {} : { cause })
  })

const invalid = (method: string) => (e: InvalidValue) => toPortError(ObjectStoreError, BACKEND, method)(e)

/** Re-checks a locator: a `BlobLocator` built with `new` skips the parser's rules. */
const checkLocator = (method: string, l: BlobLocator.BlobLocator): Effect.Effect<string, ObjectStoreError> =>
  typeof l !== "object" || l === null
    ? Effect.fail(fail(method, "InvalidInput", "the locator is missing"))
    : Either.match(BlobLocator.make(l.scheme, l.bucket, l.path), {
      onLeft: (e) => Effect.fail(invalid(method)(e)),
      onRight: (valid) => Effect.succeed(BlobLocator.render(valid))
    })

const checkPrefix = (method: string, p: BlobLocator.LocatorPrefix) =>
  typeof p !== "object" || p === null
    ? Either.left(fail(method, "InvalidInput", "the prefix is missing"))
    : Either.mapLeft(BlobLocator.makePrefix(p.scheme, p.bucket, p.path), invalid(method))

const checkOptions = (method: string, options: PutOptions | undefined): Effect.Effect<void, ObjectStoreError> => {
  if (options === undefined) return Effect.void
  if (options.size !== undefined && (!Number.isSafeInteger(options.size) || options.size < 0)) {
    return Effect.fail(fail(method, "InvalidInput", `the declared size must be a non-negative integer, got ${options.size}`))
  }
  if (options.contentType !== undefined && typeof options.contentType !== "string") {
    return Effect.fail(fail(method, "InvalidInput", "the content type must be a string"))
  }
  for (const [k, v] of Object.entries(options.metadata ?? {})) {
    if (typeof v !== "string") return Effect.fail(fail(method, "InvalidInput", `metadata ${JSON.stringify(k)} is not a string`))
  }
  return Effect.void
}

const toStat = (e: Entry): ObjectStat => ({
  locator: e.locator,
  size: e.size,
  etag: Option.some(e.etag),
  lastModified: Option.some(e.lastModified),
  contentType: e.contentType,
  metadata: e.metadata
})

/** Copies of the `[start, end)` bytes of `blocks`, one array per block touched, made as they are pulled. */
const sliceBlocks = function*(blocks: ReadonlyArray<Uint8Array>, start: number, end: number): Generator<Uint8Array> {
  if (start >= end) return
  let offset = 0
  for (const block of blocks) {
    if (offset >= end) return
    const blockEnd = offset + block.length
    if (blockEnd > start) {
      // Copies, so a consumer that mutates what it reads cannot corrupt the store.
      yield block.slice(Math.max(0, start - offset), Math.min(block.length, end - offset))
    }
    offset = blockEnd
  }
}

/** Accumulates a put's bytes into fixed-size blocks (one copy of each byte). */
class BlockWriter {
  readonly blocks: Array<Uint8Array> = []
  size = 0
  private current = new Uint8Array(BLOCK_BYTES)
  private used = 0

  write(chunk: Uint8Array): void {
    let offset = 0
    while (offset < chunk.length) {
      const n = Math.min(chunk.length - offset, BLOCK_BYTES - this.used)
      this.current.set(chunk.subarray(offset, offset + n), this.used)
      this.used += n
      offset += n
      if (this.used === BLOCK_BYTES) {
        this.blocks.push(this.current)
        this.current = new Uint8Array(BLOCK_BYTES)
        this.used = 0
      }
    }
    this.size += chunk.length
  }

  finish(): ReadonlyArray<Uint8Array> {
    if (this.used > 0) this.blocks.push(this.current.slice(0, this.used))
    this.used = 0
    return this.blocks
  }
}

const iterate = function*<A>(items: Iterable<A>): Generator<A> {
  yield* items
}

const remove = (tree: Tree, key: string): Tree =>
  RedBlackTree.has(tree, key) ? RedBlackTree.removeFirst(tree, key) : tree

/** The tree allows duplicate keys, so replacing means removing first. */
const upsert = (tree: Tree, key: string, entry: Entry): Tree => RedBlackTree.insert(remove(tree, key), key, entry)

/** Builds an in-memory object store; each call gets its own empty store. */
export const make: Effect.Effect<MutableObjectStoreShape> = Effect.gen(function*() {
  const instrument = yield* Instrument.make(BACKEND, "ObjectStore")
  const state = yield* Ref.make<Tree>(RedBlackTree.empty<string, Entry>(byUtf8))
  let version = 0
  const nextEtag = () => `m${(++version).toString(36)}`
  const now = Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms))

  const lookup = (method: string, key: string) =>
    Effect.flatMap(Ref.get(state), (tree) =>
      Option.match(RedBlackTree.findFirst(tree, key), {
        onNone: () => Effect.fail(fail(method, "NotFound", `no object at ${key}`)),
        onSome: Effect.succeed
      }))

  const head: MutableObjectStoreShape["head"] = (locator) =>
    checkLocator("head", locator).pipe(
      Effect.flatMap((key) => Effect.map(Ref.get(state), (tree) => Option.map(RedBlackTree.findFirst(tree, key), toStat))),
      instrument.observe("head")
    )

  const list: MutableObjectStoreShape["list"] = (prefix) =>
    Either.match(checkPrefix("list", prefix), {
      onLeft: (e) => Stream.fail(e),
      onRight: (p) => {
        const start = `${p.scheme}://${p.bucket}/${p.path}`
        return instrument.observeStream("list")(Stream.unwrap(Effect.map(Ref.get(state), (tree) =>
          // A snapshot: later writes do not shift a listing that is under way.
          Stream.fromIteratorSucceed(iterate(RedBlackTree.greaterThanEqual(tree, start)), LIST_PAGE).pipe(
            Stream.takeWhile(([key]) => key.startsWith(start)),
            Stream.map(([, entry]) => toStat(entry))
          ))))
      }
    })

  const get: MutableObjectStoreShape["get"] = (locator, range?: ByteRange) =>
    Stream.unwrap(
      checkLocator("get", locator).pipe(
        Effect.flatMap((key) => lookup("get", key)),
        Effect.flatMap((entry) =>
          Either.match(resolveRange(range, entry.size), {
            onLeft: (e) => Effect.fail(invalid("get")(e)),
            // Lazily, one block per chunk: the range is never copied out all at once.
            onRight: ([start, end]) => Effect.succeed(Stream.fromIteratorSucceed(sliceBlocks(entry.blocks, start, end), 1))
          })
        )
      )
    ).pipe(instrument.observeStream("get"))

  const put: MutableObjectStoreShape["put"] = (locator, options) =>
    Sink.unwrap(Effect.map(
      Effect.zipLeft(checkLocator("put", locator), checkOptions("put", options)),
      (key) =>
        Sink.suspend(() => {
          // Fresh per run: a Sink value may be run more than once.
          const writer = new BlockWriter()
          let committed = false
          return Sink.forEachChunk((chunks: Iterable<Uint8Array>) =>
            Effect.sync(() => {
              for (const c of chunks) writer.write(c)
            })
          ).pipe(
            Sink.mapEffect(() => Effect.tap(commit(key, locator, writer, options), () => (committed = true))),
            Sink.ensuringWith((exit) =>
              committed ? Effect.void : Effect.flatMap(now, (at) =>
                instrument.publish(
                  new UploadAborted({
                    backend: BACKEND,
                    at,
                    locator: key,
                    why: Exit.isInterrupted(exit) ? "interrupted" : "the put failed before completing"
                  })
                ))
            )
          )
        })
    )).pipe(instrument.observeSink("put"))

  const write: MutableObjectStoreShape["write"] = (locator, bytes, options) =>
    Effect.zipLeft(checkLocator("put", locator), checkOptions("put", options)).pipe(
      Effect.flatMap((key) => {
        const writer = new BlockWriter()
        writer.write(bytes)
        return commit(key, locator, writer, options)
      }),
      instrument.observe("write")
    )

  // Runs only once the input stream has ended: an interrupted or failed put never gets here.
  const commit = (key: string, locator: BlobLocator.BlobLocator, writer: BlockWriter, options: PutOptions | undefined) =>
    Effect.gen(function*() {
      if (options?.size !== undefined && options.size !== writer.size) {
        return yield* fail("put", "InvalidInput", `declared ${options.size} bytes but the stream had ${writer.size}`)
      }
      const entry: Entry = {
        locator: new BlobLocator.BlobLocator({ scheme: locator.scheme, bucket: locator.bucket, path: locator.path }),
        blocks: writer.finish(),
        size: writer.size,
        etag: nextEtag(),
        lastModified: yield* now,
        contentType: Option.fromNullable(options?.contentType),
        metadata: { ...options?.metadata }
      }
      // One step: a create-only put sees the tree it writes to.
      const taken = yield* Ref.modify(state, (tree): [boolean, Tree] =>
        options?.ifAbsent === true && RedBlackTree.has(tree, key) ? [true, tree] : [false, upsert(tree, key, entry)])
      if (taken) return yield* fail("put", "AlreadyExists", `an object is already at ${key}`)
      yield* instrument.publish(new ObjectWritten({ backend: BACKEND, at: entry.lastModified, locator: key, size: entry.size }))
      return toStat(entry)
    })

  const del: MutableObjectStoreShape["delete"] = (locator) =>
    checkLocator("delete", locator).pipe(
      Effect.tap((key) => Ref.update(state, (tree) => remove(tree, key))),
      Effect.flatMap((key) =>
        Effect.flatMap(now, (at) => instrument.publish(new ObjectDeleted({ backend: BACKEND, at, locator: key })))
      ),
      instrument.observe("delete")
    )

  const transfer = (method: "copy" | "move") => (source: BlobLocator.BlobLocator, destination: BlobLocator.BlobLocator) =>
    Effect.gen(function*() {
      const from = yield* checkLocator(method, source)
      const to = yield* checkLocator(method, destination)
      const at = yield* now
      const etag = nextEtag()
      const moved = yield* Ref.modify(state, (tree): [Either.Either<Entry, ObjectStoreError>, Tree] => {
        const found = RedBlackTree.findFirst(tree, from)
        if (Option.isNone(found)) return [Either.left(fail(method, "NotFound", `no object at ${from}`)), tree]
        const target: Entry = {
          ...found.value,
          locator: new BlobLocator.BlobLocator({
            scheme: destination.scheme,
            bucket: destination.bucket,
            path: destination.path
          }),
          // A copy is a new object; a move keeps the object's identity, like a rename.
          ...(method === "copy" ? { etag, lastModified: at } : {})
        }
        const next = method === "move" && from !== to ? remove(tree, from) : tree
        return [Either.right(target), upsert(next, to, target)]
      })
      const entry = yield* moved
      if (method === "move") {
        yield* instrument.publish(new ObjectWritten({ backend: BACKEND, at, locator: to, size: entry.size }))
      }
      yield* instrument.publish(
        new ObjectCopied({ backend: BACKEND, at, source: from, destination: to, moved: method === "move" })
      )
      return toStat(entry)
    }).pipe(instrument.observe(method))

  return TracingPorts.objectStore(BACKEND, { capabilities, head, list, get, put, write, delete: del, copy: transfer("copy"), move: transfer("move") })
})

/** One in-memory store providing both the mutable and the immutable port. */
export const layer: Layer.Layer<MutableObjectStore | ImmutableObjectStore> = Layer.effectContext(
  Effect.map(make, (store) => Context.make(MutableObjectStore, store).pipe(Context.add(ImmutableObjectStore, store)))
)

