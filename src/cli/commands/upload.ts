/**
 * `graviton upload <file> [--resume ID] [--parallel N]`: a resumable upload
 * (uploads/Uploads). The id is printed on stderr before the first byte is
 * sent, so that a killed or interrupted upload can be resumed from another
 * process: `--resume ID` asks the store what has landed and sends only the
 * missing ranges, cut at the store's segment boundaries, N at a time.
 *
 * An upload records the file it was begun from (size, modification and
 * change times, device, inode: `fingerprint`), and `--resume` refuses, with
 * exit 2 and before sending a byte, another file or a changed one. It then
 * re-sends the last landed segment, which Uploads compares with that
 * segment's recorded digest without storing it: one segment read back
 * proves the bytes too, for uploads begun without a fingerprint and for a
 * change that kept the times (a clock set back).
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { BigIntStats } from "node:fs"
import * as fsp from "node:fs/promises"
import * as BinaryKey from "../../core/BinaryKey.js"
import * as BlobLocator from "../../core/BlobLocator.js"
import * as Lending from "../../core/Lending.js"
import * as RangeSet from "../../core/RangeSet.js"
import { Uploads } from "../../uploads/Uploads.js"
import { type CliFailure, ExitCode, fail } from "../exitCodes.js"
import * as Globals from "../globals.js"
import { fileFailure } from "../io.js"
import * as Output from "../output.js"
import * as Progress from "../progress.js"
import { withUploads } from "../session.js"

const file = Args.text({ name: "file" }).pipe(Args.withDescription("The file to upload (a regular file: spans are read at offsets)"))

const resume = Options.text("resume").pipe(
  Options.withPseudoName("ID"),
  Options.withDescription("Resume this upload: send only the ranges the store does not have yet"),
  Options.optional
)

const parallel = Options.integer("parallel").pipe(
  Options.withPseudoName("N"),
  Options.withDescription("Spans in flight at once (default 4)"),
  Options.withDefault(4)
)

const limitRate = Options.text("limit-rate").pipe(
  Options.withPseudoName("BYTES"),
  Options.withDescription("Send at most this many bytes per second across all spans (e.g. 500K, 16M)"),
  Options.optional
)

const verbose = Options.boolean("verbose").pipe(Options.withDescription("Print each span on stderr once it is stored"))

/** Parses `16M`, `500k`, `1G` or a plain number of bytes. */
export const parseBytes = (text: string): Option.Option<number> => {
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]?)i?b?$/i.exec(text.trim())
  if (m === null) return Option.none()
  const scale = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as "" | "k" | "m" | "g"]
  const n = Math.floor(Number(m[1]) * scale)
  return n > 0 && Number.isSafeInteger(n) ? Option.some(n) : Option.none()
}

/** Delays chunks so that all the streams it wraps together stay under `rate` bytes per second. */
const throttle = (rate: number) => {
  const started = performance.now()
  let sent = 0
  return <E, R>(stream: Stream.Stream<Uint8Array, E, R>): Stream.Stream<Uint8Array, E, R> =>
    Stream.mapEffect(stream, (chunk) => {
      sent += chunk.length
      const wait = started + (sent / rate) * 1000 - performance.now()
      return wait > 0 ? Effect.as(Effect.sleep(wait), chunk) : Effect.succeed(chunk)
    })
}

/** Bytes per read from the file. */
const READ_BYTES = 1024 * 1024

/**
 * Read buffers shared by the spans of one transfer: `parallel` spans in
 * flight, each holding up to a segment of chunks (kept for hashing until the
 * segment lands) plus a read ahead.
 */
export const readPool = (parallel: number, segmentSize: number): Lending.Pool =>
  new Lending.Pool(READ_BYTES, { keep: parallel * (Math.ceil(segmentSize / READ_BYTES) + 2) })

/**
 * Streams `[start, end)` of an open file. Chunks are lent (see Lending) from
 * `pool`: a staging that writes them to disk gives each back for the next read.
 */
