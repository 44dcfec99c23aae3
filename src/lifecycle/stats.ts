/**
 * `stats`: space accounting from the counters kept with the records (see
 * blobs/counters.ts: a few keys, whatever the store's size), plus the
 * staging area and upload records, which hold only what is in flight. A
 * store written before the counters existed has none: then the records are
 * read once (as `scan` below) and the report says to run `check --repair`,
 * which stores the counters. A monolithic blob's object is stored once (the
 * record is per content), a block once however many blobs share it.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as BinaryKey from "../core/BinaryKey.js"
import type { StorageError } from "../core/Errors.js"
import * as BlobMeta from "../blobs/BlobMeta.js"
import * as Counters from "../blobs/counters.js"
import { NAMESPACE as UPLOADS } from "../uploads/Uploads.js"
import { type Context, prefixOf } from "./context.js"
import type { StatsReport } from "./report.js"

/** An upload record's key (`uploads/<id>`; its segment digests live under `uploads/<id>/…`). */
const UPLOAD_ID = /^[0-9a-f]{32}$/

/** The counts from every record (stores without counters). */
const scan = (ctx: Context): Effect.Effect<Counters.Counts, StorageError> =>
  Effect.gen(function*() {
    const s = Counters.zero()
    // Only the state and layout are needed: read with JSON.parse, not the full record decoder (check validates records).
    yield* Stream.runForEach(ctx.kv.list(BlobMeta.BLOBS), ([kvKey, bytes]) =>
      Effect.sync(() => {
        const key = BinaryKey.parse(kvKey.slice(BlobMeta.BLOBS.length))
        const record = Counters.fields(bytes)
        if (Either.isLeft(key) || record?.state !== "live") return
        s.blobs++
        s.logicalBytes += key.right.size
        if (record.layout === "chunked") s.chunkedBlobs++
        else s.monolithicBytes += key.right.size
      }))
    yield* Stream.runForEach(ctx.kv.list(BlobMeta.BLOCKS), ([kvKey, bytes]) =>
      Effect.sync(() => {
        // The size is the key's last field (`<algo>:<hex>:<size>`).
        const size = Number(kvKey.slice(kvKey.lastIndexOf(":") + 1))
        if (!Number.isSafeInteger(size) || Counters.fields(bytes)?.state !== "live") return
        s.blocks++
        s.blockBytes += size
      }))
    return s
  })

export const stats = (ctx: Context): Effect.Effect<StatsReport, StorageError> =>
  Effect.gen(function*() {
    const kept = yield* Counters.read(ctx.kv)
    const s = Option.isSome(kept) ? kept.value : yield* scan(ctx)
    const staging = yield* Stream.runFold(
      ctx.objects.list(prefixOf(ctx, ctx.staging)),
      { count: 0, bytes: 0 },
      (acc, o) => ({ count: acc.count + 1, bytes: acc.bytes + o.size })
    )
    const uploads = yield* Stream.runCount(
      Stream.filter(ctx.kv.list(UPLOADS), ([key]) => UPLOAD_ID.test(key.slice(UPLOADS.length)))
    )
    const stored = s.monolithicBytes + s.blockBytes
    return {
      counters: Option.isSome(kept) ? "kept" : "absent",
      blobs: s.blobs,
      monolithicBlobs: s.blobs - s.chunkedBlobs,
      chunkedBlobs: s.chunkedBlobs,
      logicalBytes: s.logicalBytes,
      storedBytes: stored,
      dedupRatio: stored === 0 ? 0 : s.logicalBytes / stored,
      blocks: s.blocks,
      blockBytes: s.blockBytes,
      averageBlockBytes: s.blocks === 0 ? 0 : s.blockBytes / s.blocks,
      stagingObjects: staging.count,
      stagingBytes: staging.bytes,
      uploads
    } satisfies StatsReport
  })
