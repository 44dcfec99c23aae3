/**
 * A fault-injecting HTTP proxy in front of a harness S3 server (test/harness/s3.ts).
 *
 * The S3 backend under test is pointed at the proxy's endpoint with its real
 * configuration; the proxy forwards every request to the server unchanged
 * (headers included, so SigV4 signatures still verify) and, where a rule the
 * test added matches the request, injects a fault instead:
 *
 * - `Error`: an S3 error response (503 `ServiceUnavailable`, 503 `SlowDown`,
 *   403 `AccessDenied` ...) with the XML body S3 sends; never forwarded.
 * - `ResetRequest`: the connection is destroyed once `after` bytes of the
 *   request body arrived; never forwarded (the server saw nothing).
 * - `ResetResponse`: forwarded; the connection is destroyed after the
 *   response headers and `after` bytes of its body (a body cut on the wire:
 *   the client knows, its Content-Length was not reached).
 * - `DropResponse`: forwarded and answered in full by the server, then the
 *   connection is destroyed before a byte of the answer reaches the client
 *   (a CompleteMultipartUpload that completed, unheard).
 * - `Refuse`: the proxy stops listening and destroys every open connection,
 *   this request's included, so new connections are refused; it listens
 *   again on the same port after `ms`, or when the test calls `reopen`.
 * - `Short`: forwarded; the body ends cleanly after `keep` bytes, with
 *   Content-Length saying so (Content-Range left as the server sent it): a
 *   truncation only a length or content check can catch.
 * - `FlipBit`: forwarded; the lowest bit of the body byte at `at` is flipped.
 *
 * Bodies are streamed in both directions (with backpressure), never
 * buffered whole. Rules match on the S3 operation, classified from the
 * method, path and query of a path-style request, and optionally a
 * predicate (`part(2)`: the second part of an upload). Each rule fires
 * `times` times (default 1); the proxy counts what each rule and each kind of
 * fault injected, and every request it saw.
 *
 * This module does not import vitest; `scoped` and `rule` wrap it for Effect tests.
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as http from "node:http"
import * as https from "node:https"
import type { AddressInfo, Socket } from "node:net"

/** The S3 operations the proxy tells apart. */
export type Operation =
  | "PutObject"
  | "UploadPart"
  | "UploadPartCopy"
  | "CopyObject"
  | "CreateMultipartUpload"
  | "CompleteMultipartUpload"
  | "AbortMultipartUpload"
  | "GetObject"
  | "HeadObject"
  | "DeleteObject"
  | "DeleteObjects"
  | "ListObjectsV2"
  | "ListObjects"
  | "ListMultipartUploads"
  | "ListParts"
  | "CreateBucket"
  | "HeadBucket"
  | "DeleteBucket"
  | "Other"

/** A request as the proxy classified it. */
export interface Request {
  readonly operation: Operation
  readonly method: string
  readonly bucket: string
  readonly key: string
  readonly query: URLSearchParams
}

/** What to do to a matching request. */
export type Fault =
  | { readonly _tag: "Error"; readonly status: number; readonly code: string }
  | { readonly _tag: "ResetRequest"; readonly after?: number | undefined }
  | { readonly _tag: "ResetResponse"; readonly after: number }
  | { readonly _tag: "DropResponse" }
  | { readonly _tag: "Refuse"; readonly ms?: number | undefined }
  | { readonly _tag: "Short"; readonly keep: number }
  | { readonly _tag: "FlipBit"; readonly at: number }

/** The kinds of fault, for counts. */
export type FaultKind = Fault["_tag"]

/** When to inject a fault. */
export interface Rule {
  readonly operation: Operation | ReadonlyArray<Operation>
  /** Which of those requests (default: every one). */
  readonly where?: ((request: Request) => boolean) | undefined
  /** How many matching requests get the fault (default 1; Infinity = every one). */
  readonly times?: number | undefined
  readonly fault: Fault
}

