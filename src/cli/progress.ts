/**
 * A progress line on stderr (bytes, percentage when the total is known,
 * rate). Shown only when stderr is a terminal and the transfer is large or
 * of unknown size, so that scripts and pipes never see it. Counting is one
 * addition per chunk; drawing happens on a timer, off the data path.
 *
 * When the transfer ends (its total is reached, or the tracked stream of an
 * unknown-size transfer ends) a last frame shows the final count (100%) and
 * the timer stops; the line is erased before anything else is printed
 * (Output.clearStatus) and when the command's scope closes.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { clearStatus, formatBytes, formatRate, showStatus } from "./output.js"

/** Transfers at or below this size finish too fast to need a progress line. */
export const THRESHOLD_BYTES = 8 * 1024 * 1024

const REDRAW_MS = 200
const BAR_WIDTH = 24

/** Counts the bytes of the streams it tracks. */
export interface Progress {
  /** Passes the stream through unchanged, counting its bytes. */
  readonly track: <E, R>(stream: Stream.Stream<Uint8Array, E, R>) => Stream.Stream<Uint8Array, E, R>
  /** Bytes seen so far. */
  readonly bytes: () => number
}

/** True when a transfer of `total` bytes (None = unknown) should show progress on this stderr. */
export const shouldShow = (total: Option.Option<number>, isTty: boolean = process.stderr.isTTY === true): boolean =>
  isTty && process.env.GRAVITON_NO_PROGRESS === undefined &&
  Option.match(total, { onNone: () => true, onSome: (n) => n > THRESHOLD_BYTES })

/** The progress line for `bytes` of `total` after `seconds`. */
export const render = (label: string, bytes: number, total: Option.Option<number>, seconds: number, resumed = 0): string => {
  // The rate counts only what this run sent; resumed bytes are shown apart.
  const rate = formatRate(bytes - resumed, seconds) + (resumed > 0 ? `  (${formatBytes(resumed)} resumed)` : "")
  return Option.match(total, {
    onNone: () => `${label} ${formatBytes(bytes)}  ${rate}`,
    onSome: (n) => {
      const fraction = n === 0 ? 1 : Math.min(1, bytes / n)
      const filled = Math.round(fraction * BAR_WIDTH)
      const bar = `[${"#".repeat(filled)}${"-".repeat(BAR_WIDTH - filled)}]`
      return `${label} ${bar} ${(fraction * 100).toFixed(0).padStart(3)}%  ${formatBytes(bytes)} / ${
        formatBytes(n)
      }  ${rate}`
    }
  })
}

/**
 * A progress tracker for one transfer, drawn until the scope closes (then
 * the line is erased). When progress is not shown it still counts bytes.
 */
export const make = (
  label: string,
  total: Option.Option<number>,
  /** Bytes already done before this run (a resumed upload): drawn, but not counted by `bytes()`. */
  initial = 0
): Effect.Effect<Progress, never, Scope.Scope> =>
  Effect.gen(function*() {
    let bytes = 0
    if (!shouldShow(total)) {
      return {
        track: (stream) =>
          Stream.mapChunks(stream, (chunk) => {
            for (const c of chunk) bytes += c.length
            return chunk
          }),
        bytes: () => bytes
      }
    }
    const started = performance.now()
    const draw = () => showStatus(render(label, initial + bytes, total, (performance.now() - started) / 1000, initial))
    let timer: ReturnType<typeof setInterval> | undefined
    // The last frame, with the final count: the line never stops short of 100%.
    const finish = () => {
      if (timer === undefined) return
      clearInterval(timer)
      timer = undefined
      draw()
    }
    const reached = (): boolean => Option.match(total, { onNone: () => false, onSome: (n) => initial + bytes >= n })
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        timer = setInterval(draw, REDRAW_MS)
      }),
      () =>
        Effect.sync(() => {
          if (timer !== undefined) clearInterval(timer)
          timer = undefined
          clearStatus()
        })
    )
    return {
      track: (stream) =>
        Stream.mapChunks(stream, (chunk) => {
          for (const c of chunk) bytes += c.length
          if (reached()) finish()
          return chunk
        }).pipe(
          // A stream of unknown size is done when it ends (a known size: when its total is reached).
          Stream.onEnd(Effect.sync(() => Option.isNone(total) && finish()))
        ),
      bytes: () => bytes
    }
  })
