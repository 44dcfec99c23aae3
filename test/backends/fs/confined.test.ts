/**
 * The confinement module on its own, in both modes: descriptor-relative
 * (/proc/self/fd, Linux) and the path-based fallback other systems get.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as NFS from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Confined from "../../../src/backends/fs/confined.js"

const tempRoot = Effect.acquireRelease(
  Effect.sync(() => NFS.mkdtempSync(join(tmpdir(), "graviton-confined-"))),
  (dir) => Effect.sync(() => NFS.rmSync(dir, { recursive: true, force: true }))
)

describe("confined", () => {
  it("permissions: private by default, shared, or explicit", () => {
    expect(Confined.modesOf(undefined)).toEqual({ file: 0o600, directory: 0o700 })
    expect(Confined.modesOf("private")).toEqual({ file: 0o600, directory: 0o700 })
    expect(Confined.modesOf("shared")).toEqual({ file: 0o644, directory: 0o755 })
    expect(Confined.modesOf({ file: 0o640, directory: 0o750 })).toEqual({ file: 0o640, directory: 0o750 })
  })

  for (const racefree of [true, false]) {
    it.scoped(`${racefree ? "descriptor-relative" : "path-based fallback"}: walks create, find and refuse links`, () =>
      Effect.gen(function*() {
        const dir = yield* tempRoot
        const outside = yield* tempRoot
        const root = yield* Confined.openRoot("test", join(dir, "root"), Confined.modesOf(undefined), { racefree })
        // Linux here: the descriptor-relative mode is available, and the fallback is what was asked.
        expect(root.racefree).toBe(racefree)
        yield* Confined.withDir("test", root, root.dir, ["a", "b"], true, (chain) =>
          Effect.sync(() => NFS.writeFileSync(Confined.last(chain).at("f"), "x")))
        expect(NFS.readFileSync(join(dir, "root", "a", "b", "f"), "utf8")).toBe("x")
        expect(NFS.statSync(join(dir, "root", "a", "b")).mode & 0o777).toBe(0o700)

        NFS.symlinkSync(outside, join(dir, "root", "a", "link"))
        const viaLink = yield* Effect.flip(Confined.withDir("test", root, root.dir, ["a", "link"], true, () => Effect.void))
        expect(viaLink.reason).toBe("PermissionDenied")
        const created = yield* Effect.flip(Confined.withDir("test", root, root.dir, ["a", "link", "new"], true, () => Effect.void))
        expect(created.reason).toBe("PermissionDenied")
        expect(NFS.readdirSync(outside)).toEqual([])

        NFS.writeFileSync(join(dir, "root", "a", "file"), "")
        const throughFile = yield* Effect.flip(Confined.withDir("test", root, root.dir, ["a", "file", "x"], true, () => Effect.void))
        expect(throughFile.reason).toBe("Conflict")
        const missing = yield* Confined.withOptionalDir("test", root, root.dir, ["a", "none"], false, Effect.succeed)
        expect(missing._tag).toBe("None")

        // Pruning removes emptied directories by name from their held parents, down to the kept index.
        NFS.rmSync(join(dir, "root", "a", "b", "f"))
        yield* Confined.withDir("test", root, root.dir, ["a", "b"], false, (chain) => Confined.prune(chain, 1))
        expect(NFS.readdirSync(join(dir, "root", "a")).sort()).toEqual(["file", "link"])
      }))
  }
})