/** A rule in force. */
export interface Installed {
  /** How many requests it injected its fault into so far. */
  readonly fired: () => number
  /** Takes the rule out (requests in flight keep their fault). */
  readonly remove: () => void
}

/** A running proxy. */
export interface Proxy {
  /** `http://127.0.0.1:<port>`: the endpoint to give the S3 client. */
  readonly endpoint: string
  readonly add: (rule: Rule) => Installed
  /** Takes every rule out. */
  readonly clear: () => void
  /** Requests seen (faulted ones included) of `operation`, matching `where`. */
  readonly seen: (operation: Operation, where?: (request: Request) => boolean) => number
  /** Faults injected so far, by kind. */
  readonly injected: () => Readonly<Record<FaultKind, number>>
  /** Whether the proxy is listening (false during a `Refuse`). */
  readonly listening: () => boolean
  /** Listens again now after a `Refuse` (resolves once it does; at once if it never stopped). */
  readonly reopen: () => Promise<void>
  readonly close: () => Promise<void>
}

/** `where` for part `n` of a multipart upload (UploadPart, UploadPartCopy). */
export const part = (n: number) => (request: Request): boolean => request.query.get("partNumber") === String(n)

/** An S3 error body, as S3 sends it. */
export const errorXml = (code: string): string =>
  `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>injected by the test proxy</Message>` +
  `<RequestId>graviton-proxy</RequestId></Error>`

/** Classifies a path-style S3 request (`/bucket/key?query`). */
export const classify = (method: string, url: string, copySource: boolean): Request => {
  const u = new URL(url, "http://proxy.invalid")
  const [first = "", ...rest] = u.pathname.split("/").slice(1)
  const bucket = decodeURIComponent(first)
  const key = rest.map((s) => decodeURIComponent(s)).join("/")
  const q = u.searchParams
  const operation = ((): Operation => {
    if (bucket === "") return "Other"
    if (key === "") {
      switch (method) {
        case "GET":
          return q.has("uploads") ? "ListMultipartUploads" : q.get("list-type") === "2" ? "ListObjectsV2" : "ListObjects"
        case "PUT":
          return "CreateBucket"
        case "HEAD":
          return "HeadBucket"
        case "DELETE":
          return "DeleteBucket"
        case "POST":
          return q.has("delete") ? "DeleteObjects" : "Other"
      }
      return "Other"
    }
    switch (method) {
      case "PUT":
        return q.has("uploadId") ? (copySource ? "UploadPartCopy" : "UploadPart") : copySource ? "CopyObject" : "PutObject"
      case "POST":
        return q.has("uploads") ? "CreateMultipartUpload" : q.has("uploadId") ? "CompleteMultipartUpload" : "Other"
      case "DELETE":
        return q.has("uploadId") ? "AbortMultipartUpload" : "DeleteObject"
      case "GET":
        return q.has("uploadId") ? "ListParts" : "GetObject"
      case "HEAD":
        return "HeadObject"
    }
    return "Other"
  })()
  return { operation, method, bucket, key, query: q }
}

/** Headers of one hop, not forwarded (Node frames each side itself). */
const HOP_BY_HOP = new Set(["connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"])

interface Active {
  readonly rule: Rule
  remaining: number
  fired: number
}

