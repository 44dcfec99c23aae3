import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import type * as Stream from "effect/Stream"
import type { MetadataError } from "../core/Errors.js"

/** One write of an atomic commit. */
export type KvWrite =
  | { readonly _tag: "Put"; readonly key: string; readonly value: Uint8Array }
  | { readonly _tag: "Delete"; readonly key: string }

/** A precondition of an atomic commit: `key` currently holds `expected` (None = absent). */
export interface KvCheck {
  readonly key: string
  readonly expected: Option.Option<Uint8Array>
}

/** Builds a put write. */
export const put = (key: string, value: Uint8Array): KvWrite => ({ _tag: "Put", key, value })
/** Builds a delete write. */
export const del = (key: string): KvWrite => ({ _tag: "Delete", key })

/**
 * Byte values under string keys (see core/KvKey for the key rules and the
 * ordering). Malformed keys fail with InvalidInput, never with a defect.
 */
export class KeyValueStore extends Context.Tag("graviton/KeyValueStore")<KeyValueStore, {
  /** The value under `key`, or None. */
  readonly get: (key: string) => Effect.Effect<Option.Option<Uint8Array>, MetadataError>
  /** Stores `value` under `key`, replacing any previous value. */
  readonly put: (key: string, value: Uint8Array) => Effect.Effect<void, MetadataError>
  /** Removes `key`; removing a missing key succeeds. */
  readonly delete: (key: string) => Effect.Effect<void, MetadataError>
  /** Streams every entry whose key starts with `prefix` ("" = all), in UTF-8 byte order of key, with bounded memory. */
  readonly list: (prefix: string) => Stream.Stream<readonly [string, Uint8Array], MetadataError>
  /**
   * Atomically: if `key` holds `expected` (None = absent), replace it with
   * `next` (None = delete) and return true; otherwise change nothing and return false.
   */
  readonly compareAndSet: (
    key: string,
    expected: Option.Option<Uint8Array>,
    next: Option.Option<Uint8Array>
  ) => Effect.Effect<boolean, MetadataError>
  /**
   * Atomically: if every check holds, apply every write and return true;
   * otherwise apply none and return false. With no checks it is a plain
   * all-or-nothing batch. Keys may span namespaces.
   */
  readonly commit: (
    checks: ReadonlyArray<KvCheck>,
    writes: ReadonlyArray<KvWrite>
  ) => Effect.Effect<boolean, MetadataError>
}>() {}
