/**
 * Assembly (the BlobAssembly the layer also provides, used by resumable
 * uploads). Objects already staged under `<staging>/uploads/` are read once,
 * hashed whole and one by one, and once the key is verified each becomes a
 * block of a chunked blob: moved to its block address (or removed when the
 * block is already stored), with the same reference counting as a chunked
 * put. No byte is written twice. Works whatever the configured layout; in
 * the monolithic one, a single part becomes the blob's own object. The
 * moves run uninterruptibly; a failure during them may leave some parts
 * consumed (the upload must then be sent again: space and time are lost,
 * never stored data).
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as BinaryKey from "../core/BinaryKey.js"
import type * as BlobLocator from "../core/BlobLocator.js"
import * as Hashing from "../core/Hashing.js"
import type { BlobWritePlan } from "../core/Models.js"
import type { AssemblyPart } from "../ports/BlobAssembly.js"
import { checkExpected, checkPlan, type CheckedPlan, reportPut } from "../kit/BlobStoreProtocol.js"
import { reportedLocator, sameLocator } from "./addresses.js"
import * as BlobMeta from "./BlobMeta.js"
import { adoptBlock, CONCURRENCY, type Held, releaseUnowned } from "./blocks.js"
import type { Cas } from "./context.js"
import { BACKEND, fail, fromPortError } from "./errors.js"
import { discard } from "./objects.js"
import type { Settings } from "./options.js"
import { publishChunked, publishMonolithic } from "./publish.js"
import { readBlob } from "./records.js"
import { PARALLEL_BLOCKS } from "./putChunked.js"

/** A non-empty part, as a block of the blob. */
interface Part {
  readonly key: BinaryKey.BinaryKey
  readonly offset: number
  readonly source: BlobLocator.BlobLocator
}

/** The parts hashed: the blob's key, its blocks, and the empty parts (removed, not adopted). */
interface Hashed {
  readonly key: BinaryKey.BinaryKey
  readonly blocks: ReadonlyArray<Part>
  readonly empty: ReadonlyArray<BlobLocator.BlobLocator>
}

const tooLong = (limit: number) =>
  fail("InvalidInput", "assemble", `the parts are longer than the plan allows (${limit} bytes); nothing was stored`)

/** Keys trusted from the caller (see BlobAssembly), when they are complete and consistent. */
const trustedKeys = (parts: ReadonlyArray<AssemblyPart>, known: BinaryKey.BinaryKey | undefined, algorithm: BinaryKey.HashAlgorithm) => {
  if (known === undefined || known.algorithm !== algorithm) return undefined
  let total = 0
  for (const p of parts) {
    if (p.key === undefined || p.key.algorithm !== algorithm) return undefined
    total += p.key.size
  }
  return total === known.size ? known : undefined
}

/** Parts hashed by the caller as their bytes were written: nothing to read again. */
const fromTrusted = (parts: ReadonlyArray<AssemblyPart>, key: BinaryKey.BinaryKey): Hashed => {
  const blocks: Array<Part> = []
  const empty: Array<BlobLocator.BlobLocator> = []
  let offset = 0
  for (const part of parts) {
    if (part.key!.size === 0) empty.push(part.locator)
    else blocks.push({ key: part.key!, offset, source: part.locator })
    offset += part.key!.size
  }
  return { key, blocks, empty }
}

/** Reads each part once, hashing it on its own and into the whole; stops as soon as the whole exceeds `limit`. */
const readParts = (cas: Cas, parts: ReadonlyArray<AssemblyPart>, algorithm: BinaryKey.HashAlgorithm, limit: number) =>
  Effect.gen(function*() {
    const blocks: Array<Part> = []
    const empty: Array<BlobLocator.BlobLocator> = []
    const whole = yield* Hashing.makeHasher(algorithm)
    for (const { locator: part } of parts) {
      const hasher = yield* Hashing.makeHasher(algorithm)
      yield* cas.objects.get(part).pipe(
        Stream.mapError(fromPortError("assemble")),
        Stream.runForEachChunk((chunks) =>
          Effect.suspend(() => {
            for (const c of chunks) {
              hasher.update(c)
              whole.update(c)
            }
            return whole.size > limit ? Effect.fail(tooLong(limit)) : Effect.void
          })
        )
      )
      if (hasher.size === 0) empty.push(part)
      else blocks.push({ key: hasher.key(), offset: whole.size - hasher.size, source: part })
    }
    return { key: whole.key(), blocks, empty } satisfies Hashed
  })

