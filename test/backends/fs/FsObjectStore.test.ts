import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { SystemError } from "@effect/platform/Error"
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync
} from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { reasonOf } from "../../../src/backends/fs/errors.js"
import * as FsObjectStore from "../../../src/backends/fs/FsObjectStore.js"
import * as BlobLocator from "../../../src/core/BlobLocator.js"
import { type ErrorReason, isTransient, ObjectStoreError } from "../../../src/core/Errors.js"
import type { MutableObjectStoreShape } from "../../../src/ports/ObjectStore.js"
import { MutableObjectStore } from "../../../src/ports/ObjectStore.js"
import { chunked, collect, MiB, randomBytes, sameBytes, utf8 } from "../../../src/testing/bytes.js"
import { helpers } from "../../../src/testing/ObjectStore.js"

/** A fresh root directory, removed when the test's scope closes. */
const tempRoot = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "graviton-fs-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const storeAt = (options: FsObjectStore.FsObjectStoreOptions) =>
  FsObjectStore.make(options).pipe(Effect.provide(NodeFileSystem.layer))

/** A store over a fresh root: `[store, root]`. */
const fresh = (options: Omit<FsObjectStore.FsObjectStoreOptions, "root"> = {}) =>
  Effect.flatMap(tempRoot, (root) => Effect.map(storeAt({ ...options, root }), (store) => [store, root] as const))

const loc = (text: string) => Either.getOrThrow(BlobLocator.parse(text))
const prefix = (text: string) => Either.getOrThrow(BlobLocator.parsePrefix(text))

const put = (store: MutableObjectStoreShape, l: string, bytes: Uint8Array) => Stream.run(chunked(bytes), store.put(loc(l)))

const reasonOfFailure = <A, R>(effect: Effect.Effect<A, ObjectStoreError, R>) =>
  Effect.map(Effect.flip(effect), (e) => {
    expect(e).toBeInstanceOf(ObjectStoreError)
    return e.reason
  })

const paths = (store: MutableObjectStoreShape, p: string) =>
  Effect.map(Stream.runCollect(store.list(prefix(p))), (c) => Chunk.toReadonlyArray(c).map((s) => s.locator.path))

const tempFiles = (root: string) => readdirSync(join(root, ".graviton", "tmp"))

const { stalled } = helpers

