/**
 * The UploadStaging of the local filesystem store (the embedded default):
 * all the bytes of an upload in one file, `<prefix><id>/data` in the fs
 * object store, each span written in place at its offset (as tus's
 * filestore does). Nothing is copied at the end: `complete` cuts the file to
 * the upload's size and hands it to the BlobStore's BlobAssembly, which
 * renames it to the blob's address (monolithic layout); when the writing
 * process hashed the content in order (uploads/UploadHashes), nothing is
 * read back either. Without a BlobAssembly the file is streamed into
 * `BlobStore.put`.
 *
 * A file cannot prove which of its bytes were written, so what has landed
 * is known from the RangeTracker alone (`landed` is empty). Uploads merges a
 * segment there once its bytes are written (and fsynced, when the store
 * fsyncs): a writer killed in between loses that segment, no more. A re-sent
 * span overwrites the same bytes.
 */
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import type * as Scope from "effect/Scope"
import * as NFS from "node:fs"
import type * as BinaryKey from "../../core/BinaryKey.js"
import * as BlobLocator from "../../core/BlobLocator.js"
import { BlobError, type ObjectStoreError, toPortError } from "../../core/Errors.js"
import * as Hashing from "../../core/Hashing.js"
import * as RangeSet from "../../core/RangeSet.js"
import { BlobAssembly } from "../../ports/BlobAssembly.js"
import { BlobStore } from "../../ports/BlobStore.js"
import { MutableObjectStore, type MutableObjectStoreShape } from "../../ports/ObjectStore.js"
import { UploadStaging } from "../../ports/UploadStaging.js"
import * as Confined from "./confined.js"
import * as TracingPorts from "../../kit/TracingPorts.js"
import { fromFileSystem, isMissing } from "./errors.js"
import { writeBehind, writeGathered } from "./files.js"

/** Backend name in errors raised here. */
const BACKEND = "uploads"

/** Name recorded with each upload (an upload is resumed only by the staging that began it). */
export const NAME = "file"

/** Default segment size: 8 MiB (the most a killed writer loses per span in flight). */
export const DEFAULT_SEGMENT_SIZE = 8 * 1024 * 1024

/** Name of the file holding an upload's bytes, inside its directory. */
export const DATA = "data"

/** What the file staging works with. */
interface Context {
  /**
   * Root of the fs object store `objects`, held open (the file lives inside it, so adopting it is a
   * rename); every file of an upload is reached through it, never through a link (see confined.ts).
   */
  readonly root: Confined.Root
  readonly objects: MutableObjectStoreShape
  readonly blobs: BlobStore["Type"]
  /** When present, complete adopts the file instead of copying it (must use the same object store). */
  readonly assembly: Option.Option<BlobAssembly["Type"]>
  /** Where uploads live; each gets `<prefix><id>/data`. */
  readonly prefix: BlobLocator.LocatorPrefix
  readonly segmentSize?: number | undefined
  /** fsync each segment before it counts as landed. */
  readonly fsync?: boolean | undefined
}

const fail = (reason: BlobError["reason"], method: string, description: string) =>
  new BlobError({ reason, backend: BACKEND, method, description })

/** The one error mapping here: a filesystem or object store failure keeps its reason. */
const fromError = (method: string, what: string) => (e: unknown): BlobError => {
  const error: ObjectStoreError = fromFileSystem(method, what)(e)
  return new BlobError({ reason: error.reason, backend: BACKEND, method, description: error.message, cause: error })
}

