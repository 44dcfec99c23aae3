/**
 * The default UploadStaging: each segment of an upload is one object in a
 * MutableObjectStore, named by the span it holds:
 *
 *   <prefix><id>/<start>-<end>     a landed segment (16-digit zero-padded offsets,
 *                                  so names sort in offset order)
 *   <prefix><id>/tmp-<uuid>        a segment being written
 *   <prefix><id>/<start>+<uuid>    a segment written in place (stores without a native move)
 *
 * A segment is written under a temporary name and renamed once its length is
 * known, so a re-sent shorter span never replaces a longer landed one, and an
 * interrupted write leaves nothing `landed` counts (the object store's own put
 * is atomic). The names alone prove what has landed: `landed` is a listing.
 * Where the store declares no native move (a move would copy every byte
 * again), a segment is written in place under a name of its own, its end
 * read from its size in the listing: re-sent spans then add objects instead
 * of replacing one, and all of them go when the upload completes or aborts.
 *
 * `complete` picks segments covering `[0, size)`. When they tile it exactly
 * (the usual case: spans cut at the same boundaries) and the BlobStore offers
 * a BlobAssembly over the same object store, the segments are adopted as the
 * blob's blocks: completing costs one read of the bytes, no second copy.
 * Otherwise (overlapping re-sent spans, or no assembly) the covering ranges
 * are streamed into `BlobStore.put`.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { randomUUID } from "node:crypto"
import type { BinaryKey } from "../core/BinaryKey.js"
import * as BlobLocator from "../core/BlobLocator.js"
import { BlobError, type ObjectStoreError, toPortError } from "../core/Errors.js"
import type { BlobWritePlan } from "../core/Models.js"
import * as RangeSet from "../core/RangeSet.js"
import type { BlobAssembly } from "../ports/BlobAssembly.js"
import type { BlobStore } from "../ports/BlobStore.js"
import { getRange, type MutableObjectStoreShape } from "../ports/ObjectStore.js"
import type { CompleteHint, UploadStaging } from "../ports/UploadStaging.js"

/** Backend name in errors raised here. */
const BACKEND = "uploads"

/** Default segment size: 8 MiB (a resumed write loses at most one segment per writer in flight). */
export const DEFAULT_SEGMENT_SIZE = 8 * 1024 * 1024

/** Digits of the zero-padded offsets in segment names (enough for 2^53). */
const DIGITS = 16

/** What the object staging works with. */
export interface Options {
  readonly objects: MutableObjectStoreShape
  readonly blobs: BlobStore["Type"]
  /** When present, complete adopts the segments instead of copying them (must use the same object store). */
  readonly assembly: Option.Option<BlobAssembly["Type"]>
  /** Where segments live; each upload gets `<prefix><id>/`. */
  readonly prefix: BlobLocator.LocatorPrefix
  readonly segmentSize?: number | undefined
}

/** One landed segment. */
export interface Segment {
  readonly span: RangeSet.Span
  readonly locator: BlobLocator.BlobLocator
}

/** A piece of the assembled content: `span` of the blob, read from `segment`. */
export interface Piece {
  readonly span: RangeSet.Span
  readonly segment: Segment
}

const pad = (n: number): string => String(n).padStart(DIGITS, "0")

/** The name of a landed segment inside its upload's directory. */
export const segmentName = (span: RangeSet.Span): string => `${pad(span.start)}-${pad(span.end)}`

const SEGMENT = /^(\d{16})-(\d{16})$/
const IN_PLACE = /^(\d{16})\+[0-9a-f-]{36}$/

/** The span of a segment written in place, from its name and its size. */
const inPlaceSpan = (name: string, size: number): Option.Option<RangeSet.Span> => {
  const m = IN_PLACE.exec(name)
  return m === null ? Option.none() : Option.getRight(RangeSet.span(Number(m[1]), Number(m[1]) + size))
}

/** The span a segment name stands for; None for temporaries and foreign objects. */
export const parseSegmentName = (name: string): Option.Option<RangeSet.Span> => {
  const m = SEGMENT.exec(name)
  if (m === null) return Option.none()
  return Option.getRight(RangeSet.span(Number(m[1]), Number(m[2])))
}