describe("FsObjectStore", () => {
  it.scoped("concurrent puts and moves into one new directory all succeed", () =>
    Effect.gen(function*() {
      const [store] = yield* fresh()
      // Each round: 16 writers create the same new nested directory at once (mkdir -p racing itself,
      // which Node can report as EEXIST), some of them deleting again (which prunes empty directories).
      for (let round = 0; round < 20; round++) {
        yield* Effect.forEach(Array.from({ length: 16 }, (_, i) => i), (i) =>
          Effect.gen(function*() {
            yield* put(store, `file://bkt/d${round}/a/b/c/tmp-${i}`, utf8(`x${i}`))
            yield* store.move(loc(`file://bkt/d${round}/a/b/c/tmp-${i}`), loc(`file://bkt/d${round}/a/b/c/${i}`))
            if (i % 2 === 0) yield* store.delete(loc(`file://bkt/d${round}/a/b/c/${i}`))
          }), { concurrency: 16, discard: true })
      }
      expect((yield* paths(store, "file://bkt/")).length).toBe(20 * 8)
    }))

  it.scoped("objects are plain files at <root>/<bucket>/<path>, and plain files are objects", () =>
    Effect.gen(function*() {
      const [store, root] = yield* fresh()
      const bytes = randomBytes(100_000, 1)
      yield* put(store, "file://bkt/x/y.bin", bytes)
      expect(sameBytes(readFileSync(join(root, "bkt", "x", "y.bin")), bytes)).toBe(true)
      mkdirSync(join(root, "bkt", "dropped"), { recursive: true })
      writeFileSync(join(root, "bkt", "dropped", "in.txt"), "by hand")
      expect(new TextDecoder().decode(yield* collect(store.get(loc("file://bkt/dropped/in.txt"))))).toBe("by hand")
      expect(yield* paths(store, "file://bkt/")).toEqual(["dropped/in.txt", "x/y.bin"])
    }))

  it.scoped("no temp file remains after an interrupted, a failed or a rejected put", () =>
    Effect.gen(function*() {
      const [store, root] = yield* fresh()
      const started = yield* Deferred.make<void>()
      const fiber = yield* Effect.fork(
        Stream.run(stalled(randomBytes(300_000, 2), started), store.put(loc("file://b/i"), { contentType: "a/b" }))
      )
      yield* Deferred.await(started)
      // The data and the metadata temp files exist while the put is in flight...
      expect(tempFiles(root).length).toBe(2)
      yield* Fiber.interrupt(fiber)
      // ...and are gone once it is interrupted.
      expect(tempFiles(root)).toEqual([])
      expect(existsSync(join(root, "b", "i"))).toBe(false)

      yield* Effect.exit(Stream.run(Stream.concat(chunked(randomBytes(1000, 3)), Stream.fail("boom")), store.put(loc("file://b/f"))))
      expect(tempFiles(root)).toEqual([])
      expect(yield* reasonOfFailure(Stream.run(chunked(utf8("abc")), store.put(loc("file://b/s"), { size: 2 })))).toBe(
        "InvalidInput"
      )
      expect(tempFiles(root)).toEqual([])
      expect(yield* paths(store, "file://b/")).toEqual([])
    }))

  it.scoped("listing never shows in-flight temp files; the reserved bucket is rejected", () =>
    Effect.gen(function*() {
      const [store, root] = yield* fresh()
      yield* put(store, "file://b/done", utf8("done"))
      const started = yield* Deferred.make<void>()
      const fiber = yield* Effect.fork(Stream.run(stalled(utf8("pending"), started), store.put(loc("file://b/pending"))))
      yield* Deferred.await(started)
      expect(tempFiles(root).length).toBe(1)
      expect(yield* paths(store, "file://b/")).toEqual(["done"])
      yield* Fiber.interrupt(fiber)
      expect(yield* reasonOfFailure(Stream.runDrain(store.list(prefix("file://.graviton/"))))).toBe("InvalidInput")
      expect(yield* reasonOfFailure(store.head(loc("file://.graviton/tmp")))).toBe("InvalidInput")
      expect(yield* reasonOfFailure(put(store, "file://.graviton/meta/x", utf8("x")))).toBe("InvalidInput")
    }))

  it.scoped("a locator of another scheme fails with InvalidInput; the scheme is configurable", () =>
    Effect.gen(function*() {
      const [store] = yield* fresh()
      const s3 = loc("s3://b/k")
      yield* put(store, "file://b/k", utf8("k"))
      const reasons: Array<ErrorReason> = [
        yield* reasonOfFailure(store.head(s3)),
        yield* reasonOfFailure(collect(store.get(s3))),
        yield* reasonOfFailure(Stream.run(chunked(utf8("x")), store.put(s3))),
        yield* reasonOfFailure(store.delete(s3)),
        yield* reasonOfFailure(store.copy(loc("file://b/k"), s3)),
        yield* reasonOfFailure(store.move(s3, loc("file://b/k2"))),
        yield* reasonOfFailure(Stream.runDrain(store.list(prefix("s3://b/"))))
      ]
      expect(reasons).toEqual(Array(7).fill("InvalidInput"))

      const [disk] = yield* fresh({ scheme: "disk" })
      yield* put(disk, "disk://b/k", utf8("k"))
      expect(yield* paths(disk, "disk://b/")).toEqual(["k"])
      expect(yield* reasonOfFailure(disk.head(loc("file://b/k")))).toBe("InvalidInput")
      expect(yield* reasonOfFailure(storeAt({ root: "/unused", scheme: "Not A Scheme" }))).toBe("InvalidInput")
    }))

  it.scoped("escaping the root is rejected, through `..` or through a symbolic link", () =>
    Effect.gen(function*() {
      const [store, root] = yield* fresh()
      const outside = yield* tempRoot
      writeFileSync(join(outside, "secret"), "secret")
      mkdirSync(join(root, "b"), { recursive: true })
      symlinkSync(outside, join(root, "b", "dirlink"))
      symlinkSync(join(outside, "secret"), join(root, "b", "filelink"))
      yield* put(store, "file://b/ok", utf8("ok"))

      const dotdot = new BlobLocator.BlobLocator({ scheme: "file", bucket: "b", path: "../../etc/passwd" }, true)
      expect(yield* reasonOfFailure(store.head(dotdot))).toBe("InvalidInput")
      expect(yield* reasonOfFailure(store.head(loc("file://b/filelink")))).toBe("PermissionDenied")
      expect(yield* reasonOfFailure(collect(store.get(loc("file://b/dirlink/secret"))))).toBe("PermissionDenied")
      expect(yield* reasonOfFailure(store.delete(loc("file://b/dirlink/secret")))).toBe("PermissionDenied")
      expect(yield* reasonOfFailure(put(store, "file://b/dirlink/planted", utf8("x")))).toBe("PermissionDenied")
      expect(yield* reasonOfFailure(store.copy(loc("file://b/filelink"), loc("file://b/stolen")))).toBe("PermissionDenied")
      // Nothing outside was touched, and the listing shows only what is inside.
      expect(readdirSync(outside)).toEqual(["secret"])
      expect(readFileSync(join(outside, "secret"), "utf8")).toBe("secret")
      expect(yield* paths(store, "file://b/")).toEqual(["ok"])
      // No link below root is followed, even one that stays inside (the store writes none: it was planted).
      symlinkSync(join(root, "b", "ok"), join(root, "b", "alias"))
      expect(yield* reasonOfFailure(collect(store.get(loc("file://b/alias"))))).toBe("PermissionDenied")
      expect(yield* paths(store, "file://b/")).toEqual(["ok"])
    }))

  it.scoped("a symbolic link back to an ancestor does not make the listing endless", () =>
    Effect.gen(function*() {
      const [store, root] = yield* fresh()
      yield* put(store, "file://b/d/x", utf8("x"))
      symlinkSync(join(root, "b", "d"), join(root, "b", "d", "loop"))
      expect(yield* paths(store, "file://b/")).toEqual(["d/x"])
    }))

  it.scoped("delete prunes emptied directories, but not the bucket or non-empty ones", () =>
    Effect.gen(function*() {
      const [store, root] = yield* fresh()
      yield* put(store, "file://b/x/y/z", utf8("z"))
      yield* put(store, "file://b/x/keep", utf8("k"))
      yield* store.delete(loc("file://b/x/y/z"))
      expect(existsSync(join(root, "b", "x", "y"))).toBe(false)
      expect(existsSync(join(root, "b", "x", "keep"))).toBe(true)
      yield* store.delete(loc("file://b/x/keep"))
      expect(existsSync(join(root, "b", "x"))).toBe(false)
      expect(existsSync(join(root, "b"))).toBe(true)
      yield* put(store, "file://b/x/y/again", utf8("again"))
      expect(new TextDecoder().decode(yield* collect(store.get(loc("file://b/x/y/again"))))).toBe("again")
    }))

  it.scoped("a path cannot be both an object and a directory of objects (Conflict)", () =>
    Effect.gen(function*() {
      const [store] = yield* fresh()
      yield* put(store, "file://b/a/b", utf8("child"))
      expect(yield* reasonOfFailure(put(store, "file://b/a", utf8("parent")))).toBe("Conflict")
      expect(yield* reasonOfFailure(put(store, "file://b/a/b/c", utf8("grandchild")))).toBe("Conflict")
      expect(yield* reasonOfFailure(store.move(loc("file://b/a/b"), loc("file://b/a")))).toBe("Conflict")
      expect(yield* paths(store, "file://b/")).toEqual(["a/b"])
    }))

  it.scoped("a path segment longer than 255 bytes fails with InvalidInput", () =>
    Effect.gen(function*() {
      const [store] = yield* fresh()
      const long = `file://b/${"é".repeat(128)}`
      expect(yield* reasonOfFailure(put(store, long, utf8("x")))).toBe("InvalidInput")
      expect(yield* reasonOfFailure(store.head(loc(long)))).toBe("InvalidInput")
      yield* put(store, `file://b/${"e".repeat(255)}`, utf8("x"))
    }))

  it.scoped("metadata is kept beside the object and follows it through copy, move and delete", () =>
    Effect.gen(function*() {
      const [store, root] = yield* fresh()
      const metaFile = (p: string) => join(root, ".graviton", "meta", "b", ...p.split("/"))
      yield* Stream.run(chunked(utf8("{}")), store.put(loc("file://b/m/one"), { contentType: "application/json", metadata: { k: "v" } }))
      expect(JSON.parse(readFileSync(metaFile("m/one"), "utf8"))).toEqual({ contentType: "application/json", metadata: { k: "v" } })
      yield* store.copy(loc("file://b/m/one"), loc("file://b/c/two"))
      yield* store.move(loc("file://b/m/one"), loc("file://b/n/three"))
      expect(existsSync(metaFile("m/one"))).toBe(false)
      expect(existsSync(join(root, ".graviton", "meta", "b", "m"))).toBe(false)
      const moved = Option.getOrThrow(yield* store.head(loc("file://b/n/three")))
      expect([moved.contentType, moved.metadata]).toEqual([Option.some("application/json"), { k: "v" }])
      yield* store.delete(loc("file://b/n/three"))
      yield* store.delete(loc("file://b/c/two"))
      expect(readdirSync(join(root, ".graviton", "meta", "b"))).toEqual([])
    }))

  it.scoped("a damaged metadata file makes head fail with Corrupted", () =>
    Effect.gen(function*() {
      const [store, root] = yield* fresh()
      yield* Stream.run(chunked(utf8("x")), store.put(loc("file://b/d"), { contentType: "text/plain" }))
      writeFileSync(join(root, ".graviton", "meta", "b", "d"), "{\"contentType\": 5}")
      expect(yield* reasonOfFailure(store.head(loc("file://b/d")))).toBe("Corrupted")
      writeFileSync(join(root, ".graviton", "meta", "b", "d"), "not json")
      expect(yield* reasonOfFailure(store.head(loc("file://b/d")))).toBe("Corrupted")
    }))

  it.scoped("a read keeps the bytes it started with when the object is overwritten meanwhile", () =>
    Effect.gen(function*() {
      const [store] = yield* fresh()
      const original = randomBytes(MiB, 4)
      yield* put(store, "file://b/o", original)
      let replaced = false
      const read = store.get(loc("file://b/o")).pipe(
        Stream.tap(() =>
          replaced ? Effect.void : Effect.andThen(put(store, "file://b/o", randomBytes(MiB, 5)), () => {
            replaced = true
          })
        )
      )
      const got = yield* collect(read)
      expect(replaced).toBe(true)
      expect(sameBytes(got, original)).toBe(true)
    }))

  it.scoped("stale temp files of a crashed process are swept at startup; fresh ones are kept", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot
      mkdirSync(join(root, ".graviton", "tmp"), { recursive: true })
      const old = join(root, ".graviton", "tmp", "put-old")
      writeFileSync(old, "left behind")
      const twoDaysAgo = new Date(Date.now() - 2 * 24 * 3600 * 1000)
      utimesSync(old, twoDaysAgo, twoDaysAgo)
      writeFileSync(join(root, ".graviton", "tmp", "put-live"), "in flight elsewhere")
      yield* storeAt({ root })
      expect(tempFiles(root)).toEqual(["put-live"])
    }))

  it.scoped("fsync: true stores the same bytes", () =>
    Effect.gen(function*() {
      const [store] = yield* fresh({ fsync: true })
      const bytes = randomBytes(70_000, 6)
      yield* put(store, "file://b/synced", bytes)
      expect(sameBytes(yield* collect(store.get(loc("file://b/synced"))), bytes)).toBe(true)
    }))

  it.scoped("a root that is a file fails with a typed error, not a defect", () =>
    Effect.gen(function*() {
      const dir = yield* tempRoot
      writeFileSync(join(dir, "file"), "x")
      const e = yield* Effect.flip(storeAt({ root: join(dir, "file") }))
      expect(e).toBeInstanceOf(ObjectStoreError)
      expect(["AlreadyExists", "Conflict"]).toContain(e.reason)
    }))

  it.scoped("layerConfig reads the root from GRAVITON_FS_ROOT", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot
      const provider = ConfigProvider.fromMap(new Map([["GRAVITON_FS_ROOT", root]]))
      yield* Effect.flatMap(MutableObjectStore, (store) => put(store, "file://cfg/x", utf8("configured"))).pipe(
        Effect.provide(FsObjectStore.layerConfig().pipe(Layer.provide(Layer.setConfigProvider(provider))))
      )
      expect(readFileSync(join(root, "cfg", "x"), "utf8")).toBe("configured")
      const missing = yield* Effect.flip(
        Effect.provide(MutableObjectStore, FsObjectStore.layerConfig().pipe(
          Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map())))
        ))
      )
      expect(missing._tag).not.toBe("ObjectStoreError")
    }))
})

