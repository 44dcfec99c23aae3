/**
 * Local filesystem object store (the embedded default).
 *
 * Layout under `root`:
 *
 *   <root>/<bucket>/<path>               the object's bytes, a plain file
 *   <root>/.graviton/tmp/<uuid>          puts and copies in flight
 *   <root>/.graviton/meta/<bucket>/<path> JSON {contentType, metadata}, only when given
 *
 * A locator `file://bucket/a/b` names `<root>/bucket/a/b`. The store answers
 * to one scheme (`file` unless configured) and rejects others with
 * InvalidInput, so a locator meant for another store is never written here.
 * The bucket `.graviton` is reserved.
 *
 * Writes stream into a temp file on the same filesystem and are renamed into
 * place only when the input ends, so readers see the old object or the new
 * one, never a part. A failed or interrupted write removes its temp file.
 *
 * Because objects are files, a path cannot be both an object and a
 * "directory" of other objects: putting `a` while `a/b` exists (or the
 * reverse) fails with Conflict. A single path segment is limited to 255
 * bytes (the filesystem's NAME_MAX); longer ones fail with InvalidInput.
 *
 * `list` walks directories lazily, one directory at a time, in UTF-8 byte
 * order of the path. Listed stats carry size, etag and lastModified but not
 * contentType/metadata (like S3's ListObjects); `head` has them all.
 */
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Sink from "effect/Sink"
import * as Stream from "effect/Stream"
import { randomUUID } from "node:crypto"
import * as NFS from "node:fs"
import * as Path from "node:path"
import * as BlobLocator from "../../core/BlobLocator.js"
import { type InvalidValue, ObjectStoreError, toPortError } from "../../core/Errors.js"
import * as KvKey from "../../core/KvKey.js"
import * as Lending from "../../core/Lending.js"
import type { ObjectStat, PutOptions } from "../../core/Models.js"
import { resolveRange } from "../../core/RangeSet.js"
import { ObjectCopied, ObjectDeleted, ObjectWritten, UploadAborted } from "../../ports/BackendEvents.js"
import { ImmutableObjectStore, MutableObjectStore, type MutableObjectStoreShape, writeThroughPut } from "../../ports/ObjectStore.js"
import type { ObjectStoreCapabilities } from "../../ports/ObjectStoreCapabilities.js"
import * as Instrument from "../../kit/Instrument.js"
import * as TracingPorts from "../../kit/TracingPorts.js"
import * as Confined from "./confined.js"
import { BACKEND, errnoCode, fromFileSystem, fsError, isMissing } from "./errors.js"
import { writeBehind, writeGathered } from "./files.js"

/** Options of the filesystem object store. */
export interface FsObjectStoreOptions {
  /** Directory holding every bucket; created when missing. */
  readonly root: string
  /** The locator scheme this store answers to; others fail with InvalidInput. Default "file". */
  readonly scheme?: string | undefined
  /** fsync each object before it becomes visible (durability over speed). Default false. */
  readonly fsync?: boolean | undefined
  /**
   * Modes of what the store creates: "private" (default: directories 0700, files 0600, as restic's
   * repositories), "shared" (0755 / 0644), or explicit `{ file, directory }`. The umask still applies;
   * what already exists keeps its mode.
   */
  readonly permissions?: Confined.Permissions | undefined
}

/**
 * Objects are files: move is rename(2), copy is copyFile (in the kernel, no
 * byte through the process), a create-only put is link(2), which refuses an
 * existing name. A file cannot also be the directory of other objects.
 */
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
  fileAndPrefix: false,
  maxObjectSize: undefined
}

/** Name of the store's own directory inside root; reserved as a bucket name. */
export const RESERVED = ".graviton"

/** Bytes per chunk of a read: large, so that per-chunk costs (a syscall, a stream step) vanish next to hashing. */
const READ_CHUNK = 1024 * 1024
/** Reads of at least this many bytes use the store's shared 1 MiB buffers. */
const SHARED_READ_MIN = 64 * 1024
/** Chunks read ahead of a reader (memory: this many chunks per open read). */
const READ_AHEAD = 2
/** Longest file name most filesystems accept, in bytes. */
const NAME_MAX = 255
/** Temp files untouched for this long are leftovers of a crashed process, swept at startup. */
const STALE_TEMP_MS = 24 * 60 * 60 * 1000
/** Files stat'ed at once (synchronously) while listing one directory: the event loop is held for one batch at a time. */
const STAT_BATCH = 256

const batches = <A>(items: ReadonlyArray<A>): Array<ReadonlyArray<A>> => {
  const out: Array<ReadonlyArray<A>> = []
  for (let i = 0; i < items.length; i += STAT_BATCH) out.push(items.slice(i, i + STAT_BATCH))
  return out
}
/** Attempts to rename into a directory that a concurrent delete may prune meanwhile. */
const PLACE_ATTEMPTS = 5