const hashParts = (cas: Cas, parts: ReadonlyArray<AssemblyPart>, plan: CheckedPlan, known: BinaryKey.BinaryKey | undefined) => {
  const limit = Math.min(plan.maxSize, plan.expectedKey?.size ?? Number.POSITIVE_INFINITY)
  const trusted = trustedKeys(parts, known, plan.algorithm)
  if (trusted === undefined) return readParts(cas, parts, plan.algorithm, limit)
  return trusted.size > limit ? Effect.fail(tooLong(limit)) : Effect.succeed(fromTrusted(parts, trusted))
}

/** Adopts each distinct block once (a block repeated inside the blob is adopted once, its other parts removed): the manifest. */
const adoptBlocks = (cas: Cas, s: Settings, blocks: ReadonlyArray<Part>, held: Held) =>
  Effect.gen(function*() {
    const first = new Map<string, BlobLocator.BlobLocator>()
    const extra: Array<BlobLocator.BlobLocator> = []
    for (const b of blocks) {
      const k = BinaryKey.render(b.key)
      if (first.has(k)) extra.push(b.source)
      else first.set(k, b.source)
    }
    const placed = new Map<string, BlobLocator.BlobLocator>()
    yield* Effect.forEach(blocks, (b) => {
      const k = BinaryKey.render(b.key)
      return first.get(k) === b.source
        ? Effect.map(adoptBlock(cas, s, b.key, b.source, held), (locator) => void placed.set(k, locator))
        : Effect.void
    }, { concurrency: PARALLEL_BLOCKS, discard: true })
    yield* Effect.forEach(extra, (p) => discard(cas, p, "a repeated block"), { discard: true })
    return blocks.map((b): BlobMeta.BlockRef => ({ key: b.key, offset: b.offset, locator: placed.get(BinaryKey.render(b.key))! }))
  })

/** Turns the hashed parts into the blob: found stored, one object (monolithic layout), or adopted blocks. */
const adopt = (
  cas: Cas,
  s: Settings,
  hashed: Hashed,
  contentType: string | undefined,
  startedAt: bigint,
  held: Held,
  onOwned: () => void
) =>
  Effect.gen(function*() {
    const { blocks, key } = hashed
    yield* Effect.forEach(hashed.empty, (p) => discard(cas, p, "an empty part"), { discard: true })
    const existing = Option.getOrUndefined((yield* readBlob(cas, "assemble", key)).record)
    if (existing?._tag === "Live") {
      yield* Effect.forEach(blocks, (b) => discard(cas, b.source, "the blob is already stored"), { concurrency: CONCURRENCY, discard: true })
      const found = { locator: reportedLocator(key, existing), deduplicated: true, bytesWritten: 0, blocks: 0 }
      return yield* reportPut(cas.instrument, key, found, startedAt)
    }
    if (blocks.length === 1 && s.layout._tag === "Monolithic") {
      // The whole content in one object: it becomes the blob itself, as a monolithic put's staging does.
      const source = blocks[0]!.source
      const place = { source }
      const stored = yield* publishMonolithic(cas, s, key, place, contentType)
      if (sameLocator(place.source, source)) yield* discard(cas, source, "the blob is already stored")
      return yield* reportPut(cas.instrument, key, { ...stored, bytesWritten: 0 }, startedAt)
    }
    const manifest = yield* adoptBlocks(cas, s, blocks, held)
    const stored = yield* publishChunked(cas, s, key, manifest, BlobMeta.PARTS, contentType, onOwned)
    return yield* reportPut(cas.instrument, key, { ...stored, bytesWritten: 0, blocks: manifest.length }, startedAt)
  })

/** The blob made of staged objects: see the module comment and BlobAssembly. */
export const assemble = (cas: Cas) => (parts: ReadonlyArray<AssemblyPart>, plan?: BlobWritePlan, known?: BinaryKey.BinaryKey) =>
  Effect.gen(function*() {
    const s = yield* cas.settings
    const checked = yield* checkPlan(BACKEND, plan, s.algorithm, "assemble")
    const startedAt = yield* Clock.currentTimeNanos
    const hashed = yield* hashParts(cas, parts, checked, known)
    yield* checkExpected(BACKEND, checked, hashed.key, "assemble")
    const held: Held = new Map()
    let owned = false
    const adopted = adopt(cas, s, hashed, checked.contentType, startedAt, held, () => {
      owned = true
    })
    // Adoption is short (renames and records) and must not stop half-way: parts consumed by it are gone.
    return yield* Effect.uninterruptible(adopted).pipe(
      // Unless the blob record now owns them, give back the references taken (as a failed chunked put does).
      Effect.ensuring(Effect.suspend(() => releaseUnowned(cas, "assemble", "assembly", held, owned)))
    )
  }).pipe(cas.instrument.observe("assemble"))
