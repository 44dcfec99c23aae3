/**
 * Everything the CLI prints: results on stdout (text for people, or one
 * JSON value per line with `--json`), notes and errors on stderr, and raw
 * content on stdout with back-pressure.
 */
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"

/** Prints one line on stdout. */
export const line = (text: string): Effect.Effect<void> => Effect.sync(() => void process.stdout.write(`${text}\n`))

/** Prints one JSON value on one line of stdout. */
export const json = (value: unknown): Effect.Effect<void> => line(JSON.stringify(value))

/** Prints one line on stderr (status notes, never results). */
export const note = (text: string): Effect.Effect<void> => Effect.sync(() => void process.stderr.write(`${text}\n`))

const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]

/** `1536` → `1.5 KiB`; exact byte count below 1 KiB. */
export const formatBytes = (bytes: number): string => {
  if (bytes < 1024) return `${bytes} B`
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return `${value.toFixed(1)} ${units[unit]}`
}

/** Throughput in decimal megabytes per second, e.g. `245.3 MB/s`. */
export const formatRate = (bytes: number, seconds: number): string =>
  seconds <= 0 ? "-- MB/s" : `${(bytes / 1e6 / seconds).toFixed(1)} MB/s`

const writeChunk = (chunk: Uint8Array): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    // Wait for 'drain' when the stream buffers, so a slow reader bounds our memory.
    if (process.stdout.write(chunk)) resume(Effect.void)
    else process.stdout.once("drain", () => resume(Effect.void))
  })

/** Writes a byte stream to stdout; returns the number of bytes written. */
export const toStdout = <E, R>(stream: Stream.Stream<Uint8Array, E, R>): Effect.Effect<number, E, R> =>
  Stream.runFoldEffect(stream, 0, (n, chunk) => Effect.as(writeChunk(chunk), n + chunk.length))