/** What the sidecar JSON file of an object holds. */
const Meta = Schema.Struct({
  contentType: Schema.optional(Schema.String),
  metadata: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.String }))
})
type Meta = typeof Meta.Type

const decodeMeta = Schema.decodeUnknownEither(Schema.parseJson(Meta))

interface Target {
  readonly locator: BlobLocator.BlobLocator
  readonly key: string
  /** The directories from the bucket down to the file's parent (the same under root and under the metadata tree). */
  readonly dirs: ReadonlyArray<string>
  /** The file's own name. */
  readonly name: string
}

/** Where a file is: an open directory and a name in it. */
interface Place {
  readonly dir: Confined.Dir
  readonly name: string
}

const now = Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms))

const invalid = (method: string) => (e: InvalidValue) => toPortError(ObjectStoreError, BACKEND, method)(e)

const closeHandle = (h: NFS.promises.FileHandle) => Effect.promise(() => h.close().catch(() => undefined))

/**
 * Builds a filesystem object store over `options.root` (creating it and the store's directories);
 * the root and the store's own directories stay open for the scope.
 */
export const make = (
  options: FsObjectStoreOptions
): Effect.Effect<MutableObjectStoreShape, ObjectStoreError, Scope.Scope> =>
  Effect.gen(function*() {
    const instrument = yield* Instrument.make(BACKEND, "ObjectStore")
    const scheme = options.scheme ?? "file"
    const fsync = options.fsync ?? false
    if (Either.isLeft(BlobLocator.make(scheme, "bucket", "path"))) {
      return yield* fsError("make", "InvalidInput", `invalid scheme ${JSON.stringify(scheme)}`)
    }
    const modes = Confined.modesOf(options.permissions)
    // Every path below goes through the root's descriptor (see confined.ts).
    const root = yield* Confined.openRoot("make", options.root, modes)
    const base = root.dir
    const tmpDir = yield* Confined.openScoped("make", root, base, [RESERVED, "tmp"], true)
    const metaDir = yield* Confined.openScoped("make", root, base, [RESERVED, "meta"], true)
    yield* sweepStaleTemps(tmpDir)

    const target = (method: string, l: BlobLocator.BlobLocator): Effect.Effect<Target, ObjectStoreError> => {
      if (typeof l !== "object" || l === null) return Effect.fail(fsError(method, "InvalidInput", "the locator is missing"))
      const checked = BlobLocator.make(l.scheme, l.bucket, l.path)
      if (Either.isLeft(checked)) return Effect.fail(invalid(method)(checked.left))
      const locator = checked.right
      const key = BlobLocator.render(locator)
      if (locator.scheme !== scheme) {
        return Effect.fail(
          fsError(method, "InvalidInput", `this store answers to ${scheme}:// locators, not ${JSON.stringify(key)}`)
        )
      }
      const bucketProblem = checkBucket(locator.bucket)
      if (bucketProblem !== undefined) return Effect.fail(fsError(method, "InvalidInput", `${key}: ${bucketProblem}`))
      const segments = locator.path.split("/")
      const tooLong = segments.find((s) => Buffer.byteLength(s, "utf8") > NAME_MAX)
      if (tooLong !== undefined) {
        return Effect.fail(fsError(method, "InvalidInput", `${key}: a path segment is longer than ${NAME_MAX} bytes`))
      }
      // The parser already forbids `..`, `.` and empty segments; a separator inside one would be a walk of its own.
      if ([locator.bucket, ...segments].some((s) => s.includes(Path.sep) || s.includes("\0"))) {
        return Effect.fail(fsError(method, "InvalidInput", `${key} resolves outside the store's root`))
      }
      return Effect.succeed({ locator, key, dirs: [locator.bucket, ...segments.slice(0, -1)], name: segments[segments.length - 1]! })
    }

    /** The object's metadata file, None when it has none. */
    const findMeta = (method: string, t: Target): Effect.Effect<Option.Option<Meta>, ObjectStoreError> =>
      Confined.withDir(method, root, metaDir, t.dirs, false, (chain) =>
        Effect.acquireUseRelease(
          Effect.tryPromise({
            try: () => NFS.promises.open(Confined.last(chain).at(t.name), NFS.constants.O_RDONLY | Confined.NOFOLLOW),
            catch: Confined.refuseLink(method, `metadata of ${t.key}`)
          }),
          (h) => Effect.tryPromise({ try: () => h.readFile("utf8"), catch: fromFileSystem(method, t.key) }),
          closeHandle
        )).pipe(
          Effect.flatMap((text) =>
            Either.mapLeft(decodeMeta(text), () => fsError(method, "Corrupted", `unreadable metadata for ${t.key}`))
          ),
          Effect.map(Option.some),
          Effect.catchIf((e) => isMissing(e.cause), () => Effect.succeed(Option.none<Meta>()))
        )

    const readMeta = (method: string, t: Target): Effect.Effect<Meta, ObjectStoreError> =>
      Effect.map(findMeta(method, t), Option.getOrElse((): Meta => ({})))

    /** Stat of the object's file (never through a link); None when there is no regular file there. */
    const statObject = (method: string, t: Target): Effect.Effect<Option.Option<NFS.Stats>, ObjectStoreError> =>
      Confined.withDir(method, root, base, t.dirs, false, (chain) =>
        Effect.tryPromise({ try: () => NFS.promises.lstat(Confined.last(chain).at(t.name)), catch: fromFileSystem(method, t.key) })).pipe(
          Effect.flatMap((st) =>
            st.isSymbolicLink()
              ? Effect.fail(Confined.linkRefused(method, t.key))
              : Effect.succeed(st.isFile() ? Option.some(st) : Option.none())
          ),
          Effect.catchIf((e) => isMissing(e.cause), () => Effect.succeed(Option.none<NFS.Stats>()))
        )

    const head: MutableObjectStoreShape["head"] = (locator) =>
      Effect.gen(function*() {
        const t = yield* target("head", locator)
        const info = yield* statObject("head", t)
        if (Option.isNone(info)) return Option.none()
        return Option.some(toStat(t.locator, info.value, yield* readMeta("head", t)))
      }).pipe(instrument.observeRetry("head"))

    // Read buffers shared by the store's streams; small reads get buffers of their own size instead.
    const readPool = new Lending.Pool(READ_CHUNK, { keep: 16 })

    const get: MutableObjectStoreShape["get"] = (locator, range) =>
      Stream.unwrapScoped(
        Effect.gen(function*() {
          const t = yield* target("get", locator)
          const notFound = () => fsError("get", "NotFound", `no object at ${t.key}`)
          // Opened first, then measured: a concurrent overwrite renames a new
          // file into place, and this descriptor keeps reading the old one.
          const file = yield* Effect.acquireRelease(
            Confined.withDir("get", root, base, t.dirs, false, (chain) =>
              Effect.tryPromise({
                try: () => NFS.promises.open(Confined.last(chain).at(t.name), NFS.constants.O_RDONLY | Confined.NOFOLLOW),
                catch: Confined.refuseLink("get", t.key)
              })),
            closeHandle
          ).pipe(Effect.catchIf((e) => isMissing(e.cause), () => Effect.fail(notFound())))
          const info = yield* Effect.tryPromise({ try: () => file.stat(), catch: fromFileSystem("get", t.key) })
          if (!info.isFile()) return yield* notFound()
          const size = info.size
          const [start, end] = yield* Either.mapLeft(resolveRange(range, size), invalid("get"))
          // Chunks are lent (see Lending): a consumer that writes them out gives each back for the next read,
          // of this stream or a later one (a chunked blob reads one object per block).
          const pool = end - start >= SHARED_READ_MIN ? readPool : new Lending.Pool(Math.max(1, end - start))
          return Stream.unfoldChunkEffect(end - start, (left) => {
            if (left <= 0) return Effect.succeed(Option.none())
            const buffer = pool.take()
            const want = Math.min(buffer.length, left)
            return Effect.tryPromise({ try: () => file.read(buffer, 0, want, end - left), catch: fromFileSystem("get", t.key) }).pipe(
              Effect.flatMap(({ bytesRead: n }) => {
                if (n === 0) {
                  pool.restore(buffer)
                  return Effect.fail(fsError("get", "Corrupted", `${t.key} ended ${left} bytes early (changed in place?)`))
                }
                const chunk = pool.lend(buffer, n)
                return Effect.succeed(Option.some([Chunk.of(chunk), left - n] as const))
              })
            )
          }).pipe(
            // Two reads ahead of the consumer, so the disk works while the caller hashes or sends.
            Stream.buffer({ capacity: READ_AHEAD })
          )
        })
      ).pipe(instrument.observeStream("get"))

    /**
     * Renames `from` to `to` (under `toBase`), creating `to`'s parents; retried when a concurrent
     * delete prunes them meanwhile. `createOnly` links instead, which fails with AlreadyExists when
     * `to` is taken (the temp name is removed later).
     */
    const place = (method: string, from: Place, toBase: Confined.Dir, to: Target, what: string, createOnly = false) => {
      const attempt = (left: number): Effect.Effect<void, ObjectStoreError> =>
        Confined.withDir(method, root, toBase, to.dirs, true, (chain) => {
          const dir = Confined.last(chain)
          return createOnly
            ? Effect.tryPromise({ try: () => NFS.promises.link(from.dir.at(from.name), dir.at(to.name)), catch: fromFileSystem(method, what) }).pipe(
              Effect.catchIf((e) => errnoCode(e.cause) === "EEXIST", (e) => taken(method, { dir, name: to.name }, what, e))
            )
            : Effect.tryPromise({ try: () => NFS.promises.rename(from.dir.at(from.name), dir.at(to.name)), catch: fromFileSystem(method, what) })
        }).pipe(
          // A directory of the path was pruned by a concurrent delete between the walk and the rename.
          Effect.catchIf((e) => left > 1 && errnoCode(e.cause) === "ENOENT", () => attempt(left - 1))
        )
      return attempt(PLACE_ATTEMPTS)
    }

    /** A create-only put found `to` taken: by an object (AlreadyExists) or by the directory of others (Conflict). */
    const taken = (method: string, to: Place, what: string, e: ObjectStoreError) =>
      Effect.flatMap(
        Effect.promise(() => NFS.promises.lstat(to.dir.at(to.name)).then((st) => st.isDirectory(), () => false)),
        (isDirectory) =>
          Effect.fail(
            new ObjectStoreError({
              reason: isDirectory ? "Conflict" : "AlreadyExists",
              backend: BACKEND,
              method,
              description: isDirectory ? `${what}: objects sit under this path` : `an object is already at ${what}`,
              cause: e
            })
          )
      )

    /** Removes a file, succeeding when it is absent (or is a directory, i.e. not an object). */
    const removeFile = (method: string, at: Place, what: string) =>
      Effect.tryPromise({ try: () => unlinkFile(at.dir.at(at.name)), catch: fromFileSystem(method, what) })

    const cleanup = (names: ReadonlyArray<string>) =>
      Effect.forEach(names, (n) => Effect.promise(() => unlinkFile(tmpDir.at(n)).catch(() => undefined)), { discard: true })

    const tempName = (kind: string) => `${kind}-${randomUUID()}`

    /** Writes a small temp file (metadata) with the store's file mode. */
    const writeTemp = (method: string, name: string, text: string) =>
      Effect.acquireUseRelease(
        Effect.tryPromise({ try: () => NFS.promises.open(tmpDir.at(name), "wx", modes.file), catch: fromFileSystem(method, "writing metadata") }),
        (h) => Effect.tryPromise({ try: () => h.writeFile(text), catch: fromFileSystem(method, "writing metadata") }),
        closeHandle
      )

    /**
     * Makes `data` the object `t` and `meta` (None: no metadata) its metadata. The metadata tree is
     * walked first, so a link planted there is refused before the bytes become visible.
     */
    const commit = (method: string, t: Target, data: Place, meta: Option.Option<Place>, createOnly: boolean, onPlaced: () => void = () => {}) =>
      Confined.withOptionalDir(method, root, metaDir, t.dirs, false, (metaChain) =>
        Effect.gen(function*() {
          yield* place(method, data, base, t, t.key, createOnly)
          onPlaced()
          // Metadata follows the bytes; a reader in between sees the new bytes with the old metadata.
          if (Option.isSome(meta)) yield* place(method, meta.value, metaDir, t, t.key)
          else if (Option.isSome(metaChain)) yield* removeFile(method, { dir: Confined.last(metaChain.value), name: t.name }, t.key)
        }))

    const put: MutableObjectStoreShape["put"] = (locator, putOptions) =>
      Sink.unwrapScoped(
        Effect.gen(function*() {
          const t = yield* target("put", locator)
          yield* checkOptions("put", putOptions)
          const scope = yield* Effect.scope
          const dataTmp = tempName("put")
          const meta = metaOf(putOptions)
          const metaTmp = meta === undefined ? undefined : tempName("meta")
          let committed = false
          // Runs however the sink ends: after a commit the temp names are gone and removing them is a no-op.
          yield* Effect.addFinalizer((exit) =>
            Effect.zipRight(
              cleanup(metaTmp === undefined ? [dataTmp] : [dataTmp, metaTmp]),
              committed ? Effect.void : Effect.flatMap(now, (at) =>
                instrument.publish(
                  new UploadAborted({
                    backend: BACKEND,
                    at,
                    locator: t.key,
                    why: Exit.isInterrupted(exit) ? "interrupted" : "the put failed before completing"
                  })
                ))
            )
          )
          if (metaTmp !== undefined) yield* writeTemp("put", metaTmp, JSON.stringify(meta))
          // Own scope, so the descriptor can be closed before the rename.
          const fileScope = yield* Scope.fork(scope, ExecutionStrategy.sequential)
          // "wx" is O_CREAT|O_EXCL: never follows a link, never shares a file.
          const file = yield* Effect.acquireRelease(
            Effect.tryPromise({ try: () => NFS.promises.open(tmpDir.at(dataTmp), "wx", modes.file), catch: fromFileSystem("put", "creating a temp file") }),
            closeHandle
          ).pipe(Scope.extend(fileScope))
          // Write-behind: one positioned write runs in the thread pool while the caller prepares
          // (hashes) the next chunk. Its failure surfaces at the next write or at the commit.
          const writer = writeBehind(file.fd, 0)
          // Added after the open, so it runs before the descriptor closes: never close under a write.
          yield* Scope.addFinalizer(fileScope, Effect.promise(writer.settled))
          const drain = Effect.tryPromise({ try: writer.drain, catch: fromFileSystem("put", t.key) })
          const declared = putOptions?.size
          const write = (bytes: Uint8Array) =>
            declared !== undefined && writer.written() + bytes.length > declared
              ? Effect.fail(fsError("put", "InvalidInput", `declared ${declared} bytes but the stream has more`))
              : Effect.tryPromise({ try: () => writer.write(bytes), catch: fromFileSystem("put", t.key) })
          const finish = Effect.gen(function*() {
            const written = writer.written()
            if (declared !== undefined && written !== declared) {
              return yield* fsError("put", "InvalidInput", `declared ${declared} bytes but the stream had ${written}`)
            }
            yield* drain
            if (fsync) yield* Effect.tryPromise({ try: () => file.sync(), catch: fromFileSystem("put", t.key) })
            const info = yield* Effect.tryPromise({ try: () => file.stat(), catch: fromFileSystem("put", t.key) })
            yield* Scope.close(fileScope, Exit.void)
            const metaPlace = metaTmp === undefined ? Option.none<Place>() : Option.some({ dir: tmpDir, name: metaTmp })
            yield* commit("put", t, { dir: tmpDir, name: dataTmp }, metaPlace, putOptions?.ifAbsent === true, () => {
              committed = true
            })
            yield* instrument.publish(new ObjectWritten({ backend: BACKEND, at: yield* now, locator: t.key, size: written }))
            return toStat(t.locator, info, meta ?? {})
          }).pipe(Effect.uninterruptible)
          return Sink.forEachChunk((chunks: Chunk.Chunk<Uint8Array>) => writeGathered(chunks, write)).pipe(
            Sink.mapEffect(() => finish)
          )
        })
      ).pipe(instrument.observeSink("put"))

    const del: MutableObjectStoreShape["delete"] = (locator) =>
      Effect.gen(function*() {
        const t = yield* target("delete", locator)
        // Both trees are walked before anything is removed: a link in either refuses the whole delete.
        // A symbolic link at the path itself is removed, not followed (unlink acts on the link).
        yield* Confined.withOptionalDir("delete", root, metaDir, t.dirs, false, (metaChain) =>
          Confined.withOptionalDir("delete", root, base, t.dirs, false, (dataChain) =>
            Effect.gen(function*() {
              yield* Effect.uninterruptible(Effect.gen(function*() {
                if (Option.isSome(dataChain)) yield* removeFile("delete", { dir: Confined.last(dataChain.value), name: t.name }, t.key)
                if (Option.isSome(metaChain)) yield* removeFile("delete", { dir: Confined.last(metaChain.value), name: t.name }, t.key)
              }))
              // Emptied directories go, up to (not including) the bucket's.
              if (Option.isSome(dataChain)) yield* Confined.prune(dataChain.value, 1)
              if (Option.isSome(metaChain)) yield* Confined.prune(metaChain.value, 1)
            })))
        yield* instrument.publish(new ObjectDeleted({ backend: BACKEND, at: yield* now, locator: t.key }))
      }).pipe(instrument.observeRetry("delete"))

    /** Source and destination of a copy or move; None when both name the same object. */
    const endpoints = (method: string, source: BlobLocator.BlobLocator, destination: BlobLocator.BlobLocator) =>
      Effect.gen(function*() {
        const from = yield* target(method, source)
        const to = yield* target(method, destination)
        const info = yield* statObject(method, from)
        if (Option.isNone(info)) return yield* fsError(method, "NotFound", `no object at ${from.key}`)
        return { from, to, info: info.value }
      })

    /** Copies the object `from` into the temp file `name` (created with the store's mode), never through a link. */
    const copyToTemp = (from: Target, name: string) =>
      Confined.withDir("copy", root, base, from.dirs, false, (chain) => {
        const source = Confined.last(chain).at(from.name)
        return Effect.acquireUseRelease(
          Effect.tryPromise({ try: () => NFS.promises.open(source, NFS.constants.O_RDONLY | Confined.NOFOLLOW), catch: Confined.refuseLink("copy", from.key) }),
          // In the kernel from the descriptor just opened (its /proc magic link); the fallback names the path again.
          // COPYFILE_EXCL: the temp name is created, never followed.
          (h) =>
            Effect.tryPromise({
              try: () => NFS.promises.copyFile(root.racefree ? `/proc/self/fd/${h.fd}` : source, tmpDir.at(name), NFS.constants.COPYFILE_EXCL),
              catch: fromFileSystem("copy", from.key)
            }),
          closeHandle
        )
      }).pipe(
        Effect.catchIf((e) => isMissing(e.cause), () => fsError("copy", "NotFound", `no object at ${from.key}`)),
        // copyFile gives the copy its source's mode: set the store's, through a descriptor (chmod would follow a link).
        Effect.zipRight(Effect.acquireUseRelease(
          Effect.tryPromise({ try: () => NFS.promises.open(tmpDir.at(name), NFS.constants.O_RDONLY | Confined.NOFOLLOW), catch: Confined.refuseLink("copy", "the copy") }),
          (h) => Effect.tryPromise({ try: () => h.chmod(modes.file).then(() => h.stat()), catch: fromFileSystem("copy", "the copy") }),
          closeHandle
        ))
      )

    const copy: MutableObjectStoreShape["copy"] = (source, destination) =>
      Effect.scoped(Effect.gen(function*() {
        const { from, info: sourceInfo, to } = yield* endpoints("copy", source, destination)
        const meta = yield* readMeta("copy", from)
        if (from.key === to.key) return toStat(to.locator, sourceInfo, meta)
        const dataTmp = tempName("copy")
        const metaTmp = tempName("meta")
        yield* Effect.addFinalizer(() => cleanup([dataTmp, metaTmp]))
        const info = yield* copyToTemp(from, dataTmp)
        const hasMeta = meta.contentType !== undefined || meta.metadata !== undefined
        if (hasMeta) yield* writeTemp("copy", metaTmp, JSON.stringify(meta))
        yield* Effect.uninterruptible(
          commit("copy", to, { dir: tmpDir, name: dataTmp }, hasMeta ? Option.some({ dir: tmpDir, name: metaTmp }) : Option.none(), false)
        )
        yield* instrument.publish(
          new ObjectCopied({ backend: BACKEND, at: yield* now, source: from.key, destination: to.key, moved: false })
        )
        return toStat(to.locator, info, meta)
      })).pipe(instrument.observe("copy"))

    const move: MutableObjectStoreShape["move"] = (source, destination) =>
      Effect.gen(function*() {
        const { from, info, to } = yield* endpoints("move", source, destination)
        const found = yield* findMeta("move", from)
        const meta = Option.getOrElse(found, (): Meta => ({}))
        if (from.key === to.key) return toStat(to.locator, info, meta)
        yield* Confined.withDir("move", root, base, from.dirs, false, (dataChain) =>
          Confined.withOptionalDir("move", root, metaDir, from.dirs, false, (metaChain) =>
            Effect.gen(function*() {
              // Metadata moves with the bytes; none at the source means none at the destination.
              // (Most objects have none: the common move then costs no metadata rename or prune.)
              const metaSource = Option.isSome(found) && Option.isSome(metaChain)
                ? Option.some({ dir: Confined.last(metaChain.value), name: from.name })
                : Option.none<Place>()
              yield* Effect.uninterruptible(commit("move", to, { dir: Confined.last(dataChain), name: from.name }, metaSource, false))
              yield* Confined.prune(dataChain, 1)
              if (Option.isSome(metaSource) && Option.isSome(metaChain)) yield* Confined.prune(metaChain.value, 1)
            }))).pipe(
              Effect.catchIf((e) => e.reason === "NotFound", () => fsError("move", "NotFound", `no object at ${from.key}`))
            )
        const at = new Date()
        yield* instrument.publish(new ObjectWritten({ backend: BACKEND, at, locator: to.key, size: info.size }))
        yield* instrument.publish(
          new ObjectCopied({ backend: BACKEND, at, source: from.key, destination: to.key, moved: true })
        )
        return toStat(to.locator, info, meta)
      }).pipe(instrument.observe("move"))

    /**
     * Streams the objects in the open directory `dir` (whose path relative to the bucket is `rel`), in UTF-8 byte order.
     * The entry types come from readdir; only files are stat'ed (for size and time), synchronously and in batches on
     * the held directory: one thread-pool round trip and one effect per file cost far more than the lstat itself.
     */
    const walk = (bucket: string, dir: Confined.Dir, rel: string, namePrefix: string): Stream.Stream<ObjectStat, ObjectStoreError> =>
      Stream.unwrap(Effect.gen(function*() {
        const where = `${scheme}://${bucket}/${rel}`
        // node:fs directly: the platform's readDirectory does not say which entries are symbolic links.
        // Synchronous, like the lstats below: a thread-pool round trip per directory cost more than the read
        // (the listing of 18k block objects in 256 directories spent a fifth of its time waiting for them).
        const dirents = yield* Effect.try({
          try: () => NFS.readdirSync(dir.at("."), { withFileTypes: true }),
          catch: fromFileSystem("list", where)
        })
        // The store follows no symbolic link (see confined.ts): one is not part of this store, nor is anything but files and directories.
        const wanted = dirents.filter((d) => d.name.startsWith(namePrefix) && (d.isFile() || d.isDirectory()))
        // A directory sorts as `name/`: every path under it starts that way,
        // which places it correctly among sibling files (`a-` < `a/…` < `a0`).
        const sorted = wanted
          .map((d) => ({ name: d.name, directory: d.isDirectory(), sortKey: d.isDirectory() ? `${d.name}/` : d.name }))
          .sort((a, b) => KvKey.compare(a.sortKey, b.sortKey))
        // Runs of files become one chunk each; each directory its own stream.
        const parts: Array<{ readonly files: Array<string> } | { readonly directory: string }> = []
        for (const e of sorted) {
          const lastPart = parts[parts.length - 1]
          if (e.directory) parts.push({ directory: e.name })
          else if (lastPart !== undefined && "files" in lastPart) lastPart.files.push(e.name)
          else parts.push({ files: [e.name] })
        }
        return Stream.fromIterable(parts).pipe(
          Stream.flatMap((part) => {
            if ("directory" in part) {
              return Stream.unwrapScoped(
                Effect.map(Confined.openScoped("list", root, dir, [part.directory], false), (child) => walk(bucket, child, `${rel}${part.directory}/`, ""))
              ).pipe(
                // Gone meanwhile, or swapped for a link: nothing of this store under it.
                Stream.catchAll((error) =>
                  isMissing(error.cause) || (error.reason === "PermissionDenied" && error.cause === undefined) ? Stream.empty : Stream.fail(error)
                )
              )
            }
            return Stream.fromIterable(batches(part.files)).pipe(
              Stream.mapEffect((names) => Effect.try({ try: () => statFiles(bucket, dir, rel, names), catch: fromFileSystem("list", where) })),
              Stream.flattenIterables
            )
          })
        )
      }).pipe(
        // The directory is gone (or is a file): nothing under it.
        Effect.catchIf((e) => isMissing(e.cause), () => Effect.succeed(Stream.empty))
      ))

    /** The objects among `names` in `dir`: lstat (never follows), so a file swapped for a link since readdir is left out. */
    const statFiles = (bucket: string, dir: Confined.Dir, rel: string, names: ReadonlyArray<string>): Array<ObjectStat> => {
      const out: Array<ObjectStat> = []
      for (const name of names) {
        let st: NFS.Stats
        try {
          st = NFS.lstatSync(dir.at(name))
        } catch (e) {
          // Deleted since the directory was read: not part of the listing.
          if (isMissing(e)) continue
          throw e
        }
        if (!st.isFile()) continue
        // Files this store could not have written (names no locator can hold) are not objects.
        const l = BlobLocator.make(scheme, bucket, rel + name)
        if (Either.isRight(l)) out.push(toStat(l.right, st, {}))
      }
      return out
    }

    const list: MutableObjectStoreShape["list"] = (prefix) =>
      Stream.unwrapScoped(Effect.gen(function*() {
        if (typeof prefix !== "object" || prefix === null) {
          return yield* fsError("list", "InvalidInput", "the prefix is missing")
        }
        const p = yield* Either.mapLeft(BlobLocator.makePrefix(prefix.scheme, prefix.bucket, prefix.path), invalid("list"))
        if (p.scheme !== scheme) {
          return yield* fsError("list", "InvalidInput", `this store answers to ${scheme}:// locators, not ${p.toString()}`)
        }
        const bucketProblem = checkBucket(p.bucket)
        if (bucketProblem !== undefined) return yield* fsError("list", "InvalidInput", `${p.toString()}: ${bucketProblem}`)
        const cut = p.path.lastIndexOf("/") + 1
        const dirPart = p.path.slice(0, cut)
        const segments = [p.bucket, ...(dirPart === "" ? [] : dirPart.slice(0, -1).split("/"))]
        if (segments.some((s) => s.includes(Path.sep))) {
          return yield* fsError("list", "InvalidInput", `${p.toString()} resolves outside the store's root`)
        }
        return yield* Confined.openScoped("list", root, base, segments, false).pipe(
          Effect.map((start) => walk(p.bucket, start, dirPart, p.path.slice(cut))),
          Effect.catchIf((e) => isMissing(e.cause), () => Effect.succeed(Stream.empty))
        )
      })).pipe(instrument.observeStream("list"))

    // A file is written the same way whatever its source: temp file, then rename.
    const write = writeThroughPut(put)
    return TracingPorts.objectStore(BACKEND, { capabilities, head, list, get, put, write, delete: del, copy, move })
  })

