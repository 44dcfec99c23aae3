/**
 * The fs store never reaches outside its root, whatever someone who can
 * write into the home plants there: symbolic links in the metadata tree
 * (finding 1 of issue 15), in the staging tree of resumable uploads
 * (finding 2), or swapped in while an operation runs (finding 7); and what
 * it writes is owner-only unless widened (finding 7, permissions).
 * Each fault is recorded for docs/reliability.md.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as NFS from "node:fs"
import { tmpdir } from "node:os"
import { createRequire, syncBuiltinESMExports } from "node:module"
import { join } from "node:path"
import { Worker } from "node:worker_threads"
import * as FsObjectStore from "../../../src/backends/fs/FsObjectStore.js"
import * as BlobLocator from "../../../src/core/BlobLocator.js"
import type { ObjectStoreError } from "../../../src/core/Errors.js"
import type { MutableObjectStoreShape } from "../../../src/ports/ObjectStore.js"
import { UploadStaging } from "../../../src/ports/UploadStaging.js"
import * as EmbeddedStore from "../../../src/stores/EmbeddedStore.js"
import { chunked, collect, utf8 } from "../../../src/testing/bytes.js"
import { recordFault } from "../../harness/reliability.js"

const tempRoot = (name: string) =>
  Effect.acquireRelease(
    Effect.sync(() => NFS.mkdtempSync(join(tmpdir(), `graviton-${name}-`))),
    (dir) => Effect.sync(() => NFS.rmSync(dir, { recursive: true, force: true }))
  )

const storeAt = (options: FsObjectStore.FsObjectStoreOptions) =>
  FsObjectStore.make(options).pipe(Effect.provide(NodeFileSystem.layer))

const loc = (text: string) => Either.getOrThrow(BlobLocator.parse(text))
const put = (store: MutableObjectStoreShape, l: string, bytes: Uint8Array, options?: { contentType: string }) =>
  Stream.run(chunked(bytes), store.put(loc(l), options))

/** The reason of a failure, or "succeeded". */
const outcome = <A, R>(effect: Effect.Effect<A, ObjectStoreError, R>) =>
  Effect.match(effect, { onFailure: (e) => e.reason as string, onSuccess: () => "succeeded" })

/** Every file under `dir`, relative, with its content. */
const snapshot = (dir: string): Record<string, string> =>
  Object.fromEntries(
    (NFS.readdirSync(dir, { recursive: true }) as Array<string>)
      .filter((p) => NFS.lstatSync(join(dir, p)).isFile())
      .map((p) => [p, NFS.readFileSync(join(dir, p), "utf8")])
  )

const mode = (p: string) => NFS.statSync(p).mode & 0o777