export const readRange = (
  handle: fsp.FileHandle,
  name: string,
  start: number,
  end: number,
  pool: Lending.Pool = new Lending.Pool(READ_BYTES)
): Stream.Stream<Uint8Array, CliFailure> =>
  Stream.suspend(() => {
    let position = start
    return Stream.repeatEffectOption(
      Effect.suspend(() => {
        if (position >= end) return Effect.fail(Option.none())
        const buffer = pool.take()
        const length = Math.min(buffer.length, end - position)
        return Effect.tryPromise({
          try: () => handle.read(buffer, 0, length, position),
          catch: (e) => Option.some(fileFailure("read", name, e))
        }).pipe(
          Effect.flatMap(({ bytesRead }) => {
            if (bytesRead === 0) {
              pool.restore(buffer)
              return Effect.fail(Option.some(fail(ExitCode.Usage, `${name} became shorter while it was uploaded`)))
            }
            position += bytesRead
            return Effect.succeed(pool.lend(buffer, bytesRead))
          })
        )
      })
    )
  })

/** Cuts ranges at multiples of `segment`, so that each span is one segment of the store. */
export const spansToSend = (missing: RangeSet.RangeSet, segment: number): ReadonlyArray<RangeSet.Span> => {
  const out: Array<RangeSet.Span> = []
  const step = segment > 0 ? segment : Number.POSITIVE_INFINITY
  for (const gap of missing) {
    let at = gap.start
    while (at < gap.end) {
      const next = Math.min(gap.end, Number.isFinite(step) ? (Math.floor(at / step) + 1) * step : gap.end)
      out.push(new RangeSet.Span({ start: at, end: next }))
      at = next
    }
  }
  return out
}

/** What identifies a file's content without reading it: the times change with any write (ctime cannot be set back). */
export const fingerprint = (stat: BigIntStats): string =>
  `file:size=${stat.size};mtime=${stat.mtimeNs};ctime=${stat.ctimeNs};dev=${stat.dev};ino=${stat.ino}`

/** The way out of a refused resume. */
const startOver = (id: string, name: string) =>
  `start a new upload instead: graviton upload ${name} (and drop this one: graviton uploads abort ${id})`

/** The last whole segment that landed (cut at multiples of `segment`), if any. */
export const lastLanded = (landed: RangeSet.RangeSet, segment: number): RangeSet.Span | undefined => {
  const last = landed[landed.length - 1]
  if (last === undefined || segment <= 0) return undefined
  const start = Math.max(last.start, Math.floor((last.end - 1) / segment) * segment)
  return start % segment === 0 ? new RangeSet.Span({ start, end: last.end }) : undefined
}

const openFile = (name: string, resuming: boolean): Effect.Effect<{ handle: fsp.FileHandle; size: number; source: string }, CliFailure, Scope.Scope> =>
  Effect.gen(function*() {
    const pipe = resuming
      ? `cannot resume from ${name}: not a regular file (a pipe or stdin cannot be read again); start over with graviton put, or save it to a file and run graviton upload FILE`
      : `cannot upload ${name}: not a regular file (use put for pipes)`
    if (name === "-") return yield* fail(ExitCode.Usage, pipe)
    const handle = yield* Effect.acquireRelease(
      Effect.tryPromise({ try: () => fsp.open(name, "r"), catch: (e) => fileFailure("read", name, e) }),
      (h) => Effect.promise(() => h.close().catch(() => undefined))
    )
    const stat = yield* Effect.tryPromise({ try: () => handle.stat({ bigint: true }), catch: (e) => fileFailure("read", name, e) })
    if (!stat.isFile()) {
      return yield* fail(ExitCode.Usage, pipe)
    }
    return { handle, size: Number(stat.size), source: fingerprint(stat) }
  })

