/**
 * Local files and standard input as Effect streams: the input of `put`.
 * Input is read in large chunks with one read ahead so that disk reads
 * overlap hashing. (The output of `get -o` is outputFile.ts.)
 */
import * as NodeStream from "@effect/platform-node/NodeStream"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { fstatSync } from "node:fs"
import * as fsp from "node:fs/promises"
import * as Lending from "../core/Lending.js"
import { ExitCode, fail, type CliFailure } from "./exitCodes.js"
import { fileFailure } from "./fileErrors.js"
import { escapeControls } from "./output.js"

export { fileFailure } from "./fileErrors.js"
/** `get -o`'s writer (outputFile.ts), under the name the benchmarks and the Lending test use. */
export { write as writeFileAtomically } from "./outputFile.js"

/** Bytes per read: large enough that per-chunk overhead vanishes next to hashing. */
export const READ_CHUNK_BYTES = 1024 * 1024

/** Chunks read ahead of the consumer (bounded memory: this many chunks). */
const READ_AHEAD = 2

/** A byte source and its size when known in advance. */
export interface Input {
  readonly stream: Stream.Stream<Uint8Array, CliFailure>
  readonly size: Option.Option<number>
  /** What to call it in messages. */
  readonly name: string
}

/** Opens a local file for streaming; the handle closes with the scope. */
export const fileInput = (file: string): Effect.Effect<Input, CliFailure, Scope.Scope> =>
  Effect.gen(function*() {
    const handle = yield* Effect.acquireRelease(
      Effect.tryPromise({ try: () => fsp.open(file, "r"), catch: (e) => fileFailure("read", file, e) }),
      (h) => Effect.promise(() => h.close())
    )
    const stat = yield* Effect.tryPromise({ try: () => handle.stat(), catch: (e) => fileFailure("read", file, e) })
    if (stat.isDirectory()) return yield* fail(ExitCode.Usage, `cannot read ${escapeControls(file)}: it is a directory`)
    // Chunks are lent (see Lending): a store that writes them to disk gives each back once written,
    // and the next read reuses it instead of allocating; a stage that keeps a chunk simply keeps it.
    const pool = new Lending.Pool(READ_CHUNK_BYTES)
    const next = Effect.suspend(() => {
      const buffer = pool.take()
      return Effect.tryPromise({
        try: () => handle.read(buffer, 0, READ_CHUNK_BYTES, null),
        catch: (e) => Option.some(fileFailure("read", file, e))
      }).pipe(
        Effect.flatMap(({ bytesRead }) => {
          if (bytesRead > 0) {
            return Effect.succeed(pool.lend(buffer, bytesRead))
          }
          pool.restore(buffer)
          return Effect.fail(Option.none())
        })
      )
    })
    const stream = Stream.repeatEffectOption(next).pipe(Stream.buffer({ capacity: READ_AHEAD }))
    // Pipes and devices report size 0: only a regular file's size is known.
    return { stream, size: stat.isFile() ? Option.some(stat.size) : Option.none(), name: file }
  })

/** Standard input as a stream (size known only when it is redirected from a regular file). */
export const stdinInput = (): Input => {
  let size = Option.none<number>()
  try {
    const stat = fstatSync(0)
    if (stat.isFile()) size = Option.some(stat.size)
  } catch {
    // No usable descriptor 0: the stream below reports the failure when read.
  }
  return {
    stream: NodeStream.fromReadable<CliFailure, Uint8Array>(
      () => process.stdin,
      (e) => fileFailure("read", "standard input", e)
    ),
    size,
    name: "standard input"
  }
}

/** `-` is standard input; anything else a file path. */
export const input = (arg: string): Effect.Effect<Input, CliFailure, Scope.Scope> =>
  arg === "-" ? Effect.succeed(stdinInput()) : fileInput(arg)