describe("fs store confinement", () => {
  it.scoped("a symbolic link in the metadata tree is refused: nothing outside is read or deleted", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot("fs-meta-root")
      const outside = yield* tempRoot("fs-meta-outside")
      const store = yield* storeAt({ root })
      NFS.writeFileSync(join(outside, "victim"), "victim")
      NFS.writeFileSync(join(outside, "victim2"), "victim2")
      NFS.writeFileSync(join(outside, "leak"), JSON.stringify({ contentType: "text/secret", metadata: { token: "leaked" } }))
      yield* put(store, "file://bucket/b/victim2", utf8("inside"))
      yield* put(store, "file://bucket/b/leak", utf8("inside"))
      NFS.mkdirSync(join(root, ".graviton", "meta", "bucket"), { recursive: true })
      NFS.symlinkSync(outside, join(root, ".graviton", "meta", "bucket", "b"))
      const before = snapshot(outside)

      const putOutcome = yield* outcome(put(store, "file://bucket/b/victim", utf8("new")))
      const deleteOutcome = yield* outcome(store.delete(loc("file://bucket/b/victim2")))
      const head = yield* Effect.either(store.head(loc("file://bucket/b/leak")))
      const headOutcome = Either.isLeft(head) ? head.left.reason : `metadata ${JSON.stringify(Option.getOrThrow(head.right).metadata)}`

      expect(snapshot(outside)).toEqual(before)
      expect(putOutcome).toBe("PermissionDenied")
      expect(deleteOutcome).toBe("PermissionDenied")
      expect(headOutcome).toBe("PermissionDenied")
      const untouched = JSON.stringify(snapshot(outside)) === JSON.stringify(before)
      recordFault({
        area: "fs",
        fault: "symbolic link in the metadata tree to a directory outside the root (put, delete, head)",
        expected: "refused with PermissionDenied, nothing outside read or touched",
        observed: `put ${putOutcome}, delete ${deleteOutcome}, head ${headOutcome}; outside ${untouched ? "untouched" : "CHANGED"}`
      })
    }))

  it.scoped("a symbolic link in the upload staging tree is refused: no byte is written outside", () =>
    Effect.gen(function*() {
      const home = yield* tempRoot("fs-staging-home")
      const outside = yield* tempRoot("fs-staging-outside")
      const result = yield* Effect.gen(function*() {
        const staging = yield* UploadStaging
        NFS.mkdirSync(join(home, "blobs", "staging"), { recursive: true })
        NFS.symlinkSync(outside, join(home, "blobs", "staging", "uploads"))
        const begin = yield* Effect.match(staging.begin("upload-1", 3), { onFailure: (e) => e.reason as string, onSuccess: () => "succeeded" })
        // Even if an upload directory was already there (planted by hand), writing into it is refused too.
        NFS.mkdirSync(join(outside, "upload-2"))
        NFS.writeFileSync(join(outside, "upload-2", "data"), "")
        const write = yield* Effect.match(staging.writeSegment("upload-2", "", 0, Stream.make(utf8("abc")), 3), {
          onFailure: (e) => e.reason as string,
          onSuccess: () => "succeeded"
        })
        return { begin, write }
      }).pipe(Effect.provide(EmbeddedStore.layer({ home })))
      const files = snapshot(outside)
      expect(result).toEqual({ begin: "PermissionDenied", write: "PermissionDenied" })
      expect(files).toEqual({ [join("upload-2", "data")]: "" })
      const bytes = Object.values(files).reduce((n, s) => n + s.length, 0)
      recordFault({
        area: "fs",
        fault: "symbolic link in the upload staging tree to a directory outside the home (begin, write)",
        expected: "refused with PermissionDenied, no byte written outside",
        observed: `begin ${result.begin}, write ${result.write}; ${bytes} bytes written outside`
      })
    }))

  it.scoped("a directory swapped for a link right after the store looked it up is not followed", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot("fs-swap-root")
      const outside = yield* tempRoot("fs-swap-outside")
      const store = yield* storeAt({ root })
      yield* put(store, "file://b/d/secret", utf8("inside"))
      NFS.writeFileSync(join(outside, "secret"), "OUTSIDE")
      NFS.writeFileSync(join(outside, "victim"), "victim")
      const b = join(root, "b")
      NFS.symlinkSync(outside, join(b, "link"))
      // The attacker wins the race every time: the moment the store has checked or opened `b/d`
      // (realpath of a path through it, or an open of it), `b/d` becomes a link to outside.
      let armed = false
      const swap = (p: string) => {
        if (!armed || !/\/d(\/secret)?$/.test(p)) return
        armed = false
        NFS.renameSync(join(b, "d"), join(b, "real"))
        NFS.renameSync(join(b, "link"), join(b, "d"))
      }
      const restore = () => {
        if (NFS.lstatSync(join(b, "d")).isSymbolicLink()) {
          NFS.renameSync(join(b, "d"), join(b, "link"))
          NFS.renameSync(join(b, "real"), join(b, "d"))
        }
      }
      const fs = createRequire(import.meta.url)("node:fs") as typeof NFS
      const { openSync, promises: { realpath } } = fs
      fs.openSync = ((...args: Parameters<typeof openSync>) => {
        const fd = openSync(...args)
        swap(String(args[0]))
        return fd
      }) as typeof openSync
      fs.promises.realpath = (async (...args: Parameters<typeof realpath>) => {
        const real = await realpath(...args)
        swap(String(args[0]))
        return real
      }) as typeof realpath
      syncBuiltinESMExports()
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          fs.openSync = openSync
          fs.promises.realpath = realpath
          syncBuiltinESMExports()
        })
      )
      const attempt = <A>(effect: Effect.Effect<A, ObjectStoreError>) =>
        Effect.gen(function*() {
          restore()
          armed = true
          const result = yield* Effect.either(effect)
          const swapped = !armed
          armed = false
          restore()
          return { result, swapped }
        })
      const got = yield* attempt(collect(store.get(loc("file://b/d/secret"))))
      const putResult = yield* attempt(put(store, "file://b/d/planted", utf8("x")))
      const deleted = yield* attempt(store.delete(loc("file://b/d/victim")))
      const read = Either.isRight(got.result) ? new TextDecoder().decode(got.result.right) : got.result.left.reason
      const outsideNow = snapshot(outside)
      expect([got.swapped, putResult.swapped, deleted.swapped]).toEqual([true, true, true])
      expect(read).toBe("inside")
      expect(outsideNow).toEqual({ secret: "OUTSIDE", victim: "victim" })
      expect(NFS.readFileSync(join(b, "d", "planted"), "utf8")).toBe("x")
      recordFault({
        area: "fs",
        fault: "a directory swapped for a symbolic link to outside right after the store looked it up (get, put, delete)",
        expected: "the directory already opened is used: inside bytes read, put lands inside, nothing outside touched",
        observed: `get read ${JSON.stringify(read)}, put ${Either.isRight(putResult.result) ? "landed inside" : putResult.result.left.reason}, delete ${
          Either.isRight(deleted.result) ? "succeeded" : deleted.result.left.reason
        }; outside ${JSON.stringify(outsideNow) === JSON.stringify({ secret: "OUTSIDE", victim: "victim" }) ? "untouched" : "CHANGED"}`
      })
    }))

  it.scoped("a directory swapped for a link to outside while operations run is never followed", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot("fs-race-root")
      const outside = yield* tempRoot("fs-race-outside")
      const store = yield* storeAt({ root })
      yield* put(store, "file://b/d/secret", utf8("inside"))
      NFS.writeFileSync(join(outside, "secret"), "OUTSIDE")
      NFS.writeFileSync(join(outside, "victim"), "victim")
      NFS.symlinkSync(outside, join(root, "b", "link"))
      // Another thread swaps `b/d` between the real directory and the link, as fast as it can.
      const worker = new Worker(
        `const fs = require("node:fs"), { workerData: w } = require("node:worker_threads");
         const d = w.dir + "/d", real = w.dir + "/real", link = w.dir + "/link";
         for (;;) { try { fs.renameSync(d, real); fs.renameSync(link, d); fs.renameSync(d, link); fs.renameSync(real, d) } catch {} }`,
        { eval: true, workerData: { dir: join(root, "b") } }
      )
      yield* Effect.addFinalizer(() => Effect.promise(() => worker.terminate()))
      let leaked = 0
      let planted = 0
      const outcomes = new Map<string, number>()
      const count = (k: string) => outcomes.set(k, (outcomes.get(k) ?? 0) + 1)
      // Stops at the first escape (on a store that follows a swapped link, that comes within a few hundred rounds).
      for (let i = 0; i < 300 && leaked + planted === 0 && NFS.existsSync(join(outside, "victim")); i++) {
        const got = yield* Effect.either(collect(store.get(loc("file://b/d/secret"))))
        if (Either.isRight(got) && new TextDecoder().decode(got.right) === "OUTSIDE") leaked++
        count(Either.isLeft(got) ? `get ${got.left.reason}` : "get ok")
        count(`put ${yield* outcome(put(store, `file://b/d/planted-${i % 8}`, utf8("x")))}`)
        // Never inside: only an escape could delete it.
        count(`delete ${yield* outcome(store.delete(loc("file://b/d/victim")))}`)
        if (NFS.readdirSync(outside).some((n) => n.startsWith("planted-"))) planted++
      }
      yield* Effect.promise(() => worker.terminate())
      const outsideNow = snapshot(outside)
      expect(leaked).toBe(0)
      expect(planted).toBe(0)
      expect(outsideNow).toEqual({ secret: "OUTSIDE", victim: "victim" })
      for (const k of outcomes.keys()) {
        expect(["ok", "succeeded", "NotFound", "PermissionDenied", "Conflict"]).toContain(k.split(" ")[1])
      }
      recordFault({
        area: "fs",
        fault: "a directory swapped for a symbolic link to outside while gets, puts and deletes run (another thread)",
        expected: "never followed: nothing read from, written to or deleted outside",
        observed: `${leaked} reads from outside, ${planted} times a file planted outside, outside ${
          Object.keys(outsideNow).length === 2 && outsideNow["victim"] === "victim" ? "untouched" : "CHANGED"
        }; outcomes ${[...outcomes.keys()].sort().join(", ")}`
      })
    }), { timeout: 120_000 })

  it.scoped("files are owner-only by default (0600, directories 0700); \"shared\" widens them", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot("fs-modes")
      const store = yield* storeAt({ root: join(root, "private") })
      yield* put(store, "file://b/x/y", utf8("y"), { contentType: "text/plain" })
      yield* store.copy(loc("file://b/x/y"), loc("file://b/x/z"))
      const privateModes = [
        mode(join(root, "private")),
        mode(join(root, "private", "b", "x")),
        mode(join(root, "private", "b", "x", "y")),
        mode(join(root, "private", "b", "x", "z")),
        mode(join(root, "private", ".graviton", "meta", "b", "x", "y"))
      ]
      expect(privateModes).toEqual([0o700, 0o700, 0o600, 0o600, 0o600])

      const previous = process.umask(0o022)
      yield* Effect.addFinalizer(() => Effect.sync(() => process.umask(previous)))
      const shared = yield* storeAt({ root: join(root, "shared"), permissions: "shared" })
      yield* put(shared, "file://b/x/y", utf8("y"))
      expect([mode(join(root, "shared", "b", "x")), mode(join(root, "shared", "b", "x", "y"))]).toEqual([0o755, 0o644])
      const explicit = yield* storeAt({ root: join(root, "group"), permissions: { directory: 0o750, file: 0o640 } })
      yield* put(explicit, "file://b/x/y", utf8("y"))
      expect([mode(join(root, "group", "b", "x")), mode(join(root, "group", "b", "x", "y"))]).toEqual([0o750, 0o640])

      // Resumable uploads' staged files too.
      const home = join(root, "home")
      const staged = yield* Effect.gen(function*() {
        const staging = yield* UploadStaging
        yield* staging.begin("u", 1)
        return mode(join(home, "blobs", "staging", "uploads", "u", "data"))
      }).pipe(Effect.provide(EmbeddedStore.layer({ home })))
      expect(staged).toBe(0o600)
      recordFault({
        area: "fs",
        fault: "another local user reads the home (default permissions, umask 022)",
        expected: "objects, metadata and staged uploads 0600, directories 0700",
        observed: `objects ${privateModes[2]!.toString(8)}, metadata ${privateModes[4]!.toString(8)}, staged ${
          staged.toString(8)
        }, directories ${privateModes[1]!.toString(8)}`
      })
    }))
})