/** Starts a proxy on a free loopback port, forwarding to `target` (e.g. a harness server's endpoint). */
export const start = async (target: string): Promise<Proxy> => {
  const upstream = new URL(target)
  // The proxy itself speaks plain HTTP; a TLS server behind it (MinIO here) is reached over https.
  const tls = upstream.protocol === "https:"
  const agent = tls ? new https.Agent({ keepAlive: true }) : new http.Agent({ keepAlive: true })
  const rules: Array<Active> = []
  const requests: Array<Request> = []
  const counts: Record<FaultKind, number> = {
    Error: 0,
    ResetRequest: 0,
    ResetResponse: 0,
    DropResponse: 0,
    Refuse: 0,
    Short: 0,
    FlipBit: 0
  }
  const sockets = new Set<Socket>()
  let port = 0
  let isListening = false
  let reopenTimer: NodeJS.Timeout | undefined
  let closed = false

  const matches = (rule: Rule, request: Request) => {
    const ops: ReadonlyArray<Operation> = typeof rule.operation === "string" ? [rule.operation] : rule.operation
    return ops.includes(request.operation) && (rule.where === undefined || rule.where(request))
  }

  /** The fault for this request, if a rule takes it (the first rule added wins). */
  const take = (request: Request): Fault | undefined => {
    const active = rules.find((r) => r.remaining > 0 && matches(r.rule, request))
    if (active === undefined) return undefined
    active.remaining--
    active.fired++
    counts[active.rule.fault._tag]++
    return active.rule.fault
  }

  const listen = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const onError = (e: Error) => reject(e)
      server.once("error", onError)
      server.listen(port, "127.0.0.1", () => {
        server.off("error", onError)
        port = (server.address() as AddressInfo).port
        isListening = true
        resolve()
      })
    })

  /** Listens again on the same port; another process may hold it for a moment after the close. */
  const relisten = async (): Promise<void> => {
    for (let attempt = 0; ; attempt++) {
      try {
        return await listen()
      } catch (e) {
        if (attempt >= 50) throw e
        await new Promise((r) => setTimeout(r, 20))
      }
    }
  }

  let reopening: Promise<void> | undefined
  const reopen = (): Promise<void> => {
    if (reopenTimer !== undefined) clearTimeout(reopenTimer)
    reopenTimer = undefined
    if (isListening || closed) return Promise.resolve()
    reopening ??= relisten().finally(() => {
      reopening = undefined
    })
    return reopening
  }

  /** Stops accepting connections and drops the open ones; listens again after `ms` unless reopened earlier. */
  const refuse = (ms: number | undefined) => {
    if (isListening) {
      isListening = false
      server.close()
    }
    for (const socket of sockets) socket.destroy()
    if (ms !== undefined) {
      if (reopenTimer !== undefined) clearTimeout(reopenTimer)
      reopenTimer = setTimeout(() => void reopen(), ms)
    }
  }

  const answerError = (req: http.IncomingMessage, res: http.ServerResponse, status: number, code: string) => {
    // Read the body first, as S3 does, so the client is not cut off mid-send.
    req.resume()
    req.once("end", () => {
      const body = req.method === "HEAD" ? "" : errorXml(code)
      res.writeHead(status, {
        "content-type": "application/xml",
        "content-length": Buffer.byteLength(body),
        "x-amz-request-id": "graviton-proxy"
      })
      res.end(body)
    })
  }

  const resetRequest = (req: http.IncomingMessage, after: number) => {
    if (after <= 0) return req.socket.destroy()
    let received = 0
    req.on("data", (chunk: Buffer) => {
      received += chunk.length
      if (received >= after) req.socket.destroy()
    })
    req.once("end", () => req.socket.destroy())
  }

  const forward = (req: http.IncomingMessage, res: http.ServerResponse, fault: Fault | undefined) => {
    const headers = { ...req.headers }
    for (const name of HOP_BY_HOP) delete headers[name]
    const outgoing = (tls ? https.request : http.request)({
      host: upstream.hostname,
      port: upstream.port,
      method: req.method,
      path: req.url,
      headers,
      agent
    })
    let upstreamResponse: http.IncomingMessage | undefined
    // The client went away (or a fault cut it): stop the server's side too.
    res.once("close", () => {
      if (!res.writableFinished) {
        outgoing.destroy()
        upstreamResponse?.destroy()
      }
    })
    outgoing.once("error", () => {
      if (!res.headersSent) {
        res.writeHead(502, { "content-type": "application/xml" })
        res.end(errorXml("BadGateway"))
      } else {
        res.destroy()
      }
    })
    outgoing.once("response", (up) => {
      upstreamResponse = up
      if (fault?._tag === "DropResponse") {
        // The server has done the work; the client hears nothing.
        up.resume()
        up.once("end", () => req.socket.destroy())
        return
      }
      const out: http.OutgoingHttpHeaders = {}
      for (const [name, value] of Object.entries(up.headers)) if (!HOP_BY_HOP.has(name) && value !== undefined) out[name] = value
      const declared = Number(up.headers["content-length"])
      const limit = fault?._tag === "Short" ? fault.keep : fault?._tag === "ResetResponse" ? fault.after : undefined
      if (fault?._tag === "Short" && Number.isFinite(declared) && declared > fault.keep) out["content-length"] = String(fault.keep)
      res.writeHead(up.statusCode ?? 502, up.statusMessage, out)
      if (fault?._tag === "ResetResponse" && fault.after <= 0) {
        // Headers out, then the connection goes.
        res.flushHeaders()
        setImmediate(() => req.socket.destroy())
        up.destroy()
        return
      }
      let sent = 0
      let stopped = false
      up.on("data", (chunk: Buffer) => {
        if (stopped) return
        let piece = chunk
        if (fault?._tag === "FlipBit" && fault.at >= sent && fault.at < sent + chunk.length) {
          piece = Buffer.from(chunk)
          piece[fault.at - sent] = piece[fault.at - sent]! ^ 1
        }
        if (limit !== undefined && sent + piece.length >= limit) {
          piece = piece.subarray(0, limit - sent)
          stopped = true
        }
        sent += piece.length
        if (stopped) {
          up.destroy()
          if (fault?._tag === "Short") {
            res.end(piece)
          } else {
            // Once the bytes before the cut are flushed, the connection goes.
            res.write(piece, () => req.socket.destroy())
          }
          return
        }
        if (!res.write(piece)) {
          up.pause()
          res.once("drain", () => up.resume())
        }
      })
      up.once("end", () => {
        if (!stopped) res.end()
      })
      up.once("error", () => res.destroy())
    })
    req.pipe(outgoing)
  }

  const server = http.createServer((req, res) => {
    const request = classify(req.method ?? "GET", req.url ?? "/", req.headers["x-amz-copy-source"] !== undefined)
    requests.push(request)
    const fault = take(request)
    switch (fault?._tag) {
      case "Error":
        return answerError(req, res, fault.status, fault.code)
      case "ResetRequest":
        return resetRequest(req, fault.after ?? 0)
      case "Refuse":
        return refuse(fault.ms)
      default:
        return forward(req, res, fault)
    }
  })
  server.keepAliveTimeout = 30_000
  server.on("connection", (socket) => {
    sockets.add(socket)
    socket.once("close", () => sockets.delete(socket))
  })
  await listen()

  return {
    endpoint: `http://127.0.0.1:${port}`,
    add: (rule) => {
      const active: Active = { rule, remaining: rule.times ?? 1, fired: 0 }
      rules.push(active)
      return {
        fired: () => active.fired,
        remove: () => {
          const i = rules.indexOf(active)
          if (i >= 0) rules.splice(i, 1)
        }
      }
    },
    clear: () => {
      rules.length = 0
    },
    seen: (operation, where) => requests.filter((r) => r.operation === operation && (where === undefined || where(r))).length,
    injected: () => ({ ...counts }),
    listening: () => isListening,
    reopen,
    close: async () => {
      closed = true
      if (reopenTimer !== undefined) clearTimeout(reopenTimer)
      for (const socket of sockets) socket.destroy()
      agent.destroy()
      if (isListening) {
        isListening = false
        await new Promise<void>((resolve) => server.close(() => resolve()))
      }
    }
  }
}

/** A proxy to `target` for the life of the scope. */
export const scoped = (target: string): Effect.Effect<Proxy, never, Scope.Scope> =>
  Effect.acquireRelease(Effect.promise(() => start(target)), (proxy) => Effect.promise(() => proxy.close()))

/** A rule in force for the life of the scope. */
export const rule = (proxy: Proxy, r: Rule): Effect.Effect<Installed, never, Scope.Scope> =>
  Effect.acquireRelease(Effect.sync(() => proxy.add(r)), (installed) => Effect.sync(() => installed.remove()))
