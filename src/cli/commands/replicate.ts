/**
 * `graviton replicate <key> --to <target>...`: copies a blob from the
 * selected store to other stores, verified, and records each copy in the
 * selected store's ReplicaIndex (replication/Replicator).
 *
 * A target is `[name=]<store spec>`, the spec being `embedded:<dir>`,
 * `memory`, `pg` or `s3` (see Stores.buildStore). Without a name, an
 * embedded target is named `embedded-<8 hex digits of its absolute path>`
 * and the others by their store kind. The name is what the index records
 * (`replica://<name>/<key>`); the CLI remembers name → spec in the selected
 * store's KeyValueStore (`cli/replica-targets/<name>`), so that `repair`
 * finds the targets again. A name already remembered for another spec is
 * refused (exit 2): entries recorded under it would point at the wrong store.
 * A target is remembered only once it has proven itself: it opened (reachable)
 * and the blob was copied there, verified (writable). One that fails is
 * reported and forgotten, so `repair` never trips over it.
 *
 * `graviton replicate targets` lists the remembered targets and
 * `graviton replicate targets rm NAME` forgets one (the copies it holds stay
 * where they are; the index entries naming it are no longer read).
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { createHash } from "node:crypto"
import * as path from "node:path"
import * as BinaryKey from "../../core/BinaryKey.js"
import * as BlobLocator from "../../core/BlobLocator.js"
import { KeyValueStore } from "../../ports/KeyValueStore.js"
import { BlobStore } from "../../ports/BlobStore.js"
import { ReplicaIndex } from "../../ports/ReplicaIndex.js"
import * as ReplicatedBlobStore from "../../replication/ReplicatedBlobStore.js"
import * as Replicator from "../../replication/Replicator.js"
import { BlobError } from "../../core/Errors.js"
import { classify, codeOfReason, type CliFailure, ExitCode, fail } from "../exitCodes.js"
import * as Globals from "../globals.js"
import * as Keys from "../keys.js"
import * as Output from "../output.js"
import { withStore } from "../session.js"
import * as Stores from "../stores.js"

/** Where remembered targets live in the selected store's KeyValueStore. */
export const TARGETS_PREFIX = "cli/replica-targets/"

