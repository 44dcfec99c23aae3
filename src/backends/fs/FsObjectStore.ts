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
import * as FileSystem from "@effect/platform/FileSystem"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
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
import { BACKEND, errnoCode, fromFileSystem, fsError, isMissing } from "./errors.js"
import { objectPath, writeBehind, writeGathered } from "./files.js"

/** Options of the filesystem object store. */
export interface FsObjectStoreOptions {
  /** Directory holding every bucket; created when missing. */
  readonly root: string
  /** The locator scheme this store answers to; others fail with InvalidInput. Default "file". */
  readonly scheme?: string | undefined
  /** fsync each object before it becomes visible (durability over speed). Default false. */
  readonly fsync?: boolean | undefined
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
/** Stats run concurrently while listing one directory. */
const STAT_CONCURRENCY = 32
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
  readonly bucketDir: string
  readonly file: string
  readonly metaBucketDir: string
  readonly metaFile: string
}

const now = Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms))

const invalid = (method: string) => (e: InvalidValue) => toPortError(ObjectStoreError, BACKEND, method)(e)

/** Builds a filesystem object store over `options.root` (creating it and the store's directories). */
export const make = (
  options: FsObjectStoreOptions
): Effect.Effect<MutableObjectStoreShape, ObjectStoreError, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const instrument = yield* Instrument.make(BACKEND, "ObjectStore")
    const scheme = options.scheme ?? "file"
    const fsync = options.fsync ?? false
    if (Either.isLeft(BlobLocator.make(scheme, "bucket", "path"))) {
      return yield* fsError("make", "InvalidInput", `invalid scheme ${JSON.stringify(scheme)}`)
    }
    const init = fromFileSystem("make", `preparing root ${options.root}`)
    yield* fs.makeDirectory(options.root, { recursive: true }).pipe(Effect.mapError(init))
    // Everything below works on the real path, so containment is a prefix test.
    const root = yield* fs.realPath(Path.resolve(options.root)).pipe(Effect.mapError(init))
    const tmpDir = Path.join(root, RESERVED, "tmp")
    const metaDir = Path.join(root, RESERVED, "meta")
    yield* fs.makeDirectory(tmpDir, { recursive: true }).pipe(Effect.mapError(init))
    yield* fs.makeDirectory(metaDir, { recursive: true }).pipe(Effect.mapError(init))
    yield* sweepStaleTemps(fs, tmpDir)

    const inside = (p: string) => p.startsWith(root + Path.sep)

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
      const bucketDir = Path.join(root, locator.bucket)
      const metaBucketDir = Path.join(metaDir, locator.bucket)
      const file = objectPath(root, locator.bucket, locator.path)
      const metaFile = Path.join(metaBucketDir, ...segments)
      // The parser already forbids `..`; this is the belt to its braces.
      if (!inside(file) || !file.startsWith(bucketDir + Path.sep)) {
        return Effect.fail(fsError(method, "InvalidInput", `${key} resolves outside the store's root`))
      }
      return Effect.succeed({ locator, key, bucketDir, file, metaBucketDir, metaFile })
    }

    /**
     * The real path of `p`, failing when a symbolic link leads outside root. The promise API's
     * realpath is one realpath(3) call; the callback one (behind FileSystem.realPath) walks the
     * path with one lstat per component, each queued behind the thread pool's writes.
     */
    const guard = (method: string, p: string) =>
      Effect.tryPromise({ try: () => NFS.promises.realpath(p), catch: fromFileSystem(method) }).pipe(
        Effect.filterOrFail(
          (real) => real === p || inside(real),
          () => fsError(method, "PermissionDenied", "a symbolic link leads outside the store's root")
        )
      )

    /** The object's metadata file, None when it has none. */
    const findMeta = (method: string, t: Target): Effect.Effect<Option.Option<Meta>, ObjectStoreError> =>
      fs.readFileString(t.metaFile).pipe(
        Effect.flatMap((text) =>
          Either.mapLeft(decodeMeta(text), () => fsError(method, "Corrupted", `unreadable metadata for ${t.key}`))
        ),
        Effect.map(Option.some),
        Effect.catchIf(isMissing, () => Effect.succeed(Option.none<Meta>())),
        Effect.mapError(fromFileSystem(method, t.key))
      )

    const readMeta = (method: string, t: Target): Effect.Effect<Meta, ObjectStoreError> =>
      Effect.map(findMeta(method, t), Option.getOrElse((): Meta => ({})))

    const toStat = (locator: BlobLocator.BlobLocator, info: FileSystem.File.Info, meta: Meta): ObjectStat => ({
      locator,
      size: Number(info.size),
      etag: Option.map(
        Option.all([info.ino, info.mtime]),
        ([ino, mtime]) => `${ino.toString(36)}-${mtime.getTime().toString(36)}-${Number(info.size).toString(36)}`
      ),
      lastModified: info.mtime,
      contentType: Option.fromNullable(meta.contentType),
      metadata: { ...meta.metadata }
    })

    /** Stat of the object's file; None when there is no regular file there. */
    const statObject = (method: string, t: Target) =>
      guard(method, t.file).pipe(
        Effect.flatMap((real) => Effect.mapError(fs.stat(real), fromFileSystem(method, t.key))),
        Effect.map((info) => (info.type === "File" ? Option.some(info) : Option.none())),
        Effect.catchIf((e) => isMissing(e.cause), () => Effect.succeed(Option.none<FileSystem.File.Info>()))
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
          const real = yield* guard("get", t.file).pipe(
            Effect.catchIf((e) => isMissing(e.cause), () => Effect.fail(notFound()))
          )
          // Opened first, then measured: a concurrent overwrite renames a new
          // file into place, and this descriptor keeps reading the old one.
          const file = yield* fs.open(real, { flag: "r" }).pipe(
            Effect.mapError(fromFileSystem("get", t.key)),
            Effect.catchIf((e) => isMissing(e.cause), () => Effect.fail(notFound()))
          )
          const info = yield* Effect.mapError(file.stat, fromFileSystem("get", t.key))
          if (info.type !== "File") return yield* notFound()
          const size = Number(info.size)
          const [start, end] = yield* Either.mapLeft(resolveRange(range, size), invalid("get"))
          if (start > 0) yield* file.seek(start, "start")
          // Chunks are lent (see Lending): a consumer that writes them out gives each back for the next read,
          // of this stream or a later one (a chunked blob reads one object per block).
          const pool = end - start >= SHARED_READ_MIN ? readPool : new Lending.Pool(Math.max(1, end - start))
          return Stream.unfoldChunkEffect(end - start, (left) => {
            if (left <= 0) return Effect.succeed(Option.none())
            const buffer = pool.take()
            const want = Math.min(buffer.length, left)
            return file.read(want === buffer.length ? buffer : buffer.subarray(0, want)).pipe(
              Effect.mapError(fromFileSystem("get", t.key)),
              Effect.flatMap((size) => {
                const n = Number(size)
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
     * Renames `from` onto `to`, creating `to`'s parents; retried when a concurrent delete prunes them meanwhile.
     * `createOnly` links instead, which fails with AlreadyExists when `to` is taken (the temp name is removed later).
     */
    const place = (method: string, from: string, to: string, what: string, createOnly = false) => {
      const attempt = (left: number): Effect.Effect<void, ObjectStoreError> =>
        Effect.gen(function*() {
          const parent = Path.dirname(to)
          yield* fs.makeDirectory(parent, { recursive: true }).pipe(
            Effect.mapError((e) =>
              // mkdir -p meets a file where a directory should be: that file is another object.
              errnoCode(e) === "EEXIST" || errnoCode(e) === "ENOTDIR"
                ? new ObjectStoreError({
                  reason: "Conflict",
                  backend: BACKEND,
                  method,
                  description: `${what}: a parent of this path is itself an object`,
                  cause: e
                })
                : fromFileSystem(method, what)(e)
            )
          )
          yield* guard(method, parent)
          yield* createOnly
            ? Effect.tryPromise({ try: () => NFS.promises.link(from, to), catch: fromFileSystem(method, what) }).pipe(
              Effect.catchIf((e) => errnoCode(e.cause) === "EEXIST", (e) => taken(method, to, what, e))
            )
            : fs.rename(from, to).pipe(Effect.mapError(fromFileSystem(method, what)))
        }).pipe(
          Effect.catchIf(
            (e) => left > 1 && e.reason !== "AlreadyExists" && (errnoCode(e.cause) === "ENOENT" || errnoCode(e.cause) === "EEXIST"),
            (e) =>
              errnoCode(e.cause) === "ENOENT"
                ? attempt(left - 1)
                // mkdir -p saw the directory, then a concurrent prune removed it before mkdir could check
                // it (Node then reports EEXIST): only a file in the way is a real conflict.
                : Effect.flatMap(
                  Effect.promise(() => NFS.promises.stat(Path.dirname(to)).then((st) => st.isFile(), () => false)),
                  (isFile) => (isFile ? Effect.fail(e) : attempt(left - 1))
                )
          )
        )
      return attempt(PLACE_ATTEMPTS)
    }

    /** A create-only put found `to` taken: by an object (AlreadyExists) or by the directory of others (Conflict). */
    const taken = (method: string, to: string, what: string, e: ObjectStoreError) =>
      Effect.flatMap(
        Effect.promise(() => NFS.promises.lstat(to).then((st) => st.isDirectory(), () => false)),
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
    const removeFile = (method: string, p: string, what: string) =>
      Effect.tryPromise({ try: () => unlinkFile(p), catch: fromFileSystem(method, what) })

    /** Removes the now-empty directories between `from` and `stop` (exclusive); stops at the first non-empty one. */
    const prune = (from: string, stop: string): Effect.Effect<void> =>
      from === stop || !from.startsWith(stop + Path.sep)
        ? Effect.void
        : Effect.tryPromise(() => NFS.promises.rmdir(from)).pipe(
          Effect.matchEffect({ onFailure: () => Effect.void, onSuccess: () => prune(Path.dirname(from), stop) })
        )

    const cleanup = (paths: ReadonlyArray<string>) =>
      Effect.forEach(paths, (p) => Effect.promise(() => unlinkFile(p).catch(() => undefined)), { discard: true })

    const tempPath = (kind: string) => Path.join(tmpDir, `${kind}-${randomUUID()}`)

    const put: MutableObjectStoreShape["put"] = (locator, putOptions) =>
      Sink.unwrapScoped(
        Effect.gen(function*() {
          const t = yield* target("put", locator)
          yield* checkOptions("put", putOptions)
          const scope = yield* Effect.scope
          const dataTmp = tempPath("put")
          const meta = metaOf(putOptions)
          const metaTmp = meta === undefined ? undefined : tempPath("meta")
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
          if (metaTmp !== undefined) {
            yield* fs.writeFileString(metaTmp, JSON.stringify(meta), { flag: "wx" }).pipe(
              Effect.mapError(fromFileSystem("put", "writing metadata"))
            )
          }
          // Own scope, so the descriptor can be closed before the rename.
          const fileScope = yield* Scope.fork(scope, ExecutionStrategy.sequential)
          const file = yield* fs.open(dataTmp, { flag: "wx" }).pipe(
            Scope.extend(fileScope),
            Effect.mapError(fromFileSystem("put", "creating a temp file"))
          )
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
          const commit = Effect.gen(function*() {
            const written = writer.written()
            if (declared !== undefined && written !== declared) {
              return yield* fsError("put", "InvalidInput", `declared ${declared} bytes but the stream had ${written}`)
            }
            yield* drain
            if (fsync) yield* Effect.mapError(file.sync, fromFileSystem("put", t.key))
            const info = yield* Effect.mapError(file.stat, fromFileSystem("put", t.key))
            yield* Scope.close(fileScope, Exit.void)
            yield* place("put", dataTmp, t.file, t.key, putOptions?.ifAbsent === true)
            committed = true
            // Metadata follows the bytes; a reader in between sees the new bytes with the old metadata.
            if (metaTmp !== undefined) yield* place("put", metaTmp, t.metaFile, t.key)
            else yield* removeFile("put", t.metaFile, t.key)
            yield* instrument.publish(new ObjectWritten({ backend: BACKEND, at: yield* now, locator: t.key, size: written }))
            return toStat(t.locator, info, meta ?? {})
          }).pipe(Effect.uninterruptible)
          return Sink.forEachChunk((chunks: Chunk.Chunk<Uint8Array>) => writeGathered(chunks, write)).pipe(
            Sink.mapEffect(() => commit)
          )
        })
      ).pipe(instrument.observeSink("put"))

    const del: MutableObjectStoreShape["delete"] = (locator) =>
      Effect.gen(function*() {
        const t = yield* target("delete", locator)
        // Only the parent is resolved: a symbolic link at the path itself is removed, not followed.
        const parent = yield* guard("delete", Path.dirname(t.file)).pipe(
          Effect.map(Option.some),
          Effect.catchIf((e) => isMissing(e.cause), () => Effect.succeed(Option.none<string>()))
        )
        if (Option.isSome(parent)) {
          yield* Effect.uninterruptible(Effect.zipRight(
            removeFile("delete", Path.join(parent.value, Path.basename(t.file)), t.key),
            removeFile("delete", t.metaFile, t.key)
          ))
          yield* prune(Path.dirname(t.file), t.bucketDir)
          yield* prune(Path.dirname(t.metaFile), t.metaBucketDir)
        }
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

    const copy: MutableObjectStoreShape["copy"] = (source, destination) =>
      Effect.scoped(Effect.gen(function*() {
        const { from, info: sourceInfo, to } = yield* endpoints("copy", source, destination)
        const meta = yield* readMeta("copy", from)
        if (from.key === to.key) return toStat(to.locator, sourceInfo, meta)
        const dataTmp = tempPath("copy")
        const metaTmp = tempPath("meta")
        yield* Effect.addFinalizer(() => cleanup([dataTmp, metaTmp]))
        const real = yield* guard("copy", from.file)
        yield* fs.copyFile(real, dataTmp).pipe(
          Effect.mapError(fromFileSystem("copy", from.key)),
          Effect.catchIf((e) => isMissing(e.cause), () => fsError("copy", "NotFound", `no object at ${from.key}`))
        )
        const hasMeta = meta.contentType !== undefined || meta.metadata !== undefined
        if (hasMeta) {
          yield* fs.writeFileString(metaTmp, JSON.stringify(meta), { flag: "wx" }).pipe(
            Effect.mapError(fromFileSystem("copy", "writing metadata"))
          )
        }
        const info = yield* Effect.mapError(fs.stat(dataTmp), fromFileSystem("copy", to.key))
        yield* Effect.uninterruptible(Effect.gen(function*() {
          yield* place("copy", dataTmp, to.file, to.key)
          if (hasMeta) yield* place("copy", metaTmp, to.metaFile, to.key)
          else yield* removeFile("copy", to.metaFile, to.key)
        }))
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
        yield* Effect.uninterruptible(Effect.gen(function*() {
          yield* place("move", from.file, to.file, from.key).pipe(
            Effect.catchIf(
              (e) => e.reason === "NotFound",
              () => fsError("move", "NotFound", `no object at ${from.key}`)
            )
          )
          // Metadata moves with the bytes; none at the source means none at the destination.
          // (Most objects have none: the common move then costs no metadata rename or prune.)
          yield* Option.isNone(found)
            ? removeFile("move", to.metaFile, to.key)
            : place("move", from.metaFile, to.metaFile, to.key).pipe(
              Effect.catchIf((e) => isMissing(e.cause), () => removeFile("move", to.metaFile, to.key))
            )
        }))
        yield* prune(Path.dirname(from.file), from.bucketDir)
        if (Option.isSome(found)) yield* prune(Path.dirname(from.metaFile), from.metaBucketDir)
        const at = new Date()
        yield* instrument.publish(new ObjectWritten({ backend: BACKEND, at, locator: to.key, size: Number(info.size) }))
        yield* instrument.publish(
          new ObjectCopied({ backend: BACKEND, at, source: from.key, destination: to.key, moved: true })
        )
        return toStat(to.locator, info, meta)
      }).pipe(instrument.observe("move"))

    /** Streams the objects under `dir` (whose path relative to the bucket is `rel`), in UTF-8 byte order. */
    const walk = (
      bucket: string,
      dir: string,
      rel: string,
      namePrefix: string,
      ancestors: ReadonlySet<string>
    ): Stream.Stream<ObjectStat, ObjectStoreError> =>
      Stream.unwrap(Effect.gen(function*() {
        const where = `${scheme}://${bucket}/${rel}`
        const real = yield* guard("list", dir)
        // A symbolic link back to an ancestor would make the walk endless.
        if (ancestors.has(real)) return Stream.empty
        // node:fs directly: the platform's readDirectory does not say which entries are symbolic links.
        const dirents = yield* Effect.tryPromise({
          try: () => NFS.promises.readdir(dir, { withFileTypes: true }),
          catch: fromFileSystem("list", where)
        })
        const entries = yield* Effect.forEach(
          dirents.filter((d) => d.name.startsWith(namePrefix)),
          (d) => {
            const p = Path.join(dir, d.name)
            // Only links need resolving; one leading outside root is not part of this store.
            const checked = d.isSymbolicLink()
              ? guard("list", p).pipe(Effect.as(true), Effect.catchIf((e) => e.reason === "PermissionDenied", () => Effect.succeed(false)))
              : Effect.succeed(true)
            return checked.pipe(
              Effect.flatMap((ok) =>
                ok
                  ? Effect.map(Effect.mapError(fs.stat(p), fromFileSystem("list", `${where}${d.name}`)), (info) =>
                    Option.some({ name: d.name, info }))
                  : Effect.succeed(Option.none())
              ),
              // Deleted since the directory was read: not part of the listing.
              Effect.catchIf((e) => isMissing(e.cause), () => Effect.succeed(Option.none()))
            )
          },
          { concurrency: STAT_CONCURRENCY }
        )
        // A directory sorts as `name/`: every path under it starts that way,
        // which places it correctly among sibling files (`a-` < `a/…` < `a0`).
        const sorted = entries
          .flatMap((e) => (Option.isSome(e) && (e.value.info.type === "File" || e.value.info.type === "Directory") ? [e.value] : []))
          .map((e) => ({ ...e, sortKey: e.info.type === "Directory" ? `${e.name}/` : e.name }))
          .sort((a, b) => KvKey.compare(a.sortKey, b.sortKey))
        const inner = new Set(ancestors).add(real)
        return Stream.fromIterable(sorted).pipe(
          Stream.flatMap((e) => {
            if (e.info.type === "Directory") return walk(bucket, Path.join(dir, e.name), `${rel}${e.name}/`, "", inner)
            // Files this store could not have written (names no locator can hold) are not objects.
            const l = BlobLocator.make(scheme, bucket, rel + e.name)
            return Either.isRight(l) ? Stream.succeed(toStat(l.right, e.info, {})) : Stream.empty
          })
        )
      }).pipe(
        // The directory is gone (or is a file): nothing under it.
        Effect.catchIf((e) => isMissing(e.cause), () => Effect.succeed(Stream.empty)),
        // A directory reached through a link that leads outside root is not part of this store.
        Effect.catchIf((e) => e.reason === "PermissionDenied" && rel !== "", () => Effect.succeed(Stream.empty))
      ))

    const list: MutableObjectStoreShape["list"] = (prefix) =>
      Stream.unwrap(Effect.gen(function*() {
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
        const bucketDir = Path.join(root, p.bucket)
        const start = dirPart === "" ? bucketDir : Path.join(bucketDir, ...dirPart.slice(0, -1).split("/"))
        if (!inside(start)) return yield* fsError("list", "InvalidInput", `${p.toString()} resolves outside the store's root`)
        return walk(p.bucket, start, dirPart, p.path.slice(cut), new Set())
      })).pipe(instrument.observeStream("list"))

    // A file is written the same way whatever its source: temp file, then rename.
    const write = writeThroughPut(put)
    return { capabilities, head, list, get, put, write, delete: del, copy, move }
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
const sweepStaleTemps = (fs: FileSystem.FileSystem, tmpDir: string) =>
  fs.readDirectory(tmpDir).pipe(
    Effect.flatMap((names) =>
      Effect.forEach(names, (name) => {
        const p = Path.join(tmpDir, name)
        return fs.stat(p).pipe(
          Effect.flatMap((info) =>
            Option.match(info.mtime, {
              onNone: () => Effect.void,
              onSome: (mtime) => (Date.now() - mtime.getTime() > STALE_TEMP_MS ? fs.remove(p, { force: true }) : Effect.void)
            })
          ),
          Effect.ignore
        )
      }, { discard: true })
    ),
    Effect.ignore
  )

const layerContext = (store: MutableObjectStoreShape) =>
  Context.make(MutableObjectStore, store).pipe(Context.add(ImmutableObjectStore, store))

/**
 * Both object-store ports on the local disk under `options.root`, over
 * Node's FileSystem (directory listing and pruning call node:fs directly:
 * the platform has no typed readdir nor rmdir, so no other FileSystem fits).
 */
export const layer = (
  options: FsObjectStoreOptions
): Layer.Layer<MutableObjectStore | ImmutableObjectStore, ObjectStoreError> =>
  Layer.provide(Layer.effectContext(Effect.map(make(options), layerContext)), NodeFileSystem.layer)

/** Options from the environment: GRAVITON_FS_ROOT (required), GRAVITON_FS_SCHEME, GRAVITON_FS_FSYNC. */
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
  )
})

/** Like `layer`, with options read from `Config` (by default `config`, i.e. GRAVITON_FS_*). */
export const layerConfig = (
  options: Config.Config.Wrap<FsObjectStoreOptions> = config
): Layer.Layer<MutableObjectStore | ImmutableObjectStore, ObjectStoreError | ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(options), layer))