const checkBucket = (bucket: string): string | undefined =>
  bucket === RESERVED ? `the bucket name ${RESERVED} is reserved by the store` : undefined

const metaOf = (options: PutOptions | undefined): Meta | undefined =>
  options?.contentType === undefined && options?.metadata === undefined
    ? undefined
    : {
      ...(options.contentType === undefined ? {} : { contentType: options.contentType }),
      ...(options.metadata === undefined ? {} : { metadata: { ...options.metadata } })
    }

const checkOptions = (method: string, options: PutOptions | undefined): Effect.Effect<void, ObjectStoreError> => {
  if (options === undefined) return Effect.void
  if (options.size !== undefined && (!Number.isSafeInteger(options.size) || options.size < 0)) {
    return Effect.fail(fsError(method, "InvalidInput", `the declared size must be a non-negative integer, got ${options.size}`))
  }
  if (options.contentType !== undefined && typeof options.contentType !== "string") {
    return Effect.fail(fsError(method, "InvalidInput", "the content type must be a string"))
  }
  for (const [k, v] of Object.entries(options.metadata ?? {})) {
    if (typeof v !== "string") return Effect.fail(fsError(method, "InvalidInput", `metadata ${JSON.stringify(k)} is not a string`))
  }
  return Effect.void
}

/**
 * Unlinks the file at `p`: one syscall, where FileSystem.remove stats first. Absent, or a
 * directory (not an object; Linux says EISDIR, macOS EPERM), is success.
 */