/** A target as typed: its name and its normalized spec (`embedded:<absolute dir>`, `pg` ...). */
export interface TargetSpec {
  readonly name: string
  readonly spec: string
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** Parses `[name=]<spec>`, normalizing an embedded directory to an absolute path. */
export const parseTarget = (text: string): Effect.Effect<TargetSpec, CliFailure> =>
  Effect.suspend(() => {
    const eq = text.indexOf("=")
    // A '=' inside an embedded directory is part of the path unless it comes before the kind.
    const named = eq > 0 && !text.slice(0, eq).includes(":")
    const raw = named ? text.slice(eq + 1) : text
    const colon = raw.indexOf(":")
    const kind = colon < 0 ? raw : raw.slice(0, colon)
    if (!Stores.names().includes(kind)) {
      return Effect.fail(fail(ExitCode.Usage, `unknown store ${JSON.stringify(kind)} in target ${JSON.stringify(text)} (expected [name=]embedded:<dir>, ${Stores.names().filter((n) => n !== "embedded").join(", ")})`))
    }
    const dir = colon < 0 ? "" : raw.slice(colon + 1)
    if (kind === "embedded" && dir.length === 0) {
      return Effect.fail(fail(ExitCode.Usage, `an embedded target needs a directory: embedded:<dir> (in ${JSON.stringify(text)})`))
    }
    const spec = kind === "embedded" ? `embedded:${path.resolve(dir)}` : raw
    const name = named
      ? text.slice(0, eq)
      : kind === "embedded"
      ? `embedded-${createHash("sha256").update(path.resolve(dir)).digest("hex").slice(0, 8)}`
      : kind
    if (Replicator.checkTargets("replicate", [{ name, store: {} as never }])._tag === "Left") {
      return Effect.fail(fail(ExitCode.Usage, `invalid target name ${JSON.stringify(name)}: a name is 1 to ${BlobLocator.MAX_BUCKET_BYTES} bytes without '/' or control characters`))
    }
    return Effect.succeed({ name, spec })
  })

/** The targets remembered in the selected store (none without a KeyValueStore). */
export const remembered: Effect.Effect<ReadonlyArray<TargetSpec>> = Effect.serviceOption(KeyValueStore).pipe(
  Effect.flatMap(Option.match({
    onNone: () => Effect.succeed<ReadonlyArray<TargetSpec>>([]),
    onSome: (kv) =>
      Effect.map(
        Stream.runCollect(kv.list(TARGETS_PREFIX)),
        (entries) => Array.from(entries, ([k, v]) => ({ name: k.slice(TARGETS_PREFIX.length), spec: decoder.decode(v) }))
      )
  })),
  // Unreadable memory is no memory: explicit targets still work.
  Effect.orElseSucceed(() => [])
)

/** Refuses a name remembered for another spec (before anything is copied). */
const checkName = (target: TargetSpec) =>
  Effect.gen(function*() {
    const kv = yield* Effect.serviceOption(KeyValueStore)
    if (Option.isNone(kv)) return
    const current = yield* kv.value.get(TARGETS_PREFIX + target.name)
    const known = Option.map(current, (v) => decoder.decode(v))
    if (Option.isSome(known) && known.value !== target.spec) {
      return yield* fail(
        ExitCode.Usage,
        `the target name ${JSON.stringify(target.name)} already names ${known.value}; pick another name (name=${target.spec})`
      )
    }
  })

/** Remembers a target's spec under its name; a name remembered for another spec is refused. */
const remember = (target: TargetSpec) =>
  Effect.gen(function*() {
    const kv = yield* Effect.serviceOption(KeyValueStore)
    if (Option.isNone(kv)) return
    const key = TARGETS_PREFIX + target.name
    const value = encoder.encode(target.spec)
    const stored = yield* kv.value.compareAndSet(key, Option.none(), Option.some(value))
    if (stored) return
    const current = yield* kv.value.get(key)
    const known = Option.map(current, (v) => decoder.decode(v))
    if (Option.isSome(known) && known.value !== target.spec) {
      return yield* fail(
        ExitCode.Usage,
        `the target name ${JSON.stringify(target.name)} already names ${known.value}; pick another name (name=${target.spec})`
      )
    }
  })

/** The selected store's ReplicaIndex; a store without one cannot record replicas (exit 5). */
export const replicaIndex = (store: string) =>
  Effect.flatMap(Effect.serviceOption(ReplicaIndex), Option.match({
    onNone: () => Effect.fail(fail(ExitCode.Storage, `the ${store} store keeps no replica index; replicate from a store that does (embedded, pg, memory)`)),
    onSome: Effect.succeed
  }))

/**
 * The store `get` reads `key` from: the primary, or, when the key has copies
 * on remembered targets (replica entries in the primary's index), a
 * ReplicatedBlobStore over the primary and those targets, which serves a
 * verified replica when the primary's copy is missing or corrupted and says
 * so on stderr. Targets are opened only for such keys; one that cannot be
 * opened is skipped with a note.
 */
export const readerFor = (
  key: BinaryKey.BinaryKey,
  primary: BlobStore["Type"],
  settings: Stores.StoreSettings
): Effect.Effect<BlobStore["Type"], never, Scope.Scope> =>
  Effect.gen(function*() {
    const index = yield* Effect.serviceOption(ReplicaIndex)
    if (Option.isNone(index)) return primary
    const entries = yield* Effect.orElseSucceed(index.value.replicas(key), () => [])
    const names = new Set(entries.flatMap((l) => Option.toArray(Replicator.targetOf(l, key))))
    const specs = (yield* remembered).filter((t) => names.has(t.name))
    if (specs.length === 0) return primary
    const targets: Array<Replicator.Target> = []
    for (const t of specs) {
      const opened = yield* Effect.either(Stores.buildStore(t.spec, settings))
      if (opened._tag === "Right") targets.push({ name: t.name, store: opened.right })
      else yield* Output.note(`replica target ${t.name} (${t.spec}) cannot be opened: ${classify(opened.left)?.message ?? String(opened.left)}`)
    }
    return yield* ReplicatedBlobStore.make({
      targets,
      onFallback: ({ primaryError, target }) =>
        Effect.orDie(Output.note(`served from replica ${target}: the primary copy failed (${primaryError.message}); graviton repair restores it`))
    }).pipe(
      Effect.provideService(BlobStore, primary),
      Effect.provideService(ReplicaIndex, index.value),
      Effect.orElseSucceed(() => primary)
    )
  })

/** Builds the target stores in the current scope. */
export const openTargets = (
  specs: ReadonlyArray<TargetSpec>,
  settings: Stores.StoreSettings
): Effect.Effect<ReadonlyArray<Replicator.Target>, unknown, Scope.Scope> =>
  Effect.forEach(specs, (t) => Effect.map(Stores.buildStore(t.spec, settings), (store) => ({ name: t.name, store })))

// Optional so that `replicate targets` reaches its subcommand; a copy without a key is a usage error.
const key = Keys.arg.pipe(Args.withDescription("The key to copy, as printed by put"), Args.optional)

const to = Options.text("to").pipe(
  Options.withPseudoName("target"),
  Options.withDescription("Where to copy: [name=]embedded:<dir> | memory | pg | s3 (repeat for several targets)"),
  Options.repeated
)

/** The `replicate` command. */
export const replicate = Command.make("replicate", { ...Globals.options, key, to }, (args) =>
  Effect.gen(function*() {
    const globals = yield* Globals.resolve(args)
    const keyText = args.key
    if (Option.isNone(keyText)) return yield* fail(ExitCode.Usage, "name the key to copy: graviton replicate <key> --to <target> (or: graviton replicate targets)")
    if (args.to.length === 0) return yield* fail(ExitCode.Usage, "name at least one target: --to embedded:<dir> (or memory, pg, s3)")
    const specs = yield* Effect.forEach(args.to, parseTarget)
    const names = new Set(specs.map((s) => s.name))
    if (names.size !== specs.length) return yield* fail(ExitCode.Usage, "two targets have the same name; name them: --to a=embedded:<dir>")
    yield* withStore(
      globals,
      Effect.gen(function*() {
        const k = yield* Keys.parse(keyText.value)
        const index = yield* replicaIndex(globals.store)
        for (const s of specs) yield* checkName(s)
        // Reachable: the target opens; a failure is that target's outcome, and it is not remembered.
        const opened = yield* Effect.forEach(specs, (t) =>
          Effect.map(Effect.either(Stores.buildStore(t.spec, globals.settings)), (store) => ({ spec: t, store })))
        const targets: Array<Replicator.Target> = []
        const unreachable: Array<Replicator.CopyOutcome> = []
        for (const o of opened) {
          if (o.store._tag === "Right") {
            targets.push({ name: o.spec.name, store: o.store.right })
          } else {
            const c = classify(o.store.left)
            unreachable.push({
              _tag: "Failed",
              target: o.spec.name,
              error: new BlobError({
                reason: "Unavailable",
                backend: "replicate",
                method: "open",
                description: `cannot open ${o.spec.spec}: ${c?.message ?? String(o.store.left)}`
              })
            })
          }
        }
        const replicator = yield* Replicator.make().pipe(Effect.provideService(ReplicaIndex, index))
        const copied = targets.length === 0 ? [] : yield* replicator.replicate(k, targets)
        // Writable: the verified copy landed. Only then is the target remembered for repair.
        for (const o of copied) {
          if (o._tag === "Copied") yield* remember(specs.find((s) => s.name === o.target)!)
        }
        const outcomes = [...copied, ...unreachable]
        const failed = outcomes.filter((o) => o._tag === "Failed")
        const text = BinaryKey.render(k)
        if (globals.json) {
          yield* Output.json({
            key: text,
            targets: outcomes.map((o) =>
              o._tag === "Copied"
                ? { target: o.target, outcome: o.deduplicated ? "present" : "copied", locator: BlobLocator.render(o.locator) }
                : { target: o.target, outcome: "failed", reason: o.error.reason, description: o.error.message }
            )
          })
        } else {
          for (const o of outcomes) {
            yield* o._tag === "Copied"
              ? Output.line(`${o.deduplicated ? "present" : "copied "} ${o.target} ${BlobLocator.render(o.locator)}`)
              : Output.line(`FAILED  ${o.target}: ${o.error.message}`)
          }
        }
        const first = failed[0]
        if (first !== undefined && first._tag === "Failed") {
          return yield* fail(
            codeOfReason(first.error.reason),
            `replication of ${text} failed for ${failed.length} of ${outcomes.length} target${outcomes.length === 1 ? "" : "s"}`
          )
        }
      })
    )
  })).pipe(Command.withDescription("Copy a blob to other stores, verified, and record each copy in this store's replica index"))

const targetName = Args.text({ name: "name" }).pipe(Args.withDescription("The target's name, as `replicate targets` lists it"))

/** `replicate targets rm NAME`: forgets a remembered target. */
const targetsRm = Command.make("rm", { ...Globals.options, name: targetName }, (args) =>
  Effect.gen(function*() {
    const globals = yield* Globals.resolve(args)
    yield* withStore(
      globals,
      Effect.gen(function*() {
        const kv = yield* Effect.serviceOption(KeyValueStore)
        const key = TARGETS_PREFIX + args.name
        const known = Option.isNone(kv) ? Option.none() : yield* kv.value.get(key)
        if (Option.isNone(kv) || Option.isNone(known)) {
          return yield* fail(ExitCode.NotFound, `no replication target named ${JSON.stringify(args.name)} (see graviton replicate targets)`)
        }
        yield* kv.value.delete(key)
        yield* Output.note(`forgot target ${args.name} (${decoder.decode(known.value)}); copies already made there stay`)
      })
    )
  })).pipe(Command.withDescription("Forget a remembered replication target"))

/** `replicate targets`: the remembered targets, one `name spec` per line. */
const targets = Command.make("targets", { ...Globals.options }, (args) =>
  Effect.gen(function*() {
    const globals = yield* Globals.resolve(args)
    yield* withStore(
      globals,
      Effect.gen(function*() {
        const all = yield* remembered
        if (globals.json) return yield* Output.json(all.map((t) => ({ name: t.name, spec: t.spec })))
        for (const t of all) yield* Output.line(`${t.name} ${t.spec}`)
      })
    )
  })).pipe(
    Command.withDescription("List the replication targets remembered by replicate (repair reads them)"),
    Command.withSubcommands([targetsRm])
  )

/** `replicate` with its `targets` subcommands. */
export const replicateCommand = replicate.pipe(Command.withSubcommands([targets]))
