/** Key arguments: parsing the text a person typed, and the not-found failure. */
import * as Args from "@effect/cli/Args"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as BinaryKey from "../core/BinaryKey.js"
import { type BlobError, type InvalidValue, invalidValue } from "../core/Errors.js"
import type { BlobStat } from "../core/Models.js"
import { BlobStore } from "../ports/BlobStore.js"
import { type CliFailure, ExitCode, fail } from "./exitCodes.js"

/** The `<key>` positional argument (checked by `parse`, so that a bad key gets our message and exit code). */
export const arg = Args.text({ name: "key" }).pipe(
  Args.withDescription("A content key, <algorithm>:<hex digest>:<length>, as printed by put")
)

/** Parses key text; malformed text fails with the core InvalidValue (exit code 2), quoting the text as typed. */
export const parse = (text: string): Effect.Effect<BinaryKey.BinaryKey, InvalidValue> => {
  const trimmed = text.trim()
  return Either.match(BinaryKey.parse(trimmed), {
    // BinaryKey.parse re-renders the parts it parsed: a length past 2^53 would be shown rounded.
    onLeft: (e) => {
      const length = trimmed.split(":")[2] ?? ""
      const tooLarge = /^\d+$/.test(length) && !Number.isSafeInteger(Number(length))
      return Effect.fail(invalidValue(
        "BinaryKey",
        trimmed,
        tooLarge ? `the length ${length} is larger than any blob (at most ${Number.MAX_SAFE_INTEGER} bytes)` : e.description
      ))
    },
    onRight: Effect.succeed
  })
}

/** The failure for a key that is not stored. */
export const notFound = (key: BinaryKey.BinaryKey): CliFailure =>
  fail(ExitCode.NotFound, `not found: no blob is stored under ${BinaryKey.render(key)}`)

/** Stat of a stored key; a missing key fails with NotFound (exit code 3). */
export const statOrFail = (key: BinaryKey.BinaryKey): Effect.Effect<BlobStat, BlobError | CliFailure, BlobStore> =>
  Effect.flatMap(BlobStore, (store) => store.stat(key)).pipe(
    Effect.flatMap(Option.match({ onNone: () => Effect.fail(notFound(key)), onSome: Effect.succeed }))
  )