describe("fs error mapping", () => {
  const errno = (code: string) => Object.assign(new Error(code), { code })
  const system = (code: string | undefined, reason: SystemError["reason"]) =>
    new SystemError({ reason, module: "FileSystem", method: "m", cause: code === undefined ? undefined : errno(code) })

  it("maps errno codes to reasons", () => {
    const table: ReadonlyArray<readonly [string, ErrorReason]> = [
      ["ENOENT", "NotFound"],
      ["EACCES", "PermissionDenied"],
      ["EPERM", "PermissionDenied"],
      ["ENOSPC", "Unavailable"],
      ["EEXIST", "AlreadyExists"],
      ["EISDIR", "Conflict"],
      ["ENOTDIR", "Conflict"],
      ["EMFILE", "Unavailable"],
      ["EBUSY", "Unavailable"],
      ["EAGAIN", "Unavailable"],
      ["ENAMETOOLONG", "InvalidInput"],
      ["ETIMEDOUT", "Timeout"],
      ["EXDEV", "Unsupported"],
      ["EWHATEVER", "Unknown"]
    ]
    for (const [code, reason] of table) {
      expect([code, reasonOf(system(code, "Unknown"))]).toEqual([code, reason])
      expect([code, reasonOf(errno(code))]).toEqual([code, reason])
    }
  })

  it("falls back to the platform's reason when there is no code", () => {
    expect(reasonOf(system(undefined, "Busy"))).toBe("Unavailable")
    expect(reasonOf(system(undefined, "NotFound"))).toBe("NotFound")
    expect(reasonOf(system(undefined, "InvalidData"))).toBe("Corrupted")
    expect(reasonOf({ _tag: "BadArgument" })).toBe("InvalidInput")
    expect(reasonOf("strange")).toBe("Unknown")
  })

  it("full disks and busy descriptors are transient; missing files are not", () => {
    const mk = (reason: ErrorReason) => new ObjectStoreError({ reason, backend: "fs", method: "put" })
    expect(isTransient(mk(reasonOf(errno("ENOSPC"))))).toBe(true)
    expect(isTransient(mk(reasonOf(errno("EMFILE"))))).toBe(true)
    expect(isTransient(mk(reasonOf(errno("ENOENT"))))).toBe(false)
  })
})
