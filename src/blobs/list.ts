/** BlobStore.stat and BlobStore.list: what the blob records say (only Live records are blobs). */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as BinaryKey from "../core/BinaryKey.js"
import type { BlobError } from "../core/Errors.js"
import type { BlobStat } from "../core/Models.js"
import { reportedLocator } from "./addresses.js"
import * as BlobMeta from "./BlobMeta.js"
import type { Cas } from "./context.js"
import { corrupt, fromPortError } from "./errors.js"
import { readBlob } from "./records.js"

const toStat = (key: BinaryKey.BinaryKey, live: BlobMeta.Live): BlobStat => ({
  key,
  size: key.size,
  locator: Option.some(reportedLocator(key, live)),
  createdAt: Option.some(new Date(live.createdAt))
})

const liveStat = (key: BinaryKey.BinaryKey, record: BlobMeta.BlobRecord): Option.Option<BlobStat> =>
  record._tag === "Live" ? Option.some(toStat(key, record)) : Option.none()

export const stat = (cas: Cas) => (key: BinaryKey.BinaryKey) =>
  Effect.map(readBlob(cas, "stat", key), ({ record }) => Option.flatMap(record, (r) => liveStat(key, r)))

/** Decodes one `blobs/` entry of the KV store; an unreadable one fails the listing with Corrupted. */
const decodeEntry = ([kvKey, bytes]: readonly [string, Uint8Array]) =>
  Either.match(BinaryKey.parse(kvKey.slice(BlobMeta.BLOBS.length)), {
    onLeft: (e) => Effect.fail(corrupt("list", kvKey, e.message)),
    onRight: (key) =>
      Either.match(BlobMeta.decodeBlob(key, bytes), {
        onLeft: (why) => Effect.fail(corrupt("list", kvKey, why)),
        onRight: (record) => Effect.succeed(liveStat(key, record))
      })
  })

export const list = (cas: Cas): Stream.Stream<BlobStat, BlobError> =>
  cas.kv.list(BlobMeta.BLOBS).pipe(
    Stream.mapError(fromPortError("list")),
    Stream.mapEffect(decodeEntry),
    Stream.filterMap((s) => s)
  )