/** The file staging over an fs object store (see the module comment). */
const build = (options: Context): UploadStaging["Type"] => {
  const { objects, blobs, assembly, prefix } = options
  const segmentSize = options.segmentSize ?? DEFAULT_SEGMENT_SIZE
  const fsync = options.fsync ?? false

  const { root } = options

  /** The upload's data object, and the directories from root to its file. */
  const dataOf = (method: string, id: string) =>
    Either.map(
      Either.mapLeft(BlobLocator.child(prefix, `${id}/${DATA}`), toPortError(BlobError, BACKEND, method)),
      (locator) => ({ locator, dirs: [locator.bucket, ...locator.path.split("/").slice(0, -1)], text: BlobLocator.render(locator) })
    )

  /** Opens the upload's file (`flags` plus O_NOFOLLOW) through directories opened without following links. */
  const openData = (method: string, data: { readonly dirs: ReadonlyArray<string>; readonly text: string }, flags: string | number, create: boolean) =>
    Confined.withDir(method, root, root.dir, data.dirs, create, (chain) =>
      Effect.tryPromise({
        try: () => NFS.promises.open(Confined.last(chain).at(DATA), flags, root.modes.file),
        catch: Confined.refuseLink(method, data.text)
      })).pipe(Effect.mapError(fromError(method, data.text)))

  const closeHandle = (h: NFS.promises.FileHandle) => Effect.promise(() => h.close().catch(() => undefined))

  const begin: UploadStaging["Type"]["begin"] = (id) =>
    Effect.gen(function*() {
      const data = yield* dataOf("begin", id)
      // "wx" (O_CREAT|O_EXCL): a fresh id never names an existing file; if it does, refuse rather than share it.
      const h = yield* openData("begin", data, "wx", true)
      yield* closeHandle(h)
      return ""
    })

  const writeSegment: UploadStaging["Type"]["writeSegment"] = (id, _state, start, bytes) =>
    Effect.gen(function*() {
      const data = yield* dataOf("write", id)
      const written = yield* Effect.acquireUseRelease(
        // Not created here: a missing file means the upload was aborted or completed meanwhile.
        openData("write", data, NFS.constants.O_RDWR | Confined.NOFOLLOW, false).pipe(
          Effect.catchIf(
            (e) => isMissing(e.cause),
            () => Effect.fail(fail("NotFound", "write", `the staged file of upload ${id} is gone (aborted, expired or completed)`))
          )
        ),
        (handle) => {
          const writer = writeBehind(handle.fd, start)
          const write = (chunk: Uint8Array) => Effect.tryPromise({ try: () => writer.write(chunk), catch: fromError("write", data.text) })
          return Stream.runForEachChunk(bytes, (chunks) => writeGathered(chunks, write)).pipe(
            Effect.zipRight(Effect.tryPromise({
              try: async () => {
                await writer.drain()
                if (fsync && writer.written() > 0) await handle.datasync()
              },
              catch: fromError("write", data.text)
            })),
            // Never close the descriptor under a write still in flight.
            Effect.onExit(() => Effect.promise(writer.settled)),
            Effect.map(() => writer.written())
          )
        },
        closeHandle
      )
      return written === 0 ? Option.none() : Option.some(new RangeSet.Span({ start, end: start + written }))
    })

  const abort: UploadStaging["Type"]["abort"] = (id) =>
    Effect.gen(function*() {
      const dir = yield* Either.mapLeft(
        BlobLocator.makePrefix(prefix.scheme, prefix.bucket, `${prefix.path}${id}/`),
        toPortError(BlobError, BACKEND, "abort")
      )
      // Everything in the upload's directory (its file, or the segments an object staging left there);
      // the store's delete prunes the emptied directory, and an absent one lists nothing.
      yield* objects.list(dir).pipe(
        Stream.mapEffect((stat) => objects.delete(stat.locator), { concurrency: 4 }),
        Stream.runDrain,
        Effect.mapError(fromError("abort", `upload ${id}`))
      )
    })

  /** The key of the file's first `size` bytes, read back once (the whole content is hashed in order). */
  const hashFile = (data: { readonly locator: BlobLocator.BlobLocator; readonly text: string }, size: number, algorithm: BinaryKey.HashAlgorithm) =>
    Effect.gen(function*() {
      const hasher = yield* Hashing.makeHasher(algorithm)
      yield* objects.get(data.locator, { start: 0, end: size }).pipe(
        Stream.mapError(fromError("complete", data.text)),
        Stream.runForEachChunk((chunks) => Effect.sync(() => {
          for (const c of chunks) hasher.update(c)
        }))
      )
      return hasher.key()
    })

  const complete: UploadStaging["Type"]["complete"] = (id, _state, size, plan, hint, onKey) =>
    Effect.gen(function*() {
      const data = yield* dataOf("complete", id)
      yield* Effect.acquireUseRelease(
        openData("complete", data, NFS.constants.O_RDWR | Confined.NOFOLLOW, false),
        (h) =>
          Effect.gen(function*() {
            const held = yield* Effect.tryPromise({ try: () => h.stat(), catch: fromError("complete", data.text) })
            if (held.size < size) {
              // Never padded: the ranges say these bytes landed, so the file was cut by something else.
              return yield* fail("Corrupted", "complete", `the staged file of upload ${id} holds ${held.size} bytes, fewer than the ${size} that landed`)
            }
            // An interrupted write may have left bytes past the end that no range counts.
            if (held.size > size) yield* Effect.tryPromise({ try: () => h.truncate(size), catch: fromError("complete", data.text) })
          }),
        closeHandle
      )
      if (Option.isSome(assembly)) {
        // The key before the rename (hashed on the way in, or now in one read that assemble then
        // skips), so that Uploads can record it and a complete retried after a crash can answer.
        const known = hint !== undefined && hint.key.size === size
          ? hint.key
          : yield* hashFile(data, size, plan.expectedKey?.algorithm ?? plan.algorithm ?? "sha256")
        if (onKey !== undefined) yield* onKey(known)
        return yield* assembly.value.assemble([{ locator: data.locator, key: known }], plan, known)
      }
      const result = yield* Stream.run(
        Stream.mapError(objects.get(data.locator), fromError("complete", data.text)),
        blobs.put(plan)
      )
      yield* abort(id, "")
      return result
    })

  return {
    name: NAME,
    segmentSize,
    // One file, adopted whole: only the whole content's key is used.
    segmentKeys: false,
    begin,
    writeSegment,
    // Known from the RangeTracker alone (see the module comment).
    landed: () => Effect.succeed(RangeSet.empty),
    complete,
    abort
  }
}

