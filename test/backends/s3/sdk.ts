/**
 * Test tools that work through the AWS SDK's middleware stack of the
 * adapter's own client: a spy recording every command as sent, and fault
 * injection that answers chosen requests with an S3 error response instead
 * of sending them (the SDK then parses it like a real one, so the adapter's
 * error mapping and retries see exactly what a server failure looks like).
 * Both are scoped: the middleware is removed when the scope closes.
 */
import type { S3Client } from "@aws-sdk/client-s3"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { randomUUID } from "node:crypto"
import { Readable } from "node:stream"

/** One command as the adapter sent it. */
export interface Call {
  /** "PutObject", "UploadPart" ... */
  readonly command: string
  readonly input: Readonly<Record<string, unknown>>
}

/** What the spy saw. */
export interface Spy {
  readonly calls: ReadonlyArray<Call>
  /** Commands in order. */
  readonly commands: () => ReadonlyArray<string>
  /** How many `command` calls (matching `where`) were sent. */
  readonly count: (command: string, where?: (input: Readonly<Record<string, unknown>>) => boolean) => number
  /**
   * How many distinct values of `field` the `command` calls carried: the
   * requests a retry sent again count once (an abort retried after a timeout
   * on a loaded machine is still one upload aborted).
   */
  readonly distinct: (command: string, field: string) => number
  /** Most `command` requests that were in flight at once. */
  readonly maxInFlight: (command: string) => number
  /** Forgets what was seen so far. */
  readonly reset: () => void
}

type Middleware = Parameters<S3Client["middlewareStack"]["add"]>[0]

const scopedMiddleware = (
  client: S3Client,
  middleware: Middleware,
  options: { readonly step: "initialize" | "finalizeRequest" | "deserialize"; readonly priority: "high" | "low" }
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const name = `graviton-test-${randomUUID()}`
      // The stack's overloads are per step; both steps take the same handler shape at run time.
      const add = client.middlewareStack.add as unknown as (m: Middleware, o: Record<string, unknown>) => void
      add.call(client.middlewareStack, middleware, { ...options, name })
      return name
    }),
    (name) => Effect.sync(() => client.middlewareStack.remove(name))
  ).pipe(Effect.asVoid)

const commandOf = (context: { readonly commandName?: string }) => (context.commandName ?? "").replace(/Command$/, "")

/** Records every command sent through `client` while the scope is open. */
export const spy = (client: S3Client): Effect.Effect<Spy, never, Scope.Scope> =>
  Effect.suspend(() => {
    let calls: Array<Call> = []
    const inFlight = new Map<string, number>()
    const peak = new Map<string, number>()
    const middleware: Middleware = (next, context) => async (args) => {
      const command = commandOf(context)
      calls.push({ command, input: { ...(args.input as Record<string, unknown>) } })
      const now = (inFlight.get(command) ?? 0) + 1
      inFlight.set(command, now)
      peak.set(command, Math.max(peak.get(command) ?? 0, now))
      try {
        return await next(args)
      } finally {
        inFlight.set(command, (inFlight.get(command) ?? 1) - 1)
      }
    }
    const view: Spy = {
      get calls() {
        return calls
      },
      commands: () => calls.map((c) => c.command),
      count: (command, where) => calls.filter((c) => c.command === command && (where === undefined || where(c.input))).length,
      distinct: (command, field) => new Set(calls.filter((c) => c.command === command).map((c) => c.input[field])).size,
      maxInFlight: (command) => peak.get(command) ?? 0,
      reset: () => {
        calls = []
        peak.clear()
      }
    }
    return Effect.as(scopedMiddleware(client, middleware, { step: "initialize", priority: "high" }), view)
  })

