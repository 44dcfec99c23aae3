/**
 * The SQLSTATE -> reason mapping, which failures may be repeated, and the
 * rule that a password never appears in an error or a log line.
 */
import { describe, expect, it } from "@effect/vitest"
import { SqlError } from "@effect/sql/SqlError"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Redacted from "effect/Redacted"
import { createServer } from "node:net"
import { inspect } from "node:util"
import * as PgErrors from "../../../src/backends/pg/PgErrors.js"
import * as PgLayers from "../../../src/backends/pg/PgLayers.js"
import { isTransientReason } from "../../../src/core/Errors.js"
import { KeyValueStore } from "../../../src/ports/KeyValueStore.js"
import { gate } from "../../../src/testing/capabilities.js"
import { serverUrl, skipReason, usePostgres, withDatabase } from "../../harness/postgres.js"

usePostgres()
const live = gate(it.live, skipReason())

const dbError = (code: string, message = "boom") => new SqlError({ cause: Object.assign(new Error(message), { code }), message: "Failed to execute statement" })

describe("PgErrors.reasonOf", () => {
  const table: ReadonlyArray<readonly [string, string, boolean]> = [
    ["23505", "AlreadyExists", false],
    ["23503", "Conflict", false],
    ["23514", "InvalidInput", false],
    ["40001", "Throttled", true],
    ["40P01", "Throttled", true],
    ["08006", "Unavailable", true],
    ["08001", "Unavailable", true],
    ["57P01", "Unavailable", true],
    ["57P03", "Unavailable", true],
    ["53300", "Throttled", true],
    ["53100", "Unavailable", true],
    ["57014", "Timeout", true],
    ["55P03", "Timeout", true],
    ["22P02", "InvalidInput", false],
    ["22001", "InvalidInput", false],
    ["22021", "InvalidInput", false],
    ["54000", "InvalidInput", false],
    ["42501", "PermissionDenied", false],
    ["28P01", "PermissionDenied", false],
    ["0A000", "Unsupported", false],
    ["XX001", "Corrupted", false],
    ["42P01", "Unknown", false],
    ["3D000", "Unknown", false]
  ]
  for (const [code, reason, transient] of table) {
    it(`SQLSTATE ${code} -> ${reason}${transient ? " (transient)" : ""}`, () => {
      const error = PgErrors.metadataError("get")(dbError(code))
      expect(error.reason).toBe(reason)
      expect(isTransientReason(error.reason)).toBe(transient)
      expect(error.description).toContain(`SQLSTATE ${code}`)
      // The same reasons for the object store: one mapping.
      expect(PgErrors.objectStoreError("get")(dbError(code)).reason).toBe(reason)
    })
  }

  it("client-side failures without SQLSTATE", () => {
    const refused = new SqlError({ cause: Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" }) })
    expect(PgErrors.reasonOf(refused)).toBe("Unavailable")
    expect(PgErrors.reasonOf(new SqlError({ cause: new Error("timeout exceeded when trying to connect") }))).toBe("Timeout")
    expect(PgErrors.reasonOf(new SqlError({ cause: new Error("Connection terminated unexpectedly") }))).toBe("Unavailable")
    expect(PgErrors.reasonOf(new SqlError({ cause: new Error("something else") }))).toBe("Unknown")
  })

  it("which failures a non-idempotent call may repeat", () => {
    const safe = (cause: unknown) => PgErrors.safeToRepeat(PgErrors.metadataError("commit")(cause))
    // The server answered with an error: the statement did not happen.
    expect(safe(dbError("40001"))).toBe(true)
    expect(safe(dbError("40P01"))).toBe(true)
    expect(safe(dbError("57014"))).toBe(true)
    expect(safe(dbError("53300"))).toBe(true)
    // No connection was made.
    expect(safe(new SqlError({ cause: Object.assign(new Error("refused"), { code: "ECONNREFUSED" }) }))).toBe(true)
    // The connection went away mid-call: the commit may have landed.
    expect(safe(new SqlError({ cause: new Error("Connection terminated unexpectedly") }))).toBe(false)
    expect(safe(new SqlError({ cause: Object.assign(new Error("reset"), { code: "ECONNRESET" }) }))).toBe(false)
    expect(safe(dbError("57P01"))).toBe(false)
    expect(safe(dbError("08006"))).toBe(false)
  })

  it("scrub removes URL passwords and registered secrets", () => {
    expect(PgErrors.scrub("at postgres://alice:pa55w0rd@db:5432/x failed")).toBe("at postgres://alice:***@db:5432/x failed")
    PgErrors.registerSecret("registered-secret-123")
    expect(PgErrors.scrub("value registered-secret-123 leaked")).toBe("value *** leaked")
    const cause = PgErrors.scrubCause(Object.assign(new Error("bad registered-secret-123"), { code: "28P01", input: "registered-secret-123" }))
    expect(inspect(cause, { depth: 5 })).not.toContain("registered-secret-123")
    expect((cause as { code?: string }).code).toBe("28P01")
  })
})

/** Every rendering of a failure someone might print or log. */
const renderings = (exit: Exit.Exit<unknown, unknown>): string => {
  if (Exit.isSuccess(exit)) return "success"
  const failure = Cause.squash(exit.cause)
  return [
    Cause.pretty(exit.cause),
    String(failure),
    JSON.stringify(failure),
    inspect(failure, { depth: 10 }),
    inspect(exit.cause, { depth: 10 }),
    inspect((failure as { cause?: unknown }).cause, { depth: 10, showHidden: true })
  ].join("\n")
}

/** Builds a KV store from `url`, logging the failure at every level into `logs`. */
const attempt = (url: string, logs: Array<string>) => {
  const logger = Logger.make(({ cause, message }) => {
    logs.push(`${inspect(message, { depth: 10 })} ${Cause.pretty(cause)}`)
  })
  return Effect.flatMap(KeyValueStore, (kv) => kv.get("k")).pipe(
    Effect.provide(PgLayers.live({ url: Redacted.make(url), connectTimeout: "3 seconds" })),
    Effect.tapErrorCause((cause) => Effect.logError("store failed", cause)),
    Effect.exit,
    Effect.provide(Layer.merge(Logger.replace(Logger.defaultLogger, logger), Logger.minimumLogLevel(LogLevel.All)))
  )
}

const closedPort = (): Promise<number> =>
  new Promise((resolve) => {
    const server = createServer()
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => resolve(typeof address === "object" && address !== null ? address.port : 1))
    })
  })

