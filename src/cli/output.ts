/**
 * Everything the CLI prints: results on stdout (text for people, or one
 * JSON value per line with `--json`), notes and errors on stderr, and raw
 * content on stdout with back-pressure.
 */
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"

// C0 controls, DEL, C1 controls (0x9b is a one-byte CSI), and the bidirectional overrides that reorder what is shown.
const CONTROLS = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g

/**
 * `text` with every control character shown as an escape (`\x1b`, `\n`,
 * `\u202e`), so that a file name can neither move the cursor nor recolour
 * the terminal, nor split one line into two. Idempotent.
 */
export const escapeControls = (text: string): string =>
  text.replace(CONTROLS, (c) => {
    const code = c.charCodeAt(0)
    if (c === "\n") return "\\n"
    if (c === "\r") return "\\r"
    if (c === "\t") return "\\t"
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16)}`
  })

// Whether a status line (progress.ts) is on the terminal now. stdout and stderr usually share that
// terminal: whatever is printed next must start on a clean line, or it lands after the bar.
let statusShown = false

/** Draws `text` as the status line of stderr, over the previous one. */
export const showStatus = (text: string): void => {
  process.stderr.write(`\r\x1b[K${text}`)
  statusShown = true
}

/** Erases the status line, if one is shown (before any other output, and when a transfer ends). */
export const clearStatus = (): void => {
  if (!statusShown) return
  statusShown = false
  process.stderr.write("\r\x1b[K")
}

/** Prints one line on stdout (control characters escaped). */
export const line = (text: string): Effect.Effect<void> =>
  Effect.sync(() => {
    clearStatus()
    process.stdout.write(`${escapeControls(text)}\n`)
  })

/** Prints one JSON value on one line of stdout (JSON escapes control characters itself). */
export const json = (value: unknown): Effect.Effect<void> =>
  Effect.sync(() => {
    clearStatus()
    process.stdout.write(`${JSON.stringify(value)}\n`)
  })

/** Prints one line on stderr (status notes, never results; control characters escaped). */
export const note = (text: string): Effect.Effect<void> =>
  Effect.sync(() => {
    clearStatus()
    process.stderr.write(`${escapeControls(text)}\n`)
  })

/**
 * True when `stream` may be styled with ANSI escapes: a terminal, not
 * `TERM=dumb`, and no `NO_COLOR` (https://no-color.org: any non-empty value).
 */
export const colours = (stream: { readonly isTTY?: boolean } = process.stdout): boolean =>
  stream.isTTY === true && process.env.TERM !== "dumb" && (process.env.NO_COLOR ?? "") === ""

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

/** Throughput in binary units like `formatBytes`, e.g. `233.9 MiB/s` (sizes and rates read alike). */
export const formatRate = (bytes: number, seconds: number): string =>
  seconds <= 0 ? "-- MiB/s" : `${formatBytes(bytes / seconds).replace(/^(\d+) B$/, "$1.0 B")}/s`

const writeChunk = (chunk: Uint8Array): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    // Wait for 'drain' when the stream buffers, so a slow reader bounds our memory.
    if (process.stdout.write(chunk)) resume(Effect.void)
    else process.stdout.once("drain", () => resume(Effect.void))
  })

/** Writes a byte stream to stdout; returns the number of bytes written. */
export const toStdout = <E, R>(stream: Stream.Stream<Uint8Array, E, R>): Effect.Effect<number, E, R> =>
  Stream.runFoldEffect(stream, 0, (n, chunk) => Effect.as(writeChunk(chunk), n + chunk.length))

