/**
 * Where `get -o <file>` writes, and how, as `cp` and `curl -o` do:
 *
 * - a regular file (existing or new) is written to a temporary file next to
 *   it and renamed over it only once the whole verified stream is written;
 *   an existing file keeps its mode (and its owner, where permitted);
 * - a symbolic link is followed: its target is replaced (atomically, as
 *   above) and the link stays; a dangling link creates its target;
 * - a character or block device, a FIFO, a socket, or a path through
 *   /proc or /dev/fd (`/dev/stdout`) is written in place as bytes arrive: no
 *   temporary file, and a corruption found at the end is reported by the
 *   exit code only, as with `cat`.
 *
 * The temporary name is `.<name>.graviton-<pid>-<random>.part`, with `<name>`
 * shortened so that the whole fits in 255 bytes (NAME_MAX).
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Stream from "effect/Stream"
import { randomBytes } from "node:crypto"
import { constants as FS } from "node:fs"
import type { Stats } from "node:fs"
import * as fsp from "node:fs/promises"
import * as net from "node:net"
import * as path from "node:path"
import * as Lending from "../core/Lending.js"
import type { CliFailure } from "./exitCodes.js"
import { fileFailure } from "./fileErrors.js"

/** Longest file name (in bytes) on the common filesystems (ext4, xfs, btrfs, apfs, tmpfs). */
export const NAME_MAX = 255

/** Links followed before giving up, as the kernel does (ELOOP). */
const MAX_LINKS = 40

/** How a destination is written. */
export type Destination =
  /** A regular file, replaced atomically; `existing` when it is there already. */
  | { readonly _tag: "File"; readonly path: string; readonly existing: Stats | undefined }
  /** Written in place as bytes arrive: a device, a FIFO, or a /proc magic link (`/dev/stdout`). */
  | { readonly _tag: "InPlace"; readonly path: string }
  /** A Unix socket: connected to and written. */
  | { readonly _tag: "Socket"; readonly path: string }

/** The temporary name of a replacement for `base`: hidden, unique, at most NAME_MAX bytes. */
export const tempName = (base: string, unique: string): string => {
  const suffix = `.graviton-${unique}.part`
  const room = NAME_MAX - 1 - Buffer.byteLength(suffix)
  // Cut whole code points, so a multi-byte character is never split.
  const chars = Array.from(base)
  let bytes = Buffer.byteLength(base)
  while (bytes > room) bytes -= Buffer.byteLength(chars.pop()!)
  return `.${chars.join("")}${suffix}`
}

const lstatOrUndefined = (p: string): Promise<Stats | undefined> =>
  fsp.lstat(p).catch((e: NodeJS.ErrnoException) => {
    if (e.code === "ENOENT") return undefined
    throw e
  })

// Links under these name open files of a process: their target text is no path to rename over.
const isMagic = (p: string): boolean => p.startsWith("/proc/") || p.startsWith("/dev/fd/")

/** Follows `target` through its symbolic links to what `-o` must write. */
export const resolve = async (target: string): Promise<Destination> => {
  let at = path.resolve(target)
  for (let hops = 0;; hops++) {
    if (isMagic(at)) return { _tag: "InPlace", path: at }
    const st = await lstatOrUndefined(at)
    if (st === undefined) return { _tag: "File", path: at, existing: undefined }
    if (st.isSymbolicLink()) {
      if (hops >= MAX_LINKS) throw Object.assign(new Error("too many levels of symbolic links"), { code: "ELOOP" })
      at = path.resolve(path.dirname(at), await fsp.readlink(at))
      continue
    }
    if (st.isDirectory()) throw Object.assign(new Error("it is a directory"), { code: "EISDIR" })
    if (st.isFile()) return { _tag: "File", path: at, existing: st }
    if (st.isSocket()) return { _tag: "Socket", path: at }
    return { _tag: "InPlace", path: at }
  }
}

const writeAll = (handle: fsp.FileHandle, chunk: Uint8Array): Promise<void> =>
  handle.write(chunk, 0, chunk.length, null).then(({ bytesWritten }) =>
    bytesWritten < chunk.length ? writeAll(handle, chunk.subarray(bytesWritten)) : undefined
  )

/** Writes every chunk to `handle` (a lent chunk goes back once written, see Lending); the byte count. */
const drainInto = <E, R>(
  handle: fsp.FileHandle,
  stream: Stream.Stream<Uint8Array, E, R>,
  target: string
): Effect.Effect<number, E | CliFailure, R> =>
  Stream.runFoldEffect(
    // One chunk of slack lets the next chunk be read and verified while this one is written.
    Stream.buffer(stream, { capacity: 1 }),
    0,
    (n, chunk) =>
      Effect.tryPromise({
        try: () => writeAll(handle, chunk).then(() => Lending.giveBack(chunk)),
        catch: (e) => fileFailure("write", target, e)
      }).pipe(Effect.as(n + chunk.length))
  )

