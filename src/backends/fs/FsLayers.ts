/**
 * Every port of the filesystem backend over one root directory:
 * MutableObjectStore and ImmutableObjectStore (one FsObjectStore), plus
 * Node's FileSystem they run on.
 *
 *   const program = myApp.pipe(Effect.provide(FsLayers.live({ root: "./blobs" })))
 *
 * The file UploadStaging (FsUploadStaging) is not here: it adopts uploads
 * through a BlobStore, which sits above the backend (see the stores).
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import type * as FileSystem from "@effect/platform/FileSystem"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { ObjectStoreError } from "../../core/Errors.js"
import type { ImmutableObjectStore, MutableObjectStore } from "../../ports/ObjectStore.js"
import * as FsObjectStore from "./FsObjectStore.js"

/** Options of the backend: those of its object store. */
export type Options = FsObjectStore.FsObjectStoreOptions

/** Every service `live` provides. */
export type Services = MutableObjectStore | ImmutableObjectStore | FileSystem.FileSystem

/** Options from the environment: GRAVITON_FS_ROOT (required), GRAVITON_FS_SCHEME, GRAVITON_FS_FSYNC, GRAVITON_FS_PERMISSIONS. */
export const config: Config.Config<Options> = FsObjectStore.config

/** Both object-store ports under `options.root`, and the FileSystem they use. */
export const live = (options: Options): Layer.Layer<Services, ObjectStoreError> =>
  Layer.merge(FsObjectStore.layer(options), NodeFileSystem.layer)

/** Like `live`, with options from `Config` (by default `config`). */
export const layerConfig = (
  options: Config.Config.Wrap<Options> = config
): Layer.Layer<Services, ObjectStoreError | ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(options), live))
