/**
 * Bearer tokens. Every configured token is compared with the presented one,
 * each through a sha256 digest and `timingSafeEqual`, with no early exit:
 * the time taken tells nothing about which token, or how much of one,
 * matched. Tokens are `Redacted` and unwrapped only here.
 */
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { createHash, timingSafeEqual } from "node:crypto"
import type { Scope, Settings } from "./GatewayConfig.js"
import { HttpFailure } from "./responses.js"

const digest = (text: string): Buffer => createHash("sha256").update(text, "utf8").digest()

/** Authorization settings with the tokens' digests computed once. */
export interface Auth {
  readonly anonymousRead: boolean
  readonly tokens: ReadonlyArray<{ readonly digest: Buffer; readonly scopes: ReadonlySet<Scope> }>
}

/** Prepares the tokens of `settings`. */
export const make = (settings: Settings): Auth => ({
  anonymousRead: settings.anonymousRead,
  tokens: settings.tokens.map((t) => ({ digest: digest(Redacted.value(t.token)), scopes: t.scopes }))
})

const challenge = (error?: string) => ({
  "www-authenticate": error === undefined ? `Bearer realm="graviton"` : `Bearer realm="graviton", error="${error}"`
})

/** The scopes of the presented token (empty set when none matches). */
const scopesOf = (auth: Auth, presented: string): ReadonlySet<Scope> => {
  const given = digest(presented)
  const scopes = new Set<Scope>()
  for (const t of auth.tokens) {
    // Every token is compared, whatever matched before.
    if (timingSafeEqual(given, t.digest)) for (const s of t.scopes) scopes.add(s)
  }
  return scopes
}

/**
 * Succeeds when the request may do what `scope` allows: 401 without a token
 * (unless an anonymous read is allowed) or with an unknown one, 403 with a
 * token that lacks the scope.
 */
export const require = (auth: Auth, request: HttpServerRequest.HttpServerRequest, scope: Scope): Effect.Effect<void, HttpFailure> =>
  Effect.suspend(() => {
    const header = request.headers["authorization"]
    if (header === undefined || header.length === 0) {
      if (scope === "read" && auth.anonymousRead) return Effect.void
      return Effect.fail(new HttpFailure({ status: 401, message: "a bearer token is required", headers: challenge() }))
    }
    const m = /^Bearer[ ]+([\x21-\x7e]+)[ ]*$/i.exec(header)
    if (m === null) {
      return Effect.fail(new HttpFailure({ status: 401, message: "the Authorization header is not a bearer token", headers: challenge("invalid_request") }))
    }
    const scopes = scopesOf(auth, m[1]!)
    if (scopes.size === 0) {
      return Effect.fail(new HttpFailure({ status: 401, message: "the bearer token is not valid", headers: challenge("invalid_token") }))
    }
    if (!scopes.has(scope)) {
      return Effect.fail(new HttpFailure({ status: 403, message: `the token does not allow ${scope}`, headers: challenge("insufficient_scope") }))
    }
    return Effect.void
  })
