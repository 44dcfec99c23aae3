/**
 * Sorted merges: gc and check compare listings (objects by path, records by
 * key) without holding either in memory. Both sides are streamed in the same
 * order (object stores and key-value stores list in UTF-8 byte order; the
 * paths and keys compared map to join keys whose order agrees with the
 * listing's, see context.Address), and each step holds one group of
 * equal keys from each side.
 */
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
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

interface Cursor<A, E> {
  readonly peek: Effect.Effect<Option.Option<A>, E>
  readonly next: Effect.Effect<Option.Option<A>, E>
}

/** Pulls a stream one item at a time (a chunk is buffered). */
const cursor = <A, E>(stream: Stream.Stream<A, E>): Effect.Effect<Cursor<A, E>, never, Scope.Scope> =>
  Effect.map(Stream.toPull(stream), (pull) => {
    let buffer: ReadonlyArray<A> = []
    let at = 0
    let done = false
    const fill: Effect.Effect<void, E> = Effect.suspend(() =>
      at < buffer.length || done
        ? Effect.void
        : Effect.matchEffect(pull, {
          onFailure: (end) =>
            Option.match(end, {
              onNone: () => Effect.sync(() => void (done = true)),
              onSome: (e) => Effect.fail(e)
            }),
          onSuccess: (chunk) =>
            Effect.suspend(() => {
              buffer = Chunk.toReadonlyArray(chunk)
              at = 0
              return fill
            })
        })
    )
    const peek = Effect.map(fill, () => (at < buffer.length ? Option.some(buffer[at]!) : Option.none<A>()))
    const next = Effect.map(peek, (a) => {
      if (Option.isSome(a)) at++
      return a
    })
    return { peek, next }
  })

const takeKey = <A, E>(c: Cursor<Keyed<A>, E>, key: string) =>
  Effect.gen(function*() {
    const items: Array<A> = []
    while (true) {
      const head = yield* c.peek
      if (Option.isNone(head) || head.value.key !== key) return items
      items.push(head.value.value)
      yield* c.next
    }
  })

/** The full outer join of two streams sorted by key: one Group per distinct key, in order. */
export const outerJoin = <L, R, E1, E2>(
  left: Stream.Stream<Keyed<L>, E1>,
  right: Stream.Stream<Keyed<R>, E2>
): Stream.Stream<Group<L, R>, E1 | E2> =>
  Stream.unwrapScoped(Effect.gen(function*() {
    const l = yield* cursor<Keyed<L>, E1 | E2>(left)
    const r = yield* cursor<Keyed<R>, E1 | E2>(right)
    const step = Effect.gen(function*() {
      const a = yield* l.peek
      const b = yield* r.peek
      if (Option.isNone(a) && Option.isNone(b)) return Option.none<Group<L, R>>()
      const key = Option.isNone(a)
        ? Option.getOrThrow(b).key
        : Option.isNone(b)
        ? a.value.key
        : a.value.key <= b.value.key
        ? a.value.key
        : b.value.key
      return Option.some<Group<L, R>>({ key, left: yield* takeKey(l, key), right: yield* takeKey(r, key) })
    }).pipe(
      Effect.mapError(Option.some),
      Effect.flatMap((group) => Option.isSome(group) ? Effect.succeed(group.value) : Effect.fail(Option.none()))
    )
    return Stream.repeatEffectOption(step)
  }))

/**
 * Counts runs of equal keys of a sorted stream, keeping the first value of
 * each run: `a a b` becomes `(a, 2, first a) (b, 1, b)`.
 */
export const countRuns = <A, E>(stream: Stream.Stream<Keyed<A>, E>): Stream.Stream<Keyed<{ readonly count: number; readonly first: A }>, E> =>
  Stream.suspend(() => {
    let current: { key: string; count: number; first: A } | undefined
    const closed = Stream.filterMap(stream, (item) => {
      if (current !== undefined && current.key === item.key) {
        current.count++
        return Option.none()
      }
      const done = current
      current = { key: item.key, count: 1, first: item.value }
      return done === undefined ? Option.none() : Option.some({ key: done.key, value: { count: done.count, first: done.first } })
    })
    const last = Stream.suspend(() =>
      current === undefined ? Stream.empty : Stream.make({ key: current.key, value: { count: current.count, first: current.first } })
    )
    return Stream.concat(closed, last)
  })
