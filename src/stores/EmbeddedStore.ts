/**
 * The embedded store: everything in one local directory, no server.
 *
 *   <home>/blobs/sha256/ab/<hex>   blob bytes (FsObjectStore rooted at <home>, bucket `blobs`);
 *   <home>/blobs/blocks/...        blocks of chunked blobs; <home>/blobs/staging/... puts and uploads in flight
 *   <home>/meta                    LevelDB: blob metadata, the dedup index, ranges, replicas
 *   <home>/.graviton/tmp           the fs store's temporary files (and .graviton/meta, only for objects
 *                                  written with metadata, which the content-addressed store never does)
 *
 * Homes made before this layout had the object store rooted at <home>/blobs,
 * hence `<home>/blobs/blobs/sha256/...` and `<home>/blobs/.graviton`. Opening
 * such a home moves it to the plain layout first (`migrate`: two renames,
 * resumed by the next open if interrupted). Recorded locators
 * (`file://blobs/sha256/...`) name the same objects in both layouts, so no
 * record changes.
 *
 * `layer` composes those with CasBlobStore, one MetricsRegistry and one
 * BackendEvents bus shared by every layer, and exposes the underlying ports
 * too (so tools can use the same stores), with the UploadStaging of the fs
 * store (FsUploadStaging: an upload is one file, renamed into place on
 * completion); `layerWithUploads` adds the resumable Uploads. LevelDB allows
 * one process at a time per directory: a second process opening the same
 * home fails with reason Unavailable.
 */
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as NFS from "node:fs"
import * as path from "node:path"
import type { HashAlgorithm } from "../core/BinaryKey.js"
import { BlobError, type MetadataError, type ObjectStoreError } from "../core/Errors.js"
import type { BlobAssembly } from "../ports/BlobAssembly.js"
import type { KeyValueStore } from "../ports/KeyValueStore.js"
import type { ImmutableObjectStore, MutableObjectStore } from "../ports/ObjectStore.js"
import type { RangeTracker } from "../ports/RangeTracker.js"
import type { ReplicaIndex } from "../ports/ReplicaIndex.js"
import type { UploadStaging } from "../ports/UploadStaging.js"
import * as CasBlobStore from "../blobs/CasBlobStore.js"
import * as Events from "../kit/Events.js"
import * as Metrics from "../kit/Metrics.js"
import * as Uploads from "../uploads/Uploads.js"
import * as FsObjectStore from "../backends/fs/FsObjectStore.js"
import * as FsUploadStaging from "../backends/fs/FsUploadStaging.js"
import type * as LevelDatabase from "../backends/level/LevelDatabase.js"
import * as LevelLayers from "../backends/level/LevelLayers.js"
import { layoutConfig, type StoreServices } from "./Store.js"

/** Options of the embedded store. */
export interface Options {
  /** Directory holding everything (created when missing). */
  readonly home: string
  /** Layout of newly stored blobs; default monolithic (one object per blob). */
  readonly layout?: CasBlobStore.Layout | undefined
  /** Hash algorithm of new keys; default sha256. */
  readonly algorithm?: HashAlgorithm | undefined
  /** fsync each object before it becomes visible (durability over speed); default false. */
  readonly fsync?: boolean | undefined
  /** Segment size of resumable uploads (FsUploadStaging); default 8 MiB. */
  readonly uploadSegmentSize?: number | undefined
  /** How a put heals missing or damaged stored bytes (CasBlobStore.Heal); default "size". */
  readonly heal?: CasBlobStore.Heal | undefined
  /** Largest resumable upload (Uploads.Options.maxUploadSize); default 5 TiB. */
  readonly maxUploadSize?: number | undefined
}

/** Every service `layer` provides. */
export type Services =
  | StoreServices
  | BlobAssembly
  | MutableObjectStore
  | ImmutableObjectStore
  | KeyValueStore
  | RangeTracker
  | ReplicaIndex
  | UploadStaging
  | LevelDatabase.LevelDatabase

/** What building the store may fail with. */
type Failure = ObjectStoreError | MetadataError | BlobError

/** Locator scheme of the embedded object store. */
export const SCHEME = "file"

/** Root of the fs object store: `home` itself, so that the bucket `blobs` is `<home>/blobs`. */
export const objectsRoot = (home: string): string => home

/** Where the blob bytes live under `home` (the bucket `blobs` of the object store). */
export const blobsDir = (home: string): string => path.join(home, "blobs")

/**
 * Creates `dir` and its missing parents one level at a time, each with a
 * plain mkdir: a bounded walk. (Node's recursive mkdir retries forever where
 * a parent exists but refuses creation with ENOENT, as /proc does: the
 * `replicate --to embedded:/proc/nope` hang of issue #16.)
 */
export const ensureDir = (dir: string): Effect.Effect<void, BlobError> =>
  Effect.try({
    try: () => {
      const missing: Array<string> = []
      for (let at = path.resolve(dir);;) {
        const stat = NFS.statSync(at, { throwIfNoEntry: false })
        if (stat !== undefined) {
          if (!stat.isDirectory()) throw Object.assign(new Error(`${at} is not a directory`), { code: "ENOTDIR" })
          break
        }
        missing.push(at)
        const parent = path.dirname(at)
        if (parent === at) break
        at = parent
      }
      for (const d of missing.reverse()) {
        try {
          NFS.mkdirSync(d)
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e
        }
      }
    },
    catch: (e) => {
      const code = (e as NodeJS.ErrnoException).code
      return new BlobError({
        reason: code === "EACCES" || code === "EPERM" || code === "EROFS"
          ? "PermissionDenied"
          : code === "ENOENT" || code === "ENOTDIR"
          ? "InvalidInput"
          : "Unavailable",
        backend: "embedded",
        method: "open",
        description: `cannot create the store directory ${dir}: ${e instanceof Error ? e.message : String(e)}`
      })
    }
  })