const unlinkFile = (p: string): Promise<void> =>
  NFS.promises.unlink(p).catch(async (e: unknown) => {
    const code = errnoCode(e)
    if (isMissing(e) || code === "EISDIR") return
    if (code === "EPERM" && (await NFS.promises.lstat(p).then((s) => s.isDirectory(), () => false))) return
    throw e
  })

/** Removes temp files a crashed process left behind (untouched for a day; live puts keep theirs fresh). */
const sweepStaleTemps = (tmpDir: Confined.Dir) =>
  Effect.promise(async () => {
    const names = await NFS.promises.readdir(tmpDir.at(".")).catch((): Array<string> => [])
    for (const name of names) {
      // lstat and unlink act on a link itself: nothing outside is followed.
      const st = await NFS.promises.lstat(tmpDir.at(name)).catch(() => undefined)
      if (st !== undefined && !st.isDirectory() && Date.now() - st.mtimeMs > STALE_TEMP_MS) {
        await NFS.promises.unlink(tmpDir.at(name)).catch(() => undefined)
      }
    }
  })

/** The stat of an object from its file's. */
const toStat = (locator: BlobLocator.BlobLocator, info: NFS.Stats, meta: Meta): ObjectStat => ({
  locator,
  size: info.size,
  etag: Option.some(`${info.ino.toString(36)}-${info.mtime.getTime().toString(36)}-${info.size.toString(36)}`),
  lastModified: Option.some(info.mtime),
  contentType: Option.fromNullable(meta.contentType),
  metadata: { ...meta.metadata }
})

