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