/** Headers of every request as sent (signed), in order, while the scope is open. */
export const sentHeaders = (
  client: S3Client
): Effect.Effect<Array<{ readonly command: string; readonly headers: Readonly<Record<string, string>> }>, never, Scope.Scope> =>
  Effect.suspend(() => {
    const sent: Array<{ readonly command: string; readonly headers: Readonly<Record<string, string>> }> = []
    // Inside the signing middleware: the request is complete.
    const middleware: Middleware = (next, context) => async (args) => {
      const request = (args as { readonly request?: { readonly headers?: Record<string, string> } }).request
      sent.push({ command: commandOf(context), headers: { ...request?.headers } })
      return next(args)
    }
    return Effect.as(scopedMiddleware(client, middleware, { step: "finalizeRequest", priority: "low" }), sent)
  })

/** A failure to answer in place of the server. */
export interface Fault {
  /** Command to fail, e.g. "UploadPart". */
  readonly command: string
  /** Which of its requests (default: all). */
  readonly where?: (input: Readonly<Record<string, unknown>>) => boolean
  /** How many matching requests fail (default 1; Infinity = every one). */
  readonly times?: number
  readonly status: number
  /** S3 error code in the XML body, e.g. "ServiceUnavailable", "AccessDenied". */
  readonly code: string
}

/** Whether a fault fired, and how often. */
export interface Injected {
  readonly fired: () => number
}

/** Answers matching requests with `fault` instead of sending them, while the scope is open. */
export const inject = (client: S3Client, fault: Fault): Effect.Effect<Injected, never, Scope.Scope> =>
  Effect.suspend(() => {
    let remaining = fault.times ?? 1
    let fired = 0
    // Deserialize step, low priority: inside the SDK's deserializer, in place of the HTTP handler.
    const middleware: Middleware = (next, context) => async (args) => {
      const input = (args.input ?? {}) as Record<string, unknown>
      if (commandOf(context) === fault.command && remaining > 0 && (fault.where === undefined || fault.where(input))) {
        remaining--
        fired++
        const xml = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${fault.code}</Code>` +
          `<Message>injected by the test</Message><RequestId>fault</RequestId></Error>`
        return {
          output: undefined as never,
          response: {
            statusCode: fault.status,
            reason: "injected",
            headers: { "content-type": "application/xml", "x-amz-request-id": "fault" },
            body: Readable.from([Buffer.from(xml)])
          }
        }
      }
      return next(args)
    }
    return Effect.as(scopedMiddleware(client, middleware, { step: "deserialize", priority: "low" }), { fired: () => fired })
  })

/** Which responses `truncateBody` cuts, and where. */
export interface Truncation {
  /** Command whose response body is cut, e.g. "GetObject". */
  readonly command: string
  /** Bytes of the body that get through; the body then ends as if the connection closed cleanly. */
  readonly keep: number
  /** How many matching responses are cut (default 1; Infinity = every one). */
  readonly times?: number
}

/** The first `keep` bytes of `source`, then the end (the rest is never read; the source is destroyed). */
async function* firstBytes(source: AsyncIterable<Uint8Array>, keep: number): AsyncGenerator<Uint8Array> {
  let left = keep
  if (left <= 0) return
  for await (const chunk of source) {
    const piece = chunk.subarray(0, left)
    left -= piece.length
    yield piece
    if (left <= 0) return
  }
}

/**
 * Lets matching responses through with their headers intact but their body
 * cut after `keep` bytes, while the scope is open: what a proxy or a server
 * that drops the connection mid-body without an error looks like.
 */
export const truncateBody = (client: S3Client, truncation: Truncation): Effect.Effect<Injected, never, Scope.Scope> =>
  Effect.suspend(() => {
    let remaining = truncation.times ?? 1
    let fired = 0
    // Deserialize step, low priority: wraps the HTTP handler, before the SDK parses the response.
    const middleware: Middleware = (next, context) => async (args) => {
      const result = await next(args)
      const response = result.response as { body?: unknown }
      if (commandOf(context) === truncation.command && remaining > 0 && response.body instanceof Readable) {
        remaining--
        fired++
        response.body = Readable.from(firstBytes(response.body, truncation.keep), { objectMode: false })
      }
      return result
    }
    return Effect.as(scopedMiddleware(client, middleware, { step: "deserialize", priority: "low" }), { fired: () => fired })
  })
