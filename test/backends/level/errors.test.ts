/**
 * The mapping of classic-level failures to MetadataError reasons, on errors
 * shaped like the ones classic-level 3 and abstract-level 3 raise (the real
 * ones, locked and corrupted databases, are exercised in LevelDatabase.test.ts).
 */
import { describe, expect, it } from "@effect/vitest"
import { MetadataError } from "../../../src/core/Errors.js"
import { isLocked, levelCode, reasonOf, toMetadataError } from "../../../src/backends/level/errors.js"

/** An error with a code (and cause), like ModuleError and the binding's errors. */
const coded = (code: string | undefined, message: string, cause?: unknown): Error =>
  Object.assign(new Error(message), code === undefined ? {} : { code }, cause === undefined ? {} : { cause })

const failedOpen = (cause: unknown) => coded("LEVEL_DATABASE_NOT_OPEN", "Database failed to open", cause)
const context = { path: "/data/meta" }

describe("level error mapping", () => {
  it("maps every LEVEL_* code the driver raises to a reason", () => {
    const cases: ReadonlyArray<readonly [Error, string]> = [
      [coded("LEVEL_NOT_FOUND", "Entry not found"), "NotFound"],
      [failedOpen(coded("LEVEL_LOCKED", "IO error: lock /data/meta/LOCK: Resource temporarily unavailable")), "Unavailable"],
      [failedOpen(coded("LEVEL_CORRUPTION", "Corruption: bad block")), "Corrupted"],
      [coded("LEVEL_CORRUPTION", "Corruption: checksum mismatch"), "Corrupted"],
      [coded("LEVEL_DECODE_ERROR", "Could not decode value"), "Corrupted"],
      [coded("LEVEL_DATABASE_NOT_OPEN", "Database is not open"), "Unavailable"],
      [coded("LEVEL_STATUS_LOCKED", "Database status is locked"), "Unavailable"],
      [coded("LEVEL_IO_ERROR", "IO error: /data/meta/000005.ldb: Permission denied"), "PermissionDenied"],
      [coded("LEVEL_IO_ERROR", "IO error: /data/meta/000005.log: No space left on device"), "Unavailable"],
      [failedOpen(coded("LEVEL_IO_ERROR", "IO error: /x/LOCK: No such file or directory")), "NotFound"],
      [coded("LEVEL_INVALID_KEY", "Key cannot be null or undefined"), "InvalidInput"],
      [coded("LEVEL_INVALID_VALUE", "Value cannot be null or undefined"), "InvalidInput"],
      [coded("LEVEL_NOT_SUPPORTED", "Not supported"), "Unsupported"],
      [coded("LEVEL_ITERATOR_NOT_OPEN", "Iterator is not open"), "Unavailable"],
      [failedOpen(coded("ENOTDIR", "ENOTDIR: not a directory, mkdir '/etc/passwd/db'")), "InvalidInput"],
      [failedOpen(coded("EACCES", "EACCES: permission denied, mkdir '/root/db'")), "PermissionDenied"],
      [failedOpen(coded(undefined, "Invalid argument: /x: does not exist (create_if_missing is false)")), "NotFound"],
      [failedOpen(coded(undefined, "Invalid argument: /x: exists (error_if_exists is true)")), "AlreadyExists"],
      [failedOpen(coded(undefined, "Corruption: CURRENT file does not end with newline")), "Corrupted"],
      [coded("LEVEL_HOOK_ERROR", "The prewrite hook failed on batch()", new Error("injected")), "Unknown"],
      [coded(undefined, "something else"), "Unknown"]
    ]
    for (const [error, reason] of cases) expect(reasonOf(error), error.message).toBe(reason)
  })

  it("finds the code under the open wrapper", () => {
    const locked = failedOpen(coded("LEVEL_LOCKED", "IO error: lock /data/meta/LOCK: already held by process"))
    expect(levelCode(locked)).toBe("LEVEL_LOCKED")
    expect(isLocked(locked)).toBe(true)
    expect(isLocked(coded("LEVEL_IO_ERROR", "IO error"))).toBe(false)
  })

  it("describes a held lock by where the other holder is, always naming the path", () => {
    const other = toMetadataError(
      "open",
      failedOpen(coded("LEVEL_LOCKED", "IO error: lock /data/meta/LOCK: Resource temporarily unavailable")),
      context
    )
    expect(other).toBeInstanceOf(MetadataError)
    expect(other.backend).toBe("level")
    expect(other.method).toBe("open")
    expect(other.description).toBe("database at /data/meta is already open in another process (LevelDB holds /data/meta/LOCK)")
    expect(other.isTransient).toBe(true)
    const same = toMetadataError(
      "open",
      failedOpen(coded("LEVEL_LOCKED", "IO error: lock /data/meta/LOCK: already held by process")),
      context
    )
    expect(same.description).toContain("already open in this process")
  })

  it("corruption is never transient and keeps the driver's error as the cause", () => {
    const cause = coded("LEVEL_CORRUPTION", "Corruption: block checksum mismatch")
    const error = toMetadataError("get", cause, { path: "/data/meta", subject: "blobs/k" })
    expect(error.reason).toBe("Corrupted")
    expect(error.isTransient).toBe(false)
    expect(error.cause).toBe(cause)
    expect(error.description).toBe("database at /data/meta is corrupted (blobs/k): Corruption: block checksum mismatch")
  })

  it("passes a MetadataError through unchanged", () => {
    const original = new MetadataError({ reason: "Conflict", backend: "level", method: "commit" })
    expect(toMetadataError("commit", original, context)).toBe(original)
  })
})
