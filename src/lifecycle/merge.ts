/**
 * Sorted merges: gc and check compare listings (objects by path, records by
 * key) without holding either in memory. Both sides are streamed in the same
 * order (object stores and key-value stores list in UTF-8 byte order; the
 * paths and keys compared map to join keys whose order agrees with the
 * listing's, see context.Address), and each group holds the items of one
 * key from each side.
 *
 * The work is per chunk, not per item: the listings arrive in pages, the
 * merge runs synchronously over the pages it holds and emits every group it
 * can close as one chunk, and pulls only when a page runs out. An effect
 * per item (as a first version had) cost more than the listings themselves.
 */
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"

/** An item with the key it is joined on. */
export interface Keyed<A> {
  readonly key: string
  readonly value: A
}

/** The items of both sides that share one key (either side may be empty). */
export interface Group<L, R> {
  readonly key: string
  readonly left: ReadonlyArray<L>
  readonly right: ReadonlyArray<R>
}

/** One side of a merge: the page at hand and how to get the next. */
interface Side<A, E> {
  page: ReadonlyArray<Keyed<A>>
  at: number
  done: boolean
  readonly pull: Effect.Effect<Chunk.Chunk<Keyed<A>>, Option.Option<E>>
}

/** Fetches the next non-empty page of a side (or marks it done). */
const fill = <A, E>(side: Side<A, E>): Effect.Effect<void, E> =>
  Effect.matchEffect(side.pull, {
    onFailure: (end) =>
      Option.match(end, {
        onNone: () => Effect.sync(() => void (side.done = true)),
        onSome: (e) => Effect.fail(e)
      }),
    onSuccess: (chunk) =>
      Effect.suspend(() => {
        side.page = Chunk.toReadonlyArray(chunk)
        side.at = 0
        return side.page.length === 0 ? fill(side) : Effect.void
      })
  })

/** Groups emitted per chunk at most (bounds what a slow consumer holds). */
const CHUNK = 1024

/** The full outer join of two streams sorted by key: one Group per distinct key, in order. */
export const outerJoin = <L, R, E1, E2>(
  left: Stream.Stream<Keyed<L>, E1>,
  right: Stream.Stream<Keyed<R>, E2>
): Stream.Stream<Group<L, R>, E1 | E2> =>
  Stream.unwrapScoped(Effect.gen(function*() {
    const l: Side<L, E1> = { page: [], at: 0, done: false, pull: yield* Stream.toPull(left) }
    const r: Side<R, E2> = { page: [], at: 0, done: false, pull: yield* Stream.toPull(right) }
    // The group being collected; it may span pages.
    let key: string | undefined
    let gl: Array<L> = []
    let gr: Array<R> = []
    /** Collects groups into `out` until a page runs out ("left"/"right"), the end ("done") or `out` is full. */
    const step = (out: Array<Group<L, R>>): "left" | "right" | "done" | "full" => {
      for (;;) {
        if (out.length >= CHUNK) return "full"
        if (key === undefined) {
          if (l.at >= l.page.length && !l.done) return "left"
          if (r.at >= r.page.length && !r.done) return "right"
          const a = l.at < l.page.length ? l.page[l.at]!.key : undefined
          const b = r.at < r.page.length ? r.page[r.at]!.key : undefined
          if (a === undefined && b === undefined) return "done"
          key = a === undefined ? b! : b === undefined ? a : a <= b ? a : b
        }
        while (l.at < l.page.length && l.page[l.at]!.key === key) gl.push(l.page[l.at++]!.value)
        if (l.at >= l.page.length && !l.done) return "left"
        while (r.at < r.page.length && r.page[r.at]!.key === key) gr.push(r.page[r.at++]!.value)
        if (r.at >= r.page.length && !r.done) return "right"
        out.push({ key, left: gl, right: gr })
        key = undefined
        gl = []
        gr = []
      }
    }
    const pull: Effect.Effect<Chunk.Chunk<Group<L, R>>, Option.Option<E1 | E2>> = Effect.suspend(() => {
      const out: Array<Group<L, R>> = []
      const loop: Effect.Effect<Chunk.Chunk<Group<L, R>>, Option.Option<E1 | E2>> = Effect.suspend(() => {
        const s = step(out)
        if (s === "full") return Effect.succeed(Chunk.unsafeFromArray(out))
        if (s === "done") return out.length > 0 ? Effect.succeed(Chunk.unsafeFromArray(out)) : Effect.fail(Option.none())
        // Hand on what is ready before waiting for a page.
        if (out.length > 0) return Effect.succeed(Chunk.unsafeFromArray(out))
        const filled: Effect.Effect<void, E1 | E2> = s === "left" ? fill(l) : fill(r)
        return Effect.zipRight(Effect.mapError(filled, Option.some), loop)
      })
      return loop
    })
    return Stream.repeatEffectChunkOption(pull)
  }))

/**
 * Counts runs of equal keys of a sorted stream, keeping the first value of
 * each run: `a a b` becomes `(a, 2, first a) (b, 1, b)`.
 */
export const countRuns = <A, E>(stream: Stream.Stream<Keyed<A>, E>): Stream.Stream<Keyed<{ readonly count: number; readonly first: A }>, E> =>
  Stream.suspend(() => {
    let current: { key: string; count: number; first: A } | undefined
    const closed = Stream.mapChunks(stream, (chunk) => {
      const out: Array<Keyed<{ readonly count: number; readonly first: A }>> = []
      for (const item of chunk) {
        if (current !== undefined && current.key === item.key) {
          current.count++
          continue
        }
        if (current !== undefined) out.push({ key: current.key, value: { count: current.count, first: current.first } })
        current = { key: item.key, count: 1, first: item.value }
      }
      return Chunk.unsafeFromArray(out)
    })
    const last = Stream.suspend(() =>
      current === undefined ? Stream.empty : Stream.make({ key: current.key, value: { count: current.count, first: current.first } })
    )
    return Stream.concat(closed, last)
  })