/** A regular file: a temporary file next to it, given its mode and owner, renamed over it at the end. */
const replaceFile = <E, R>(
  target: string,
  destination: Extract<Destination, { _tag: "File" }>,
  stream: Stream.Stream<Uint8Array, E, R>
): Effect.Effect<number, E | CliFailure, R> => {
  const temp = path.join(
    path.dirname(destination.path),
    tempName(path.basename(destination.path), `${process.pid}-${randomBytes(4).toString("hex")}`)
  )
  const existing = destination.existing
  return Effect.acquireUseRelease(
    Effect.tryPromise({ try: () => fsp.open(temp, "wx"), catch: (e) => fileFailure("write", target, e) }),
    (handle) =>
      Effect.gen(function*() {
        const written = yield* drainInto(handle, stream, target)
        if (existing !== undefined) {
          // Owner first: chown may clear the set-id bits that the mode then restores.
          yield* Effect.promise(() => handle.chown(existing.uid, existing.gid).catch(() => undefined))
          yield* Effect.tryPromise({
            try: () => handle.chmod(existing.mode & 0o7777),
            catch: (e) => fileFailure("write", target, e)
          })
        }
        yield* Effect.tryPromise({ try: () => handle.close(), catch: (e) => fileFailure("write", target, e) })
        yield* Effect.tryPromise({
          try: () => fsp.rename(temp, destination.path),
          catch: (e) => fileFailure("write", target, e)
        })
        return written
      }),
    (handle, exit) =>
      Effect.promise(async () => {
        await handle.close().catch(() => undefined)
        if (Exit.isFailure(exit)) await fsp.rm(temp, { force: true }).catch(() => undefined)
      })
  )
}

/** A device, a FIFO or an open file of a process: opened for writing and written as bytes arrive. */
const writeInPlace = <E, R>(
  target: string,
  destination: Destination,
  stream: Stream.Stream<Uint8Array, E, R>
): Effect.Effect<number, E | CliFailure, R> =>
  Effect.acquireUseRelease(
    // No O_CREAT: the node exists; O_TRUNC as `cp` does (devices and FIFOs ignore it).
    Effect.tryPromise({
      try: () => fsp.open(destination.path, FS.O_WRONLY | FS.O_TRUNC),
      catch: (e) => fileFailure("write", target, e)
    }),
    (handle) => drainInto(handle, stream, target),
    (handle) => Effect.promise(() => handle.close().catch(() => undefined))
  )

/** A Unix socket: connected to, written with back-pressure, then ended. */
const writeSocket = <E, R>(
  target: string,
  destination: Destination,
  stream: Stream.Stream<Uint8Array, E, R>
): Effect.Effect<number, E | CliFailure, R> =>
  Effect.acquireUseRelease(
    Effect.async<net.Socket, CliFailure>((resume) => {
      const socket = net.createConnection({ path: destination.path })
      const onError = (e: Error) => resume(Effect.fail(fileFailure("write", target, e)))
      socket.once("error", onError)
      socket.once("connect", () => {
        socket.off("error", onError)
        resume(Effect.succeed(socket))
      })
    }),
    (socket) =>
      Effect.gen(function*() {
        let failure: Error | undefined
        socket.on("error", (e) => (failure = e))
        const send = (chunk: Uint8Array) =>
          Effect.async<void, CliFailure>((resume) => {
            if (failure !== undefined) return resume(Effect.fail(fileFailure("write", target, failure)))
            socket.write(chunk, (e) => {
              if (e) resume(Effect.fail(fileFailure("write", target, e)))
              else {
                Lending.giveBack(chunk)
                resume(Effect.void)
              }
            })
          })
        const written = yield* Stream.runFoldEffect(stream, 0, (n, chunk) => Effect.as(send(chunk), n + chunk.length))
        yield* Effect.async<void>((resume) => {
          socket.end(() => resume(Effect.void))
        })
        return written
      }),
    (socket) => Effect.sync(() => socket.destroy())
  )

/**
 * Writes `stream` to `target` as described above; returns the number of
 * bytes written. On failure or interruption a replaced file is left as it
 * was and no temporary file remains.
 */
export const write = <E, R>(
  target: string,
  stream: Stream.Stream<Uint8Array, E, R>
): Effect.Effect<number, E | CliFailure, R> =>
  Effect.tryPromise({ try: () => resolve(target), catch: (e) => fileFailure("write", target, e) }).pipe(
    Effect.flatMap((destination) => {
      switch (destination._tag) {
        case "File":
          return replaceFile(target, destination, stream)
        case "InPlace":
          return writeInPlace(target, destination, stream)
        case "Socket":
          return writeSocket(target, destination, stream)
      }
    })
  )