/** Where an interrupted migration keeps the old object store root. */
const MIGRATING = ".graviton-migrating"

const isDir = (p: string) => NFS.statSync(p, { throwIfNoEntry: false })?.isDirectory() === true

/**
 * Moves a home of the earlier layout (object store rooted at `<home>/blobs`)
 * to the plain one: `<home>/blobs` is renamed aside, then each bucket in it
 * (and the store's `.graviton`) moves up into `<home>`. Every step is a
 * rename, and an interrupted migration is taken up again by the next open.
 * A bucket whose name is taken in `<home>` (`meta`: the LevelDB directory)
 * stops it with an error naming it; nothing is lost.
 */
export const migrate = (home: string): Effect.Effect<void, BlobError> =>
  Effect.try({
    try: () => {
      const old = blobsDir(home)
      const aside = path.join(home, MIGRATING)
      const legacy = isDir(path.join(old, "blobs")) || isDir(path.join(old, FsObjectStore.RESERVED))
      if (!legacy && !isDir(aside)) return
      if (!isDir(aside)) NFS.renameSync(old, aside)
      for (const name of NFS.readdirSync(aside)) {
        const from = path.join(aside, name)
        const to = path.join(home, name)
        if (!NFS.existsSync(to)) {
          NFS.renameSync(from, to)
        } else if (name === FsObjectStore.RESERVED) {
          // Temporary files of the old root: nothing there outlives a process.
          NFS.rmSync(from, { recursive: true, force: true })
        } else {
          throw new Error(`cannot move the bucket ${JSON.stringify(name)} of ${aside} to ${to}: the name is taken`)
        }
      }
      NFS.rmdirSync(aside)
    },
    catch: (e) =>
      new BlobError({
        reason: "Unavailable",
        backend: "embedded",
        method: "open",
        description: `could not move the home ${home} to the plain layout: ${e instanceof Error ? e.message : String(e)}`
      })
  })

/** Where the LevelDB metadata lives under `home` (Graviton's namespaces, each its own sublevel). */
export const metaDir = (home: string): string => path.join(home, "meta")

/** BlobStore and every underlying port, in `options.home`. */
export const layer = (options: Options): Layer.Layer<Services, Failure> => {
  const shared = Layer.merge(Metrics.layer, Events.layer)
  // LevelDB is opened (and locked) first, so that a second process never migrates a home in use; then the
  // home is migrated (see `migrate`), then the object store opens.
  const ports = FsObjectStore.layer({ root: objectsRoot(options.home), scheme: SCHEME, fsync: options.fsync }).pipe(
    Layer.provide(Layer.effectDiscard(migrate(options.home))),
    Layer.provideMerge(LevelLayers.live({ path: metaDir(options.home) })),
    // Before anything opens: the home exists, created by a bounded walk (see ensureDir).
    Layer.provideMerge(Layer.effectDiscard(ensureDir(metaDir(options.home))))
  )
  const blobs = CasBlobStore.layer({
    scheme: SCHEME,
    ...(options.heal === undefined ? {} : { heal: options.heal }),
    ...(options.layout === undefined ? {} : { layout: options.layout }),
    ...(options.algorithm === undefined ? {} : { algorithm: options.algorithm })
  })
  const staging = FsUploadStaging.layer({ root: objectsRoot(options.home), segmentSize: options.uploadSegmentSize, fsync: options.fsync })
  return staging.pipe(
    Layer.provideMerge(blobs),
    Layer.provideMerge(ports),
    Layer.provideMerge(shared)
  )
}

/** `layer` with resumable uploads (segments in one file each, records and ranges in LevelDB). */
export const layerWithUploads = (options: Options): Layer.Layer<Services | Uploads.Uploads, Failure> =>
  Uploads.layer(options.maxUploadSize === undefined ? {} : { maxUploadSize: options.maxUploadSize }).pipe(
    Layer.provideMerge(layer(options))
  )

/** Settings read from the environment: GRAVITON_HOME (default `./.graviton`), GRAVITON_LAYOUT (monolithic | chunked). */
export const config: Config.Config<Options> = Config.all({
  home: Config.string("GRAVITON_HOME").pipe(
    Config.withDefault("./.graviton"),
    Config.withDescription("Directory of the embedded store (blobs/ and meta/ inside)")
  ),
  layout: layoutConfig,
  heal: Config.literal("size", "verify", "off")("GRAVITON_HEAL").pipe(
    Config.withDescription("How a put heals missing or damaged stored bytes: size (a head per object), verify (read back), off"),
    Config.option,
    Config.map(Option.getOrUndefined)
  )
})

/** Like `layer`, with options read from `Config` (by default `config`, i.e. GRAVITON_HOME and GRAVITON_LAYOUT). */
export const layerConfig = (
  options: Config.Config.Wrap<Options> = config
): Layer.Layer<Services, Failure | ConfigError.ConfigError> => Layer.unwrapEffect(Effect.map(Config.unwrap(options), layer))

/** Like `layerWithUploads`, with options read from `Config` (by default `config`). */
export const layerWithUploadsConfig = (
  options: Config.Config.Wrap<Options> = config
): Layer.Layer<Services | Uploads.Uploads, Failure | ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(options), layerWithUploads))
