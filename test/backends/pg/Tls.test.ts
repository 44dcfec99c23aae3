/**
 * TLS to PostgreSQL, against the test server with TLS turned on by the
 * harness (test/harness/pgTls.ts: a self-signed CA it generates with
 * openssl). The sslmode guidance of docs/backends/postgres.md comes from
 * these cases:
 * - sslmode=verify-full with sslrootcert = the CA: connects over TLS;
 * - sslmode=require with sslrootcert: node-postgres verifies as verify-full does;
 * - sslmode=require without a CA: refused (node-postgres, unlike libpq,
 *   verifies the certificate for `require`), unless uselibpqcompat=true asks
 *   for libpq's meaning (encrypted, not verified);
 * - a CA that did not sign the server's certificate: the layer fails to
 *   build with a MetadataError (PermissionDenied, not retried) that says
 *   what to check, and no password anywhere in it.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { inspect } from "node:util"
import * as PgErrors from "../../../src/backends/pg/PgErrors.js"
import * as PgLayers from "../../../src/backends/pg/PgLayers.js"
import { MetadataError } from "../../../src/core/Errors.js"
import { KeyValueStore } from "../../../src/ports/KeyValueStore.js"
import { enableTls, type PgTls } from "../../harness/pgTls.js"
import { createDatabase, dropDatabase, serverUrl, skipReason, usePostgres } from "../../harness/postgres.js"

usePostgres()

const pgSkip = skipReason()

describe.skipIf(pgSkip !== undefined)(`PostgreSQL over TLS${pgSkip === undefined ? "" : ` (skipped: ${pgSkip})`}`, () => {
  let tls: PgTls | undefined
  let tlsSkip: string | undefined
  let db: { readonly url: string; readonly name: string } | undefined

  const setup = async () => {
    if (tls !== undefined || tlsSkip !== undefined) return
    const enabled = await enableTls(await serverUrl())
    if (typeof enabled === "string") tlsSkip = enabled
    else tls = enabled
    db = await createDatabase("tls")
  }

  afterAll(async () => {
    if (db !== undefined) await dropDatabase(db.name).catch(() => undefined)
    await tls?.disable()
  })

  /** The database's URL with the given query parameters. */
  const urlWith = (params: Record<string, string>): string => {
    const url = new URL(db!.url)
    for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v)
    return url.toString()
  }

  /** Builds the layer at `url`, writes and reads a key, and says whether its session is encrypted. */
  const roundTrip = (url: string) =>
    Effect.gen(function*() {
      const kv = yield* KeyValueStore
      yield* kv.put("tls/probe", new Uint8Array([1, 2, 3]))
      const read = yield* kv.get("tls/probe")
      const pool = yield* PgLayers.PgPool
      const { rows } = yield* Effect.promise(() => pool.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"))
      return { read: Option.map(read, (v) => [...v]), ssl: rows[0]?.ssl as boolean }
    }).pipe(Effect.provide(PgLayers.live({ url: Redacted.make(url), migrate: true, poolSize: 2 }) as Layer.Layer<KeyValueStore | PgLayers.PgPool, MetadataError>))

  const withTls = (name: string, body: (t: PgTls) => Effect.Effect<void, unknown>) =>
    it.live(name, (ctx) =>
      Effect.gen(function*() {
        yield* Effect.promise(setup)
        if (tlsSkip !== undefined) return ctx.skip(`skipped: ${tlsSkip}`)
        yield* body(tls!)
      }), 120_000)

  withTls("sslmode=verify-full with the CA as sslrootcert: connected, encrypted", (t) =>
    Effect.gen(function*() {
      const result = yield* roundTrip(urlWith({ sslmode: "verify-full", sslrootcert: t.caFile }))
      expect(result).toEqual({ read: Option.some([1, 2, 3]), ssl: true })
    }))

  withTls("sslmode=require with sslrootcert: connected, encrypted (node-postgres verifies as for verify-full)", (t) =>
    Effect.gen(function*() {
      const result = yield* roundTrip(urlWith({ sslmode: "require", sslrootcert: t.caFile }))
      expect(result).toEqual({ read: Option.some([1, 2, 3]), ssl: true })
    }))

  withTls("sslmode=require&uselibpqcompat=true without a CA: libpq's meaning, encrypted but not verified", () =>
    Effect.gen(function*() {
      const result = yield* roundTrip(urlWith({ sslmode: "require", uselibpqcompat: "true" }))
      expect(result).toEqual({ read: Option.some([1, 2, 3]), ssl: true })
    }))

  const refused = (url: string, password: string) =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(roundTrip(url))
      expect(Exit.isFailure(exit)).toBe(true)
      const error = Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined
      expect(error).toBeInstanceOf(MetadataError)
      const e = error as MetadataError
      expect({ reason: e.reason, method: e.method, transient: e.isTransient }).toEqual({
        reason: "PermissionDenied",
        method: "connect",
        transient: false
      })
      expect(e.description).toMatch(/^TLS: the server's certificate was refused \(.+\); check sslrootcert/)
      // Nowhere: not in the message, the description, the cause chain, nor the printed error.
      for (const text of [e.message, e.description, inspect(e, { depth: 10 }), JSON.stringify(e), String(Cause.pretty(Exit.isFailure(exit) ? exit.cause : Cause.empty))]) {
        expect(text).not.toContain(password)
      }
      return e
    })

  withTls("a CA that did not sign the server's certificate: PermissionDenied at connect, saying what to check, no password", (t) =>
    Effect.gen(function*() {
      const password = decodeURIComponent(new URL(db!.url).password)
      expect(password.length).toBeGreaterThan(0)
      const e = yield* refused(urlWith({ sslmode: "verify-full", sslrootcert: t.wrongCaFile }), password)
      expect(e.description).toContain("UNABLE_TO_VERIFY_LEAF_SIGNATURE")
    }))

  withTls("sslmode=require with no CA at all: refused too (the server's CA is not a public one)", () =>
    Effect.gen(function*() {
      const password = decodeURIComponent(new URL(db!.url).password)
      yield* refused(urlWith({ sslmode: "require" }), password)
    }))
})

describe("TLS failures of the driver, mapped", () => {
  it("a refused certificate is PermissionDenied (not retried); a server without TLS is Unsupported", () => {
    const refused = PgErrors.metadataError("connect")(Object.assign(new Error("self-signed certificate in certificate chain"), { code: "SELF_SIGNED_CERT_IN_CHAIN" }))
    expect([refused.reason, refused.isTransient]).toEqual(["PermissionDenied", false])
    expect(refused.description).toContain("check sslrootcert")
    const altName = PgErrors.metadataError("connect")(Object.assign(new Error("Hostname/IP does not match certificate's altnames"), { code: "ERR_TLS_CERT_ALTNAME_INVALID" }))
    expect(altName.reason).toBe("PermissionDenied")
    const plain = PgErrors.metadataError("connect")(new Error("The server does not support SSL connections"))
    expect([plain.reason, plain.isTransient]).toEqual(["Unsupported", false])
  })
})
