/**
 * One writer process of processes.test.ts, run with tsx:
 *
 *   tsx putter.ts <worker 0..3> pg <url>
 *   tsx putter.ts <worker 0..3> embedded <home> [--wait]
 *
 * Opens the store once (chunked layout), prints `open`, waits for a line on
 * stdin when given `--wait`, then puts its 50 contents (see `contentsOf`)
 * and prints one JSON line per put. A failure to open prints `error <_tag>
 * <reason> <message>` and exits 3.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as readline from "node:readline"
import * as CasBlobStore from "../../src/blobs/CasBlobStore.js"
import * as BinaryKey from "../../src/core/BinaryKey.js"
import { BlobStore } from "../../src/ports/BlobStore.js"
import * as EmbeddedStore from "../../src/stores/EmbeddedStore.js"
import * as PgStore from "../../src/stores/PgStore.js"
import { chunked } from "../../src/testing/bytes.js"
import { contentsOf, layout } from "./contents.js"

const [worker, kind, where, wait] = process.argv.slice(2)
const w = Number(worker)

const layer: Layer.Layer<BlobStore, unknown> = kind === "pg"
  ? PgStore.layer({ url: Redacted.make(where!), layout: CasBlobStore.chunked(layout), migrate: true })
  : EmbeddedStore.layer({ home: where!, layout: CasBlobStore.chunked(layout) })

const goSignal = Effect.async<void>((resume) => {
  const rl = readline.createInterface({ input: process.stdin })
  rl.once("line", () => {
    rl.close()
    resume(Effect.void)
  })
})

const program = Effect.gen(function*() {
  const store = yield* BlobStore
  console.log("open")
  if (wait === "--wait") yield* goSignal
  for (const [i, bytes] of contentsOf(w).entries()) {
    const result = yield* Stream.run(chunked(bytes, { seed: w * 100 + i + 1, max: 64 * 1024 }), store.put())
    console.log(JSON.stringify({ key: BinaryKey.render(result.key), deduplicated: result.deduplicated }))
  }
})

const failed = (e: unknown) =>
  Effect.sync(() => {
    const error = e as { _tag?: string; reason?: string; message?: string }
    console.log(`error ${error._tag} ${error.reason} ${error.message}`)
    return 3
  })

Effect.runPromise(Effect.scoped(Effect.provide(program, layer)).pipe(Effect.as(0), Effect.catchAll(failed))).then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.log(`defect ${String(e)}`)
    process.exit(1)
  }
)