/** Options of the file staging. */
export interface Options {
  /** Root directory of the fs object store in the context. */
  readonly root: string
  /** Where uploads live (default: the BlobAssembly's staging prefix). */
  readonly prefix?: BlobLocator.LocatorPrefix | undefined
  readonly segmentSize?: number | undefined
  readonly fsync?: boolean | undefined
  /** Modes of the files and directories it creates (default "private", as the fs object store's). */
  readonly permissions?: Confined.Permissions | undefined
}

/**
 * The file staging over the fs object store (rooted at `options.root`) and
 * the BlobStore in the context, adopting files through its BlobAssembly.
 */
export const make = (
  options: Options
): Effect.Effect<UploadStaging["Type"], BlobError, MutableObjectStore | BlobStore | Scope.Scope> =>
  Effect.gen(function*() {
    const objects = yield* MutableObjectStore
    const blobs = yield* BlobStore
    const assembly = yield* Effect.serviceOption(BlobAssembly)
    const prefix = options.prefix ?? Option.getOrUndefined(Option.map(assembly, (a) => a.stagingPrefix))
    if (prefix === undefined) {
      return yield* fail("InvalidInput", "begin", "no staging location: give the file staging a prefix (the BlobStore offers none)")
    }
    // Held open for the scope, like the store's own root.
    const root = yield* Confined.openRoot("begin", options.root, Confined.modesOf(options.permissions)).pipe(
      Effect.mapError(fromError("begin", options.root))
    )
    return TracingPorts.uploadStaging("fs", build({ root, objects, blobs, assembly, prefix, segmentSize: options.segmentSize, fsync: options.fsync }))
  })

/** UploadStaging over the object store and BlobStore in the context (see `make`). */
export const layer = (options: Options): Layer.Layer<UploadStaging, BlobError, MutableObjectStore | BlobStore> =>
  Layer.scoped(UploadStaging, make(options))

/** Options from the environment: GRAVITON_FS_ROOT (required), GRAVITON_FS_UPLOAD_SEGMENT_SIZE, GRAVITON_FS_FSYNC, GRAVITON_FS_PERMISSIONS. */
export const config: Config.Config<Options> = Config.all({
  root: Config.string("GRAVITON_FS_ROOT").pipe(
    Config.withDescription("Directory under which the filesystem object store keeps its buckets")
  ),
  segmentSize: Config.integer("GRAVITON_FS_UPLOAD_SEGMENT_SIZE").pipe(
    Config.withDefault(DEFAULT_SEGMENT_SIZE),
    Config.withDescription("Segment size of resumable uploads in bytes")
  ),
  fsync: Config.boolean("GRAVITON_FS_FSYNC").pipe(
    Config.withDefault(false),
    Config.withDescription("fsync each segment before it counts as landed")
  ),
  permissions: Config.literal("private", "shared")("GRAVITON_FS_PERMISSIONS").pipe(
    Config.withDefault("private" as const),
    Config.withDescription("Modes of staged files: private (0700/0600, default) or shared (0755/0644)")
  )
})

/** Like `layer`, with options from `Config` (by default `config`). */
export const layerConfig = (
  options: Config.Config.Wrap<Options> = config
): Layer.Layer<UploadStaging, BlobError | ConfigError.ConfigError, MutableObjectStore | BlobStore> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(options), layer))
