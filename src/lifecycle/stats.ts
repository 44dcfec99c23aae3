/**
 * `stats`: space accounting from the records alone (no object is read or
 * listed except the staging area, which holds only what is in flight):
 * blob records give the blob count and logical bytes, block records the
 * block count and sizes; a monolithic blob's object is stored once (the
 * record is per content), a block once however many blobs share it.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Stream from "effect/Stream"
import * as BinaryKey from "../core/BinaryKey.js"
import type { StorageError } from "../core/Errors.js"
import * as BlobMeta from "../blobs/BlobMeta.js"
import { NAMESPACE as UPLOADS } from "../uploads/Uploads.js"
import { type Context, prefixOf } from "./context.js"
import type { StatsReport } from "./report.js"

/** An upload record's key (`uploads/<id>`; its segment digests live under `uploads/<id>/…`). */
const UPLOAD_ID = /^[0-9a-f]{32}$/

export const stats = (ctx: Context): Effect.Effect<StatsReport, StorageError> =>
  Effect.gen(function*() {
    const s = { blobs: 0, monolithic: 0, chunked: 0, logical: 0, monolithicBytes: 0, blocks: 0, blockBytes: 0 }
    yield* Stream.runForEach(ctx.kv.list(BlobMeta.BLOBS), ([kvKey, bytes]) =>
      Effect.sync(() => {
        const key = BinaryKey.parse(kvKey.slice(BlobMeta.BLOBS.length))
        if (Either.isLeft(key)) return
        const record = BlobMeta.decodeBlob(key.right, bytes)
        if (Either.isLeft(record) || record.right._tag !== "Live") return
        s.blobs++
        s.logical += key.right.size
        if (record.right.storage._tag === "Chunked") {
          s.chunked++
        } else {
          s.monolithic++
          s.monolithicBytes += key.right.size
        }
      }))
    yield* Stream.runForEach(ctx.kv.list(BlobMeta.BLOCKS), ([kvKey, bytes]) =>
      Effect.sync(() => {
        const key = BinaryKey.parse(kvKey.slice(BlobMeta.BLOCKS.length))
        if (Either.isLeft(key)) return
        const record = BlobMeta.decodeBlock(bytes)
        if (Either.isLeft(record) || record.right._tag !== "Live") return
        s.blocks++
        s.blockBytes += key.right.size
      }))
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
      blobs: s.blobs,
      monolithicBlobs: s.monolithic,
      chunkedBlobs: s.chunked,
      logicalBytes: s.logical,
      storedBytes: stored,
      dedupRatio: stored === 0 ? 0 : s.logical / stored,
      blocks: s.blocks,
      blockBytes: s.blockBytes,
      averageBlockBytes: s.blocks === 0 ? 0 : s.blockBytes / s.blocks,
      stagingObjects: staging.count,
      stagingBytes: staging.bytes,
      uploads
    } satisfies StatsReport
  })