/**
 * Segments covering `[0, size)`: walking from 0, the segment reaching
 * furthest among those that start at or before the cursor. None when a byte
 * is not covered.
 */
export const cover = (segments: ReadonlyArray<Segment>, size: number): Option.Option<ReadonlyArray<Piece>> => {
  const sorted = [...segments].sort((a, b) => a.span.start - b.span.start || b.span.end - a.span.end)
  const pieces: Array<Piece> = []
  let cursor = 0
  let i = 0
  while (cursor < size) {
    let best: Segment | undefined
    for (; i < sorted.length && sorted[i]!.span.start <= cursor; i++) {
      if (best === undefined || sorted[i]!.span.end > best.span.end) best = sorted[i]!
    }
    if (best === undefined || best.span.end <= cursor) return Option.none()
    const end = Math.min(best.span.end, size)
    pieces.push({ span: new RangeSet.Span({ start: cursor, end }), segment: best })
    cursor = end
  }
  return Option.some(pieces)
}

/** True when every piece is a whole segment (they tile the content). */
export const tiles = (pieces: ReadonlyArray<Piece>): boolean =>
  pieces.every((p) => p.span.start === p.segment.span.start && p.span.end === p.segment.span.end)

const fail = (reason: BlobError["reason"], method: string, description: string) =>
  new BlobError({ reason, backend: BACKEND, method, description })

/** The one error mapping here: an object store failure keeps its reason. */
const fromObjectError = (method: string) => (e: ObjectStoreError): BlobError =>
  new BlobError({ reason: e.reason, backend: BACKEND, method, description: e.message, cause: e })

