/**
 * One writer process of pgS3.test.ts, run with tsx:
 *
 *   tsx pgS3Putter.ts <worker 0..3> <postgres url>
 *
 * with the S3 side from the environment (GRAVITON_S3_*, as a deployment
 * sets it). Opens one PostgreSQL + S3 store (chunked layout, small blocks),
 * prints `open`, then puts its 50 contents (see `contentsOf`) and prints one
 * JSON line per put. A failure prints `error <_tag> <reason> <message>` and
 * exits 3.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as S3Config from "../../src/backends/s3/S3Config.js"
import * as CasBlobStore from "../../src/blobs/CasBlobStore.js"
import * as BinaryKey from "../../src/core/BinaryKey.js"
import { BlobStore } from "../../src/ports/BlobStore.js"
import * as PgS3Store from "../../src/stores/PgS3Store.js"
import { chunked } from "../../src/testing/bytes.js"
import { contentsOf, layout } from "./contents.js"

const [worker, url] = process.argv.slice(2)
const w = Number(worker)

const store = Layer.unwrapEffect(Effect.map(S3Config.config, (s3) =>
  PgS3Store.layer({ pg: { url: Redacted.make(url!), migrate: true }, s3, layout: CasBlobStore.chunked(layout) })))

const program = Effect.gen(function*() {
  const blobs = yield* BlobStore
  console.log("open")
  for (const [i, bytes] of contentsOf(w).entries()) {
    const result = yield* Stream.run(chunked(bytes, { seed: w * 100 + i + 1, max: 64 * 1024 }), blobs.put())
    console.log(JSON.stringify({ key: BinaryKey.render(result.key), deduplicated: result.deduplicated }))
  }
})

const failed = (e: unknown) =>
  Effect.sync(() => {
    const error = e as { _tag?: string; reason?: string; message?: string }
    console.log(`error ${error._tag} ${error.reason} ${error.message}`)
    return 3
  })

Effect.runPromise(Effect.scoped(Effect.provide(program, store)).pipe(Effect.as(0), Effect.catchAll(failed))).then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.log(`defect ${String(e)}`)
    process.exit(1)
  }
)
