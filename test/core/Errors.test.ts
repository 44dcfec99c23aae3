import { describe, expect, it } from "@effect/vitest"
import * as Schema from "effect/Schema"
import {
  BlobError,
  ErrorReason,
  invalidValue,
  isStorageError,
  isTransient,
  MetadataError,
  ObjectStoreError,
  toPortError
} from "../../src/core/Errors.js"

describe("Errors", () => {
  it("only Unavailable, Throttled and Timeout are transient", () => {
    const transient = ErrorReason.literals.filter((reason) =>
      isTransient(new ObjectStoreError({ reason, backend: "x", method: "m" }))
    )
    expect(transient).toEqual(["Unavailable", "Throttled", "Timeout"])
    expect(isTransient(new Error("Unavailable"))).toBe(false)
    expect(isTransient({ _tag: "Other", reason: "Unavailable" })).toBe(false)
  })

  it("renders a message from reason, backend, method and description", () => {
    const e = new MetadataError({ reason: "NotFound", backend: "pg", method: "get", description: "no such key" })
    expect(e.message).toBe("NotFound: pg.get: no such key")
    expect(e.isTransient).toBe(false)
    expect(new BlobError({ reason: "Timeout", backend: "s3", method: "put" }).isTransient).toBe(true)
    expect(isStorageError(e)).toBe(true)
  })

  it("turns a parse failure into a port error with reason InvalidInput", () => {
    const parse = invalidValue("BinaryKey", "x".repeat(500), "expected <algorithm>:<hex digest>:<length>")
    expect(parse.input.length).toBeLessThanOrEqual(120)
    const e = toPortError(BlobError, "cas", "get")(parse)
    expect(e._tag).toBe("BlobError")
    expect(e.reason).toBe("InvalidInput")
    expect(e.message).toContain("invalid BinaryKey")
  })

  it("round-trips through its Schema (for logs and wire formats)", () => {
    const e = new ObjectStoreError({ reason: "Throttled", backend: "s3", method: "get", description: "SlowDown" })
    const encoded = Schema.encodeSync(ObjectStoreError)(e)
    const decoded = Schema.decodeSync(ObjectStoreError)(encoded)
    expect(decoded.reason).toBe("Throttled")
    expect(decoded.message).toBe(e.message)
  })
})
