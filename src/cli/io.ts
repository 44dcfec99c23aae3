/**
 * Local files and standard streams as Effect streams: the input of `put`
 * and the output of `get -o`. Input is read in large chunks with one read
 * ahead so that disk reads overlap hashing; output goes to a temporary file
 * next to the target, renamed over it only when the whole verified stream
 * has been written (a failed or interrupted `get` leaves no file behind).
 */
import * as NodeStream from "@effect/platform-node/NodeStream"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { randomBytes } from "node:crypto"
import { fstatSync } from "node:fs"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import * as Lending from "../core/Lending.js"
import { ExitCode, fail, type CliFailure } from "./exitCodes.js"

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

/** Turns a Node error on a local file into a sentence and an exit code. */
export const fileFailure = (what: string, file: string, error: unknown): CliFailure => {
  const code = (error as NodeJS.ErrnoException | undefined)?.code
  switch (code) {
    case "ENOENT":
      return fail(ExitCode.Usage, `cannot ${what} ${file}: no such file or directory`)
    case "EACCES":
    case "EPERM":
      return fail(ExitCode.Usage, `cannot ${what} ${file}: permission denied`)
    case "EISDIR":
      return fail(ExitCode.Usage, `cannot ${what} ${file}: it is a directory`)
    case "ENOTDIR":
      return fail(ExitCode.Usage, `cannot ${what} ${file}: a parent of it is not a directory`)
    case "ENOSPC":
      return fail(ExitCode.Storage, `cannot ${what} ${file}: no space left on the device`)
    default:
      return fail(
        ExitCode.Storage,
        `cannot ${what} ${file}: ${(error as Error | undefined)?.message ?? String(error)}`
      )
  }
}

/** Opens a local file for streaming; the handle closes with the scope. */
export const fileInput = (file: string): Effect.Effect<Input, CliFailure, Scope.Scope> =>
  Effect.gen(function*() {
    const handle = yield* Effect.acquireRelease(
      Effect.tryPromise({ try: () => fsp.open(file, "r"), catch: (e) => fileFailure("read", file, e) }),
      (h) => Effect.promise(() => h.close())
    )
    const stat = yield* Effect.tryPromise({ try: () => handle.stat(), catch: (e) => fileFailure("read", file, e) })
    if (stat.isDirectory()) return yield* fail(ExitCode.Usage, `cannot read ${file}: it is a directory`)
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

const writeAll = (handle: fsp.FileHandle, chunk: Uint8Array): Promise<void> =>
  handle.write(chunk, 0, chunk.length, null).then(({ bytesWritten }) =>
    bytesWritten < chunk.length ? writeAll(handle, chunk.subarray(bytesWritten)) : undefined
  )

/**
 * Writes `stream` to `target` atomically: into a temporary file in the same
 * directory, renamed over `target` only after the stream completed. On any
 * failure or interruption the temporary file is removed and `target` is left
 * as it was. Returns the number of bytes written.
 */
export const writeFileAtomically = <E, R>(
  target: string,
  stream: Stream.Stream<Uint8Array, E, R>
): Effect.Effect<number, E | CliFailure, R> =>
  Effect.gen(function*() {
    const absolute = path.resolve(target)
    const existing = yield* Effect.promise(() => fsp.stat(absolute).catch(() => undefined))
    if (existing?.isDirectory()) return yield* fail(ExitCode.Usage, `cannot write ${target}: it is a directory`)
    const temp = path.join(
      path.dirname(absolute),
      `.${path.basename(absolute)}.graviton-${process.pid}-${randomBytes(4).toString("hex")}.part`
    )
    return yield* Effect.acquireUseRelease(
      Effect.tryPromise({ try: () => fsp.open(temp, "wx"), catch: (e) => fileFailure("write", target, e) }),
      (handle) =>
        Effect.gen(function*() {
          const written = yield* Stream.runFoldEffect(
            // One chunk of slack lets the next chunk be read and verified while this one is written.
            Stream.buffer(stream, { capacity: 1 }),
            0,
            (n, chunk) =>
              Effect.tryPromise({
                // Written: a lent chunk goes back to the store's reader (see Lending).
                try: () => writeAll(handle, chunk).then(() => Lending.giveBack(chunk)),
                catch: (e) => fileFailure("write", target, e)
              }).pipe(Effect.as(n + chunk.length))
          )
          yield* Effect.tryPromise({ try: () => handle.close(), catch: (e) => fileFailure("write", target, e) })
          yield* Effect.tryPromise({ try: () => fsp.rename(temp, absolute), catch: (e) => fileFailure("write", target, e) })
          return written
        }),
      (handle, exit) =>
        Effect.promise(async () => {
          await handle.close().catch(() => undefined)
          if (Exit.isFailure(exit)) await fsp.rm(temp, { force: true }).catch(() => undefined)
        })
    )
  })
