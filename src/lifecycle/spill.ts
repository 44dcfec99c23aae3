/**
 * The references of manifests, spilled to the key-value store so that gc
 * and check can count them per block without a set of every key in memory:
 *
 *   lifecycle/<run>/<block key>/<blob key>   value: the block's locator text
 *
 * One entry per (blob, distinct block), written in batches; listed back in
 * key order they come grouped by block, in the order of the `blocks/`
 * records, so both are merged (merge.ts). `<run>` starts with the time the
 * run began, so that entries left by a killed run are recognised and
 * removed by a later one once older than the grace period.
 */
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { randomUUID } from "node:crypto"
import type { MetadataError } from "../core/Errors.js"
import * as KV from "../ports/KeyValueStore.js"
import type { Context } from "./context.js"
import { countRuns } from "./merge.js"

/** KV namespace of the lifecycle's scratch entries. */
export const NAMESPACE = "lifecycle/"

/** Entries written per commit (larger commits cost less per entry; a few hundred KiB at most). */
const BATCH = 4096

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** One run's spill. */
export interface Spill {
  readonly prefix: string
  /** Notes that `blob` references `block` (at `locator`); written by `flushIfFull` once BATCH are pending, or by `flush`. */
  readonly push: (block: string, blob: string, locator: string) => void
  readonly flushIfFull: Effect.Effect<void, MetadataError>
  readonly flush: Effect.Effect<void, MetadataError>
  /** Per block key, in key order: the number of blobs referencing it and the locator a manifest gives. */
  readonly counts: Stream.Stream<
    { readonly key: string; readonly value: { readonly count: number; readonly first: string } },
    MetadataError
  >
  /** Removes the run's entries. */
  readonly clear: Effect.Effect<void, MetadataError>
}

const PAD = 15

/** Removes every entry of `prefix` (in batches, as listed). */
const removeAll = (ctx: Context, prefix: string) =>
  ctx.kv.list(prefix).pipe(
    Stream.mapChunks(Chunk.map(([key]) => KV.del(key))),
    Stream.rechunk(BATCH),
    Stream.runForEachChunk((writes) => ctx.kv.commit([], Chunk.toReadonlyArray(writes)))
  )

/** A fresh spill for a run starting at `now`. */
export const make = (ctx: Context, now: number): Spill => {
  const prefix = `${NAMESPACE}${String(now).padStart(PAD, "0")}-${randomUUID().slice(0, 8)}/`
  let pending: Array<KV.KvWrite> = []
  const flush = Effect.suspend(() => {
    if (pending.length === 0) return Effect.void
    const writes = pending
    pending = []
    return Effect.asVoid(ctx.kv.commit([], writes))
  })
  return {
    prefix,
    push: (block, blob, locator) => {
      pending.push(KV.put(`${prefix}${block}/${blob}`, encoder.encode(locator)))
    },
    flushIfFull: Effect.suspend(() => (pending.length >= BATCH ? flush : Effect.void)),
    flush,
    counts: countRuns(ctx.kv.list(prefix).pipe(
      Stream.mapChunks(Chunk.map(([key, value]) => {
        const rest = key.slice(prefix.length)
        return { key: rest.slice(0, rest.indexOf("/")), value: decoder.decode(value) }
      }))
    )),
    clear: removeAll(ctx, prefix)
  }
}

/**
 * Removes the spills of earlier runs that began more than `grace` ms before
 * `now` (killed before they cleared their own); a run still going is younger.
 */
export const sweepOld = (ctx: Context, now: number, grace: number) =>
  ctx.kv.list(NAMESPACE).pipe(
    Stream.filter(([key]) => {
      const started = Number(key.slice(NAMESPACE.length, NAMESPACE.length + PAD))
      return Number.isFinite(started) && now - started > grace
    }),
    Stream.map(([key]) => KV.del(key)),
    Stream.grouped(BATCH),
    Stream.runForEach((writes) => ctx.kv.commit([], Array.from(writes)))
  )
