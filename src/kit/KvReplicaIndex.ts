/**
 * ReplicaIndex on top of any KeyValueStore (memory, LevelDB, PostgreSQL).
 *
 * The replica set of a blob lives under `replicas/<algo>:<hex>:<size>` as
 * its locator texts, sorted by UTF-8 bytes and unique, joined by "\n"
 * (locators never contain control characters, so the separator is safe).
 * An empty set is never stored: the key is deleted instead. `add` and
 * `remove` are compareAndSet loops, `update` a single put or delete.
 */
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as BinaryKey from "../core/BinaryKey.js"
import * as BlobLocator from "../core/BlobLocator.js"
import { MetadataError, toPortError } from "../core/Errors.js"
import * as KvKey from "../core/KvKey.js"
import { KeyValueStore } from "../ports/KeyValueStore.js"
import { ReplicaIndex } from "../ports/ReplicaIndex.js"
import { type Modification, modifyKey } from "./KvRangeTracker.js"
import * as TracingPorts from "./TracingPorts.js"

/** Backend name in errors raised here (errors of the underlying store keep their own). */
const BACKEND = "kv"

/** Namespace of replica records in the key-value store. */
export const NAMESPACE = "replicas/"

const SEPARATOR = "\n"
const encoder = new TextEncoder()
const decoder = new TextDecoder("utf-8", { fatal: true })

/** The KV key of a blob; re-validates the key's parts since a BinaryKey may be built unchecked. */
export const keyOf = (method: string, key: BinaryKey.BinaryKey): Either.Either<string, MetadataError> =>
  Either.mapLeft(
    Either.map(BinaryKey.make(key?.algorithm, key?.digest, key?.size), (k) => NAMESPACE + BinaryKey.render(k)),
    toPortError(MetadataError, BACKEND, method)
  )

/** Re-validates a locator (the constructor does not run the parser's checks) and gives its text. */
const locatorText = (method: string, locator: BlobLocator.BlobLocator): Either.Either<string, MetadataError> =>
  Either.mapLeft(
    Either.map(BlobLocator.make(locator?.scheme, locator?.bucket, locator?.path), BlobLocator.render),
    toPortError(MetadataError, BACKEND, method)
  )

/** Sorted (UTF-8 byte order, like every listing in Graviton) and without duplicates. */
const normalize = (texts: Iterable<string>): ReadonlyArray<string> => Array.from(new Set(texts)).sort(KvKey.compare)

/** Encodes a normalized, non-empty set of locator texts. */
export const encodeReplicas = (texts: ReadonlyArray<string>): Uint8Array => encoder.encode(texts.join(SEPARATOR))

/** Decodes `encodeReplicas`; undefined when the bytes are not a list of valid locators. */
export const decodeReplicas = (bytes: Uint8Array): ReadonlyArray<BlobLocator.BlobLocator> | undefined => {
  let text: string
  try {
    text = decoder.decode(bytes)
  } catch {
    return undefined
  }
  const out: Array<BlobLocator.BlobLocator> = []
  for (const part of text.split(SEPARATOR)) {
    const parsed = BlobLocator.parse(part)
    if (Either.isLeft(parsed)) return undefined
    out.push(parsed.right)
  }
  // Normalized again on read, in case another writer stored the list unsorted.
  return sortLocators(out)
}

const sortLocators = (locators: ReadonlyArray<BlobLocator.BlobLocator>): ReadonlyArray<BlobLocator.BlobLocator> => {
  const byText = new Map<string, BlobLocator.BlobLocator>()
  for (const l of locators) byText.set(BlobLocator.render(l), l)
  return Array.from(byText.keys()).sort(KvKey.compare).map((t) => byText.get(t)!)
}

const corrupted = (method: string, key: string) =>
  new MetadataError({
    reason: "Corrupted",
    backend: BACKEND,
    method,
    description: `the value under ${JSON.stringify(key)} is not a list of locators`
  })

/** A ReplicaIndex over the KeyValueStore in the context. */
export const make: Effect.Effect<ReplicaIndex["Type"], never, KeyValueStore> = Effect.gen(function*() {
  const kv = yield* KeyValueStore

  const decode = (method: string, key: string, value: Option.Option<Uint8Array>) =>
    Option.match(value, {
      onNone: () => Effect.succeed<ReadonlyArray<BlobLocator.BlobLocator>>([]),
      onSome: (bytes) => {
        const set = decodeReplicas(bytes)
        return set === undefined ? Effect.fail(corrupted(method, key)) : Effect.succeed(set)
      }
    })

  const replicas = (key: BinaryKey.BinaryKey) =>
    Effect.flatMap(keyOf("replicas", key), (k) => Effect.flatMap(kv.get(k), (value) => decode("replicas", k, value)))

  const update = (key: BinaryKey.BinaryKey, locators: ReadonlyArray<BlobLocator.BlobLocator>) =>
    Effect.gen(function*() {
      const k = yield* keyOf("update", key)
      if (!Array.isArray(locators)) {
        return yield* new MetadataError({
          reason: "InvalidInput",
          backend: BACKEND,
          method: "update",
          description: "locators must be an array"
        })
      }
      const texts: Array<string> = []
      for (const l of locators) texts.push(yield* locatorText("update", l))
      const set = normalize(texts)
      // One put (or delete) replaces the whole set: atomic on every store.
      yield* set.length === 0 ? kv.delete(k) : kv.put(k, encodeReplicas(set))
    })

  /** A CAS loop adding or removing one locator; skips the write when the set already has the wanted shape. */
  const modify = (method: string, key: BinaryKey.BinaryKey, locator: BlobLocator.BlobLocator, adding: boolean) =>
    Effect.gen(function*() {
      const k = yield* keyOf(method, key)
      const text = yield* locatorText(method, locator)
      const canonical = new BlobLocator.BlobLocator({ scheme: locator.scheme, bucket: locator.bucket, path: locator.path })
      return yield* modifyKey(kv, k, (value) =>
        Effect.map(decode(method, k, value), (current): Modification<ReadonlyArray<BlobLocator.BlobLocator>> => {
          const present = current.some((l) => BlobLocator.render(l) === text)
          if (present === adding) return { result: current, write: Option.none() }
          const next = adding
            ? sortLocators([...current, canonical])
            : current.filter((l) => BlobLocator.render(l) !== text)
          return {
            result: next,
            write: Option.some(next.length === 0 ? Option.none() : Option.some(encodeReplicas(next.map(BlobLocator.render))))
          }
        }))
    })

  // Texts as stored (normalized by every writer here); a value that is not text fails as `replicas` does.
  const list = Stream.mapChunksEffect(kv.list(NAMESPACE), (entries) =>
    Effect.suspend(() => {
      const out: Array<readonly [string, ReadonlyArray<string>]> = []
      for (const [k, v] of entries) {
        let text: string
        try {
          text = decoder.decode(v)
        } catch {
          return Effect.fail(corrupted("list", k))
        }
        out.push([k.slice(NAMESPACE.length), text.split(SEPARATOR)])
      }
      return Effect.succeed(Chunk.unsafeFromArray(out))
    }))

  return TracingPorts.replicaIndex(BACKEND, ReplicaIndex.of({
    replicas,
    update,
    add: (key, locator) => modify("add", key, locator, true),
    remove: (key, locator) => modify("remove", key, locator, false),
    list
  }))
})

/** ReplicaIndex backed by the KeyValueStore in the context. */
export const layer: Layer.Layer<ReplicaIndex, never, KeyValueStore> = Layer.effect(ReplicaIndex, make)
