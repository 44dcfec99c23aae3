/**
 * Capability records shared by every conformance suite.
 *
 * A backend (or the test server it runs against) declares, per optional
 * feature, whether the suite may rely on it. A feature that is not supported
 * must say why: the suite still registers the test, as a skipped test whose
 * title carries the reason, so every skip is visible in the vitest output:
 *
 *   ↓ ObjectStore[s3] > put: contentType round trip [skipped: s3rver drops Content-Type]
 *
 * Usage inside a suite:
 *
 * ```ts
 * import { gate, unsupported, type Capabilities, type Capability } from "./capabilities.js"
 *
 * export interface FooCapabilities extends Capabilities {
 *   readonly conditionalWrites?: Capability
 * }
 * // runs the test when supported, else registers it skipped with the reason
 * gate(it.effect, capabilities.skipAll, capabilities.conditionalWrites)("put: If-None-Match", () => Effect.gen(...))
 * ```
 *
 * and in a backend's test file:
 *
 * ```ts
 * testFoo("s3rver", layer, { conditionalWrites: unsupported("s3rver ignores If-None-Match") })
 * ```
 */
import type { Vitest } from "@effect/vitest"

/** A feature a backend lacks, with the reason shown next to every test it skips. */
export interface Unsupported {
  readonly _tag: "Unsupported"
  readonly reason: string
}

/**
 * Whether a feature is available: `true` (or absent: the suite assumes
 * support, so a forgotten flag fails loudly instead of skipping silently),
 * or `unsupported(reason)`.
 */
export type Capability = true | Unsupported

/** Base of every suite's capability record; suites extend it with their own flags. */
export interface Capabilities {
  /**
   * Skips the whole suite with this reason (e.g. "no PostgreSQL server on
   * this machine"), still listing every test it would have run.
   */
  readonly skipAll?: string | undefined
}

/** Declares a feature unsupported, with the reason shown in skipped test titles. */
export const unsupported = (reason: string): Unsupported => ({ _tag: "Unsupported", reason })

/** True when the capability is available (absent counts as available). */
export const isSupported = (capability: Capability | undefined): boolean =>
  capability === undefined || capability === true

/**
 * Why a test must be skipped: the reason of an unsupported capability, the
 * string itself for a plain reason (such as `skipAll`), undefined otherwise.
 */
export const skipReason = (condition: Capability | string | undefined): string | undefined =>
  condition === undefined || condition === true
    ? undefined
    : typeof condition === "string"
    ? condition
    : condition.reason

/** The title a skipped test is registered under: `name [skipped: reason]`. */
export const skippedTitle = (name: string, reason: string): string => `${name} [skipped: ${reason}]`

/**
 * Runs the test with `tester` when no condition asks for a skip; otherwise
 * registers it skipped, its title carrying the first reason. A condition is a
 * capability, or a string that is itself a skip reason (e.g. `skipAll`).
 */
export const gate = <R>(
  tester: Vitest.Tester<R>,
  ...conditions: ReadonlyArray<Capability | string | undefined>
): Vitest.Test<R> => {
  const reason = conditions.map(skipReason).find((r) => r !== undefined)
  return reason === undefined ? tester : (name, self, timeout) => tester.skip(skippedTitle(name, reason), self, timeout)
}

/** Alias of `gate` under the name other suites may look for. */
export const skipUnless = gate