const layerContext = (store: MutableObjectStoreShape) =>
  Context.make(MutableObjectStore, store).pipe(Context.add(ImmutableObjectStore, store))

/**
 * Both object-store ports on the local disk under `options.root`, on node:fs directly (every
 * path goes through the root's descriptor, see confined.ts; the platform's FileSystem has no
 * descriptor-relative calls, no O_NOFOLLOW, no typed readdir nor rmdir).
 */
export const layer = (
  options: FsObjectStoreOptions
): Layer.Layer<MutableObjectStore | ImmutableObjectStore, ObjectStoreError> =>
  Layer.scopedContext(Effect.map(make(options), layerContext))

/** Options from the environment: GRAVITON_FS_ROOT (required), GRAVITON_FS_SCHEME, GRAVITON_FS_FSYNC, GRAVITON_FS_PERMISSIONS. */
export const config: Config.Config<FsObjectStoreOptions> = Config.all({
  root: Config.string("GRAVITON_FS_ROOT").pipe(
    Config.withDescription("Directory under which the filesystem object store keeps its buckets")
  ),
  scheme: Config.string("GRAVITON_FS_SCHEME").pipe(
    Config.withDefault("file"),
    Config.withDescription("Locator scheme the filesystem store answers to")
  ),
  fsync: Config.boolean("GRAVITON_FS_FSYNC").pipe(
    Config.withDefault(false),
    Config.withDescription("fsync every object before it becomes visible")
  ),
  permissions: Config.literal("private", "shared")("GRAVITON_FS_PERMISSIONS").pipe(
    Config.withDefault("private" as const),
    Config.withDescription("Modes of what the store creates: private (0700/0600, default) or shared (0755/0644)")
  )
})

/** Like `layer`, with options read from `Config` (by default `config`, i.e. GRAVITON_FS_*). */
export const layerConfig = (
  options: Config.Config.Wrap<FsObjectStoreOptions> = config
): Layer.Layer<MutableObjectStore | ImmutableObjectStore, ObjectStoreError | ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(options), layer))
