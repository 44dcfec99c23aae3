/**
 * A response body (a Node Readable) as a Stream that emits about `gather`
 * bytes per step. Node hands over an HTTP body in pieces of 16-64 KiB; one
 * Effect stream step per piece cost a 256 MiB download a third of its
 * throughput, so pieces are collected (by reference, no copy) until
 * `gather` bytes are in hand or the body ends, and then emitted as one Chunk.
 * Memory stays at `gather` plus the socket's own buffer: nothing more is
 * taken from the body until the consumer pulls again.
 */
import * as Channel from "effect/Channel"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Stream from "effect/Stream"
import type { Readable } from "node:stream"

/** Bytes collected before a step is emitted. */
export const GATHER_BYTES = 1024 * 1024

/** Streams `readable`, failing with `onError` of its error; the readable is destroyed when the stream ends early. */
export const fromBody = <E>(
  readable: Readable,
  onError: (error: unknown) => E,
  gather: number = GATHER_BYTES
): Stream.Stream<Uint8Array, E> =>
  Stream.fromChannel(Channel.suspend(() => {
    // A body already read to its end (an empty one) emits nothing more.
    let done: Exit.Exit<void, E> | undefined = readable.readableEnded ? Exit.void : undefined
    let pending: Array<Uint8Array> = []
    let pendingBytes = 0
    /** Takes what the body has buffered, up to `gather` in hand (the rest waits in the body: backpressure). */
    const fill = () => {
      if (done !== undefined && Exit.isFailure(done)) return
      while (pendingBytes < gather) {
        const item: Uint8Array | null = readable.read()
        if (item === null) return
        pending.push(item)
        pendingBytes += item.length
      }
    }
    const latch = Effect.unsafeMakeLatch(false)
    // Pieces are taken as they arrive, and the stream's fiber is woken only once a step is
    // full (or the body ends): one wake-up per piece cost more than the piece itself.
    const onReadable = () => {
      fill()
      if (pendingBytes >= gather) latch.unsafeOpen()
    }
    const onError_ = (error: unknown) => {
      done = Exit.fail(onError(error))
      latch.unsafeOpen()
    }
    const onEnd = () => {
      done ??= Exit.void
      latch.unsafeOpen()
    }
    readable.on("readable", onReadable)
    readable.on("error", onError_)
    readable.on("end", onEnd)
    const emit = (): Channel.Channel<Chunk.Chunk<Uint8Array>, unknown, never, unknown, void, unknown> => {
      const out = pending
      pending = []
      pendingBytes = 0
      return Channel.write(Chunk.unsafeFromArray(out))
    }
    const loop = (): Channel.Channel<Chunk.Chunk<Uint8Array>, unknown, E, unknown, void, unknown> => {
      if (done !== undefined && Exit.isFailure(done)) return Channel.fromEffect(done)
      fill()
      if (pendingBytes >= gather) return Channel.flatMap(emit(), loop)
      if (done !== undefined) {
        const end = done
        return pending.length === 0 ? Channel.fromEffect(end) : Channel.zipRight(emit(), Channel.fromEffect(end))
      }
      latch.unsafeClose()
      return Channel.flatMap(latch.await, loop)
    }
    return Channel.ensuring(
      Channel.suspend(loop),
      Effect.sync(() => {
        readable.off("readable", onReadable)
        readable.off("error", onError_)
        readable.off("end", onEnd)
        if (!readable.destroyed) readable.destroy()
      })
    )
  }))
