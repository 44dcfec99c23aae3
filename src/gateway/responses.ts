/**
 * How the gateway answers when something goes wrong: one error type
 * (`HttpFailure`, a status and a sentence), the one mapping from storage
 * reasons to statuses, and the JSON error body. Messages come from the
 * store's errors, which never carry secrets.
 */
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import type { ErrorReason } from "../core/Errors.js"

/** A request the gateway answers with `status` (and `headers`) instead of what was asked. */
export class HttpFailure extends Data.TaggedError("HttpFailure")<{
  readonly status: number
  readonly message: string
  readonly headers?: Readonly<Record<string, string>> | undefined
}> {}

/** Fails with an HttpFailure. */
export const fail = (status: number, message: string, headers?: Readonly<Record<string, string>>) =>
  Effect.fail(new HttpFailure({ status, message, headers }))

/** The status for a storage error's reason. */
export const statusOf = (reason: ErrorReason): number => {
  switch (reason) {
    case "NotFound":
      return 404
    case "AlreadyExists":
    case "Conflict":
      return 409
    case "InvalidInput":
      return 400
    case "PermissionDenied":
      return 403
    case "Throttled":
      return 429
    case "Unavailable":
      return 503
    case "Timeout":
      return 504
    case "Unsupported":
      return 501
    case "Corrupted":
    case "Unknown":
      return 500
  }
}

/** Any error with a storage reason (BlobError, IncompleteUpload, SourceChanged ...) as an HttpFailure. */
export const fromReason = (e: { readonly reason: ErrorReason; readonly message: string }): HttpFailure =>
  new HttpFailure({ status: statusOf(e.reason), message: e.message })

/** The JSON error response of a failure. */
export const toResponse = (f: HttpFailure): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.unsafeJson(
    { error: f.message, status: f.status },
    { status: f.status, headers: { "cache-control": "no-store", ...f.headers } }
  )