/** The `upload` command. */
export const upload = Command.make("upload", { ...Globals.options, file, resume, parallel, limitRate, verbose }, (args) =>
  Effect.gen(function*() {
    const globals = yield* Globals.resolve(args)
    if (args.parallel < 1 || args.parallel > 64) {
      return yield* fail(ExitCode.Usage, `--parallel must be between 1 and 64, got ${args.parallel}`)
    }
    const rate = Option.map(args.limitRate, parseBytes)
    if (Option.isSome(rate) && Option.isNone(rate.value)) {
      return yield* fail(ExitCode.Usage, `--limit-rate must be a number of bytes such as 500K or 16M`)
    }
    const limit = Option.match(Option.flatten(rate), {
      onNone: () => <E, R>(s: Stream.Stream<Uint8Array, E, R>) => s,
      onSome: throttle
    })
    yield* withUploads(
      globals,
      Effect.gen(function*() {
        const uploads = yield* Uploads
        const { handle, size, source } = yield* openFile(args.file, Option.isSome(args.resume))
        const id = yield* Option.match(args.resume, {
          onNone: () => uploads.begin({ size, source }),
          onSome: Effect.succeed
        })
        const refused = (detail: string) =>
          fail(ExitCode.Usage, `upload ${id} was begun from another file, or ${args.file} changed since (${detail}); ${startOver(id, args.file)}`)
        const status = yield* uploads.resume(id, { source }).pipe(
          Effect.catchTag("SourceChanged", () => refused("its size, times, device or inode differ"))
        )
        if (Option.isSome(status.size) && status.size.value !== size) {
          return yield* refused(`the upload is for ${status.size.value} bytes and the file has ${size}`)
        }
        const proof = lastLanded(status.landed, status.segmentSize)
        if (Option.isSome(args.resume) && proof !== undefined) {
          // Compared with the landed segment's digest, stored nothing: see the module comment.
          yield* uploads.write(id, proof.start, readRange(handle, args.file, proof.start, proof.end)).pipe(
            Effect.catchTag("SourceChanged", () => refused(`its bytes in [${proof.start}, ${proof.end}) differ from those that landed`))
          )
        }
        // Before any byte: whoever kills this process can still resume.
        yield* Output.note(`upload ${id}${Option.isSome(args.resume) ? ` resumed: ${Output.formatBytes(status.received)} already stored` : ""}`)
        const resumed = status.received
        const spans = spansToSend(status.missing, status.segmentSize)
        const progress = yield* Progress.make("upload", Option.some(size), resumed)
        const pool = readPool(args.parallel, status.segmentSize)
        const started = performance.now()
        yield* Effect.forEach(
          spans,
          (span) =>
            uploads.write(id, span.start, progress.track(limit(readRange(handle, args.file, span.start, span.end, pool)))).pipe(
              Effect.catchTag("SourceChanged", (e) => refused(e.detail)),
              // With what this process has read so far, so that a kill can be accounted for (bench/uploads.ts).
              Effect.tap(() => args.verbose ? Output.note(`stored ${span} (sent ${progress.bytes()} bytes)`) : Effect.void)
            ),
          { concurrency: args.parallel, discard: true }
        ).pipe(
          Effect.onInterrupt(() =>
            Output.note(`interrupted; resume with: graviton upload ${args.file} --resume ${id}`)
          )
        )
        const result = yield* uploads.complete(id)
        const seconds = (performance.now() - started) / 1000
        const sent = progress.bytes()
        if (globals.json) {
          return yield* Output.json({
            key: BinaryKey.render(result.key),
            size: result.size,
            deduplicated: result.deduplicated,
            locator: BlobLocator.render(result.locator),
            upload: id,
            resumedBytes: resumed,
            sentBytes: sent,
            seconds: Math.round(seconds * 1000) / 1000
          })
        }
        yield* Output.line(BinaryKey.render(result.key))
        yield* Output.note(
          `uploaded ${args.file} (${Output.formatBytes(size)}): sent ${Output.formatBytes(sent)}` +
            (resumed > 0 ? `, ${Output.formatBytes(resumed)} resumed` : "") +
            (result.deduplicated ? "; the content was already stored" : "")
        )
      })
    )
  })).pipe(Command.withDescription("Upload a file resumably, spans in parallel; --resume ID continues an interrupted upload"))
