/**
 * Reading and changing the KV records of CasBlobStore (see BlobMeta):
 * every change is a compareAndSet against the raw bytes read, and the
 * finalizing steps run through `atomically`.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import type * as BinaryKey from "../core/BinaryKey.js"
import { BlobError } from "../core/Errors.js"
import * as BlobMeta from "./BlobMeta.js"
import * as Counters from "./counters.js"
import type { Cas } from "./context.js"
import { corrupt, fromPortError } from "./errors.js"

/** A record read from the KV store: the raw bytes (for compareAndSet) and their decoding. */
export interface Read<A> {
  readonly raw: Option.Option<Uint8Array>
  readonly record: Option.Option<A>
}

/** Reads a record with its raw bytes; an undecodable one fails with Corrupted. */
const readRecord = <A>(cas: Cas, method: string, kvKey: string, decode: (bytes: Uint8Array) => Either.Either<A, string>) =>
  cas.kv.get(kvKey).pipe(
    Effect.mapError(fromPortError(method)),
    Effect.flatMap((raw): Effect.Effect<Read<A>, BlobError> =>
      Option.match(raw, {
        onNone: () => Effect.succeed({ raw, record: Option.none() }),
        onSome: (bytes) =>
          Either.match(decode(bytes), {
            onLeft: (why) => Effect.fail(corrupt(method, kvKey, why)),
            onRight: (record) => Effect.succeed({ raw, record: Option.some(record) })
          })
      })
    )
  )

/** The record of blob `key`. */
export const readBlob = (cas: Cas, method: string, key: BinaryKey.BinaryKey) =>
  readRecord(cas, method, BlobMeta.blobKey(key), (bytes) => BlobMeta.decodeBlob(key, bytes))

/** The block record under `kvKey`. */
export const readBlock = (cas: Cas, method: string, kvKey: string) => readRecord(cas, method, kvKey, BlobMeta.decodeBlock)

/** Replaces `expected` by `next` under `kvKey` (None: absent), counters following; false when the value was not `expected`. */
export const compareAndSet = (
  cas: Cas,
  method: string,
  kvKey: string,
  expected: Option.Option<Uint8Array>,
  next: Option.Option<Uint8Array>
) => Effect.mapError(Counters.compareAndSet(cas.kv, kvKey, expected, next), fromPortError(method))

export const sameBytes = (a: Option.Option<Uint8Array>, b: Option.Option<Uint8Array>): boolean =>
  Option.isNone(a)
    ? Option.isNone(b)
    : Option.isSome(b) && Buffer.compare(Buffer.from(a.value.buffer, a.value.byteOffset, a.value.length), Buffer.from(b.value.buffer, b.value.byteOffset, b.value.length)) === 0

/**
 * Runs a finalizing step as one transaction when the backend offers a
 * UnitOfWork, and as it is otherwise. In a transaction, `rolledBack`
 * runs after each failed attempt (the step's writes are undone, so
 * in-memory state must follow), and a transient failure is retried
 * whole, since the ports retry nothing inside a caller's transaction.
 */
export const atomically = <A, R>(
  cas: Cas,
  method: string,
  step: Effect.Effect<A, BlobError, R>,
  rolledBack: Effect.Effect<void> = Effect.void
) =>
  Option.match(cas.unitOfWork, {
    onNone: () => step,
    onSome: (uow) =>
      uow.atomically(step).pipe(
        Effect.mapError((e) => (e instanceof BlobError ? e : fromPortError(method)(e))),
        Effect.onError(() => rolledBack),
        cas.instrument.retry(method)
      )
  })
