/**
 * Exit codes of the `graviton` command and the mapping from every expected
 * failure to one of them plus a one-line message. Expected failures (typed
 * storage errors, bad input, usage errors) never print a stack trace; only
 * defects (bugs) do. The table is documented in docs/cli.md.
 */
import * as ValidationError from "@effect/cli/ValidationError"
import * as ConfigError from "effect/ConfigError"
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import type { ErrorReason, InvalidValue, StorageError } from "../core/Errors.js"
import { isStorageError } from "../core/Errors.js"

/** Every exit code the CLI uses. */
export const ExitCode = {
  /** The command did what was asked. */
  Ok: 0,
  /** An unexpected internal error (a bug): the only case that prints a stack trace. */
  Internal: 1,
  /** Bad command line or bad input: unknown option, malformed key, unreadable input file. */
  Usage: 2,
  /** The key (or the blob's bytes) is not stored. */
  NotFound: 3,
  /** Stored bytes do not match their key (`get`, `cat`, `verify`). */
  Corrupted: 4,
  /** The storage failed or is unreachable: locked, unavailable, permission denied, out of space ... */
  Storage: 5,
  /** Interrupted by SIGINT or SIGTERM. */
  Interrupted: 130
} as const
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode]

/** A failure the CLI itself detected, already phrased for people. */
export class CliFailure extends Schema.TaggedError<CliFailure>("graviton/CliFailure")("CliFailure", {
  code: Schema.Number,
  description: Schema.String
}) {
  override get message(): string {
    return this.description
  }
}

/** Builds a CliFailure. */
export const fail = (code: ExitCode, description: string): CliFailure => new CliFailure({ code, description })

/**
 * Raised after the command line parser has already printed its own message:
 * only the exit code remains to be set.
 */
export class AlreadyReported extends Schema.TaggedError<AlreadyReported>("graviton/AlreadyReported")(
  "AlreadyReported",
  { code: Schema.Number }
) {}

/** Exit code for a storage reason. */
export const codeOfReason = (reason: ErrorReason): ExitCode => {
  switch (reason) {
    case "InvalidInput":
      return ExitCode.Usage
    case "NotFound":
      return ExitCode.NotFound
    case "Corrupted":
      return ExitCode.Corrupted
    default:
      return ExitCode.Storage
  }
}

const phrases: Record<ErrorReason, string> = {
  NotFound: "not found",
  AlreadyExists: "already exists",
  Conflict: "conflicting concurrent change",
  InvalidInput: "invalid input",
  Corrupted: "corrupted data",
  Unavailable: "storage unavailable",
  Throttled: "storage is throttling requests",
  Timeout: "storage timed out",
  PermissionDenied: "permission denied",
  Unsupported: "not supported by this store",
  Unknown: "storage failure"
}

/** The words shown for a reason. */
export const phraseOf = (reason: ErrorReason): string => phrases[reason]

const describeStorage = (e: StorageError): string =>
  `${phrases[e.reason]}: ${e.description ?? `${e.backend}.${e.method} failed`} (${e.backend}.${e.method})`

const isCoreInvalidValue = (u: unknown): u is InvalidValue =>
  Predicate.isTagged(u, "InvalidValue") && Predicate.hasProperty(u, "kind") && Predicate.hasProperty(u, "description")

/** One line for a configuration error (bad or missing environment variable). */
export const describeConfigError = (error: ConfigError.ConfigError): string =>
  ConfigError.reduceWithContext(error, undefined, {
    andCase: (_, left: string, right: string) => `${left}; ${right}`,
    orCase: (_, left: string, right: string) => `${left}, or ${right}`,
    invalidDataCase: (_, path, message) => `${path.join(".")}: ${message}`,
    // The message of a missing secret is redacted: say what is missing instead.
    missingDataCase: (_, path) => `${path.join(".")} is not set`,
    sourceUnavailableCase: (_, path, message) => `${path.join(".")}: ${message}`,
    unsupportedCase: (_, path, message) => `${path.join(".")}: ${message}`
  })

/** What the CLI prints and returns for an expected failure. */
export interface Classified {
  readonly code: ExitCode
  /** One line for stderr; None when the message was already printed. */
  readonly message: string | undefined
}

/**
 * Classifies an expected failure; undefined for anything else (a defect,
 * or an error type the CLI does not know, which is then reported as internal).
 */
export const classify = (error: unknown): Classified | undefined => {
  // @effect/cli's own ValidationError also uses the tag "InvalidValue": test it first.
  if (ValidationError.isValidationError(error)) {
    // The parser prints its message (or the help text) before failing.
    return { code: ExitCode.Usage, message: undefined }
  }
  if (Predicate.isTagged(error, "AlreadyReported")) {
    return { code: (error as AlreadyReported).code as ExitCode, message: undefined }
  }
  if (Predicate.isTagged(error, "CliFailure")) {
    const e = error as CliFailure
    return { code: e.code as ExitCode, message: e.description }
  }
  if (Predicate.isTagged(error, "IncompleteUpload")) {
    // Not finished yet: like a conflicting change, the same call can succeed later.
    return { code: codeOfReason("Conflict"), message: (error as unknown as Error).message }
  }
  if (isStorageError(error)) {
    return { code: codeOfReason(error.reason), message: describeStorage(error) }
  }
  if (ConfigError.isConfigError(error)) {
    return { code: ExitCode.Usage, message: `invalid configuration: ${describeConfigError(error)}` }
  }
  if (isCoreInvalidValue(error)) {
    return { code: ExitCode.Usage, message: `invalid input: ${error.message}` }
  }
  return undefined
}
