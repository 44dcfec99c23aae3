/**
 * What the lifecycle functions (gc, check, stats) work over: the ports of a
 * content-addressed store (CasBlobStore), the optional services that widen
 * what they reach (resumable Uploads, an object store's MultipartUploads, a
 * MetricsRegistry), and where the store keeps its objects:
 *
 *   <scheme>://<bucket>/<algo>/<hex[0..2]>/<hex>[.<uuid>]           monolithic blobs
 *   <scheme>://<bucket>/<blocks>/<algo>/<hex[0..2]>/<hex>[.<uuid>]  blocks of the chunked layout
 *   <scheme>://<bucket>/<staging>/<uuid>                            monolithic puts in flight
 *   <scheme>://<bucket>/<staging>/uploads/<id>/...                  resumable uploads' bytes
 *
 * (see blobs/addresses.ts). Anything else in the bucket is not Graviton's
 * and is never touched.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as BinaryKey from "../core/BinaryKey.js"
import * as BlobLocator from "../core/BlobLocator.js"
import { BlobError } from "../core/Errors.js"
import { BlobAssembly } from "../ports/BlobAssembly.js"
import { KeyValueStore } from "../ports/KeyValueStore.js"
import { MetricsRegistry } from "../ports/MetricsRegistry.js"
import { MultipartUploads } from "../ports/MultipartUploads.js"
import { MutableObjectStore } from "../ports/ObjectStore.js"
import { ReplicaIndex } from "../ports/ReplicaIndex.js"
import { defaults as casDefaults } from "../blobs/options.js"
import { Uploads } from "../uploads/Uploads.js"

/** Backend name in errors raised here. */
export const BACKEND = "lifecycle"

/** Where the store keeps its objects; the defaults are CasBlobStore's. */
export interface Options {
  readonly scheme?: string | undefined
  readonly bucket?: string | undefined
  readonly stagingPrefix?: string | undefined
  readonly blockPrefix?: string | undefined
}

/** The services and places every lifecycle function uses. */
export interface Context {
  readonly objects: MutableObjectStore["Type"]
  readonly kv: KeyValueStore["Type"]
  readonly replicas: ReplicaIndex["Type"]
  readonly uploads: Option.Option<Uploads["Type"]>
  readonly multipart: Option.Option<MultipartUploads["Type"]>
  readonly metrics: Option.Option<MetricsRegistry["Type"]>
  readonly scheme: string
  readonly bucket: string
  /** `<scheme>://<bucket>/`: every object of the store is under it. */
  readonly root: BlobLocator.LocatorPrefix
  /** Path of the staging area, with its trailing slash (`staging/`). */
  readonly staging: string
  /** Path of the resumable uploads' area inside the staging area (`staging/uploads/`). */
  readonly uploadsArea: string
  /** Path of the blocks area, with its trailing slash (`blocks/`). */
  readonly blocks: string
}

export const fail = (reason: BlobError["reason"], method: string, description: string) =>
  new BlobError({ reason, backend: BACKEND, method, description })

export const prefixOf = (ctx: Context, path: string): BlobLocator.LocatorPrefix =>
  // Cannot fail: built from a scheme and bucket already checked, and a path of fixed segments.
  Either.getOrThrow(BlobLocator.makePrefix(ctx.scheme, ctx.bucket, path))

/**
 * The context over the services in the Effect context. Scheme, bucket and
 * staging prefix come from `options`, else from the store's BlobAssembly
 * (whose staging prefix is `<scheme>://<bucket>/<staging>/uploads/`), else
 * CasBlobStore's defaults.
 */
export const make = (options: Options = {}) =>
  Effect.gen(function*() {
    const assembly = yield* Effect.serviceOption(BlobAssembly)
    const fromAssembly = Option.flatMap(assembly, (a) => {
      const p = a.stagingPrefix
      const m = /^(.+)\/uploads\/$/.exec(p.path)
      return m === null ? Option.none() : Option.some({ scheme: p.scheme, bucket: p.bucket, stagingPrefix: m[1]! })
    })
    const scheme = options.scheme ?? Option.match(fromAssembly, { onNone: () => casDefaults.scheme, onSome: (a) => a.scheme })
    const bucket = options.bucket ?? Option.match(fromAssembly, { onNone: () => casDefaults.bucket, onSome: (a) => a.bucket })
    const stagingPrefix = options.stagingPrefix ??
      Option.match(fromAssembly, { onNone: () => casDefaults.stagingPrefix, onSome: (a) => a.stagingPrefix })
    const blockPrefix = options.blockPrefix ?? casDefaults.blockPrefix
    const root = yield* Either.mapLeft(
      BlobLocator.makePrefix(scheme, bucket, ""),
      (e) => fail("InvalidInput", "open", e.message)
    )
    return {
      objects: yield* MutableObjectStore,
      kv: yield* KeyValueStore,
      replicas: yield* ReplicaIndex,
      uploads: yield* Effect.serviceOption(Uploads),
      multipart: yield* Effect.serviceOption(MultipartUploads),
      metrics: yield* Effect.serviceOption(MetricsRegistry),
      scheme,
      bucket,
      root,
      staging: `${stagingPrefix}/`,
      uploadsArea: `${stagingPrefix}/uploads/`,
      blocks: `${blockPrefix}/`
    } satisfies Context
  })

/** What a content path (`<algo>/<xx>/<hex>[.<uuid>]`) says: the algorithm and digest it names. */
export interface Address {
  readonly algorithm: BinaryKey.HashAlgorithm
  readonly digest: string
  /** `<algo>/<hex>`: the order of content paths and of KV keys agree on it (see merge.ts). */
  readonly joinKey: string
}

const CONTENT = /^(sha256|blake3)\/([0-9a-f]{2})\/([0-9a-f]{64})(\.[0-9a-f-]{36})?$/

/** The address a path relative to an area names; None for anything else. */
export const parseContent = (relative: string): Option.Option<Address> => {
  const m = CONTENT.exec(relative)
  if (m === null || !m[3]!.startsWith(m[2]!)) return Option.none()
  const algorithm = m[1] as BinaryKey.HashAlgorithm
  return Option.some({ algorithm, digest: m[3]!, joinKey: `${algorithm}/${m[3]}` })
}

/** The join key of a content key (see Address.joinKey). */
export const joinKeyOf = (key: BinaryKey.BinaryKey): string => `${key.algorithm}/${key.digest}`

/** How old an object is at `now`, in milliseconds; None when its store keeps no modification time. */
export const ageOf = (lastModified: Option.Option<Date>, now: number): Option.Option<number> =>
  Option.map(lastModified, (d) => now - d.getTime())