/** The UploadStaging over an object store (see the module comment). */
export const make = (options: Options): UploadStaging["Type"] => {
  const { objects, blobs, assembly, prefix } = options
  const segmentSize = options.segmentSize ?? DEFAULT_SEGMENT_SIZE

  const dirOf = (method: string, id: string) =>
    Either.mapLeft(
      BlobLocator.makePrefix(prefix.scheme, prefix.bucket, `${prefix.path}${id}/`),
      toPortError(BlobError, BACKEND, method)
    )
  const inDir = (method: string, dir: BlobLocator.LocatorPrefix, name: string) =>
    Either.mapLeft(BlobLocator.child(dir, name), toPortError(BlobError, BACKEND, method))

  /** Every object of the upload, temporaries included. */
  const listAll = (method: string, id: string) =>
    Stream.unwrap(Effect.map(dirOf(method, id), (dir) => Stream.mapError(objects.list(dir), fromObjectError(method))))

  const segments = (method: string, id: string) =>
    Effect.flatMap(dirOf(method, id), (dir) =>
      listAll(method, id).pipe(
        Stream.filterMap((stat) => {
          const name = stat.locator.path.slice(dir.path.length)
          return Option.map(
            Option.orElse(parseSegmentName(name), () => inPlaceSpan(name, stat.size)),
            (span): Segment => ({ span, locator: stat.locator })
          ).pipe(
            // A segment whose object is not as long as its name says is not trusted (never written that way).
            Option.filter((seg) => stat.size === seg.span.length)
          )
        }),
        Stream.runCollect,
        Effect.map((chunk) => Array.from(chunk))
      ))

  /** A segment put straight under its final name (see the module comment); None when it had no bytes. */
  const writeInPlace = (dir: BlobLocator.LocatorPrefix, start: number, bytes: Stream.Stream<Uint8Array, BlobError>) =>
    Effect.gen(function*() {
      const target = yield* inDir("write", dir, `${pad(start)}+${randomUUID()}`)
      const stat = yield* Stream.run(bytes.pipe(Stream.filter((c) => c.length > 0)), objects.put(target)).pipe(
        Effect.mapError((e) => (e instanceof BlobError ? e : fromObjectError("write")(e)))
      )
      if (stat.size > 0) return Option.some(new RangeSet.Span({ start, end: start + stat.size }))
      yield* Effect.ignore(objects.delete(target))
      return Option.none<RangeSet.Span>()
    })

  const writeSegment: UploadStaging["Type"]["writeSegment"] = (id, _state, start, bytes) =>
    Effect.gen(function*() {
      const dir = yield* dirOf("write", id)
      if (!objects.capabilities.nativeMove) return yield* writeInPlace(dir, start, bytes)
      const temp = yield* inDir("write", dir, `tmp-${randomUUID()}`)
      // A failed or interrupted put leaves no object; a failure after it removes the temporary.
      const stat = yield* Stream.run(
        bytes.pipe(Stream.filter((c) => c.length > 0)),
        objects.put(temp)
      ).pipe(Effect.mapError((e) => (e instanceof BlobError ? e : fromObjectError("write")(e))))
      if (stat.size === 0) {
        yield* Effect.ignore(objects.delete(temp))
        return Option.none()
      }
      const span = new RangeSet.Span({ start, end: start + stat.size })
      const target = yield* inDir("write", dir, segmentName(span))
      yield* objects.move(temp, target).pipe(
        Effect.mapError(fromObjectError("write")),
        Effect.tapError(() => Effect.ignore(objects.delete(temp)))
      )
      return Option.some(span)
    })

  const landed: UploadStaging["Type"]["landed"] = (id) =>
    Effect.map(segments("status", id), (segs) => RangeSet.normalize(segs.map((s) => s.span)))

  const removeAll = (method: string, id: string) =>
    listAll(method, id).pipe(
      Stream.mapEffect((stat) => Effect.mapError(objects.delete(stat.locator), fromObjectError(method)), { concurrency: 8 }),
      Stream.runDrain
    )

  /** The hinted key of each piece, when the hint describes exactly these segments. */
  const hintedKeys = (pieces: ReadonlyArray<Piece>, hint: CompleteHint | undefined) => {
    if (hint === undefined || hint.segments.length !== pieces.length) return undefined
    const keys: Array<BinaryKey> = []
    for (let i = 0; i < pieces.length; i++) {
      const h = hint.segments[i]!
      if (
        h.key === undefined || h.span.start !== pieces[i]!.span.start || h.span.end !== pieces[i]!.span.end ||
        h.key.size !== h.span.length
      ) {
        return undefined
      }
      keys.push(h.key)
    }
    return keys
  }

  const complete: UploadStaging["Type"]["complete"] = (id, _state, size, plan: BlobWritePlan, hint, onKey) =>
    Effect.gen(function*() {
      const segs = yield* segments("complete", id)
      const pieces = yield* Option.match(cover(segs, size), {
        onNone: () => Effect.fail(fail("Conflict", "complete", `upload ${id} has bytes missing in [0, ${size})`)),
        onSome: Effect.succeed
      })
      const result = yield* Option.isSome(assembly) && tiles(pieces)
        ? Effect.suspend(() => {
          const keys = hintedKeys(pieces, hint)
          // Known before anything is adopted only when hashed on the way in (see UploadStaging.complete).
          const recorded = keys === undefined || onKey === undefined ? Effect.void : onKey(hint!.key)
          return Effect.zipRight(
            recorded,
            assembly.value.assemble(
              pieces.map((p, i) => ({ locator: p.segment.locator, key: keys?.[i] })),
              plan,
              keys === undefined ? undefined : hint!.key
            )
          )
        })
        : Stream.run(
          Stream.flatMap(Stream.fromIterable(pieces), (p) =>
            getRange(objects, p.segment.locator, {
              start: p.span.start - p.segment.span.start,
              end: p.span.end - p.segment.span.start
            }).pipe(Stream.mapError(fromObjectError("complete")))),
          blobs.put(plan)
        )
      // Segments not adopted (overlaps, temporaries) are no longer needed.
      yield* removeAll("complete", id)
      return result
    })

  return {
    name: "objects",
    segmentSize,
    // Segments are adopted as blocks under their own keys.
    segmentKeys: true,
    begin: (id) => Effect.as(dirOf("begin", id), ""),
    writeSegment,
    landed,
    complete,
    abort: (id) => removeAll("abort", id)
  }
}