describe("passwords", () => {
  live("never appear in errors or logs: wrong password, unknown database, refused connection, malformed URL", () =>
    Effect.gen(function*() {
      const base = new URL(yield* Effect.promise(() => serverUrl()))
      const realPassword = decodeURIComponent(base.password)
      const secret = "Zebra-Quartz-9931-secret"
      const wrong = new URL(base.toString())
      wrong.password = secret
      const port = yield* Effect.promise(() => closedPort())
      const cases: ReadonlyArray<readonly [string, string, string, ReadonlyArray<string>]> = [
        // [what, url, password that must not leak, acceptable reasons]
        ["wrong password", wrong.toString(), secret, realPassword === "" ? ["Unknown", "PermissionDenied"] : ["PermissionDenied"]],
        ["unknown database", withDatabase(base.toString(), "no_such_database_here"), realPassword, ["Unknown"]],
        ["refused connection", `postgres://postgres:${secret}@127.0.0.1:${port}/postgres`, secret, ["Unavailable"]],
        ["malformed URL", `postgres://postgres:${secret}@[::1/x`, secret, ["Unknown", "Unavailable", "InvalidInput"]]
      ]
      for (const [what, url, password, reasons] of cases) {
        const logs: Array<string> = []
        const exit = yield* attempt(url, logs)
        expect(Exit.isFailure(exit), what).toBe(true)
        const text = renderings(exit)
        if (password !== "") {
          expect(text.includes(password), `${what}: error text contains the password:\n${text}`).toBe(false)
          expect(logs.join("\n").includes(password), `${what}: logs contain the password`).toBe(false)
        }
        // It failed for the right reason, as a typed MetadataError, not as a defect.
        const failure = Cause.failureOption((exit as Exit.Failure<unknown, unknown>).cause)
        expect(failure._tag, what).toBe("Some")
        const error = (failure as { value: { _tag: string; reason: string } }).value
        expect(error._tag, what).toBe("MetadataError")
        expect(reasons, `${what}: ${error.reason}`).toContain(error.reason)
        expect(logs.length, what).toBeGreaterThan(0)
      }
    }), 60_000)
})
