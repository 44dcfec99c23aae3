/**
 * Settings of the HTTP gateway: who may do what (bearer tokens with
 * scopes), and the limits that keep one client from taking the server.
 * From code (`Options`) or from the environment (`config`, GRAVITON_GATEWAY_*).
 */
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import * as Either from "effect/Either"
import * as Redacted from "effect/Redacted"

/** What a token allows: reading blobs, writing them (and uploading), deleting them. */
export type Scope = "read" | "write" | "delete"

const SCOPES: ReadonlySet<string> = new Set(["read", "write", "delete"])

/** One bearer token and what it allows. */
export interface Token {
  readonly token: Redacted.Redacted<string>
  readonly scopes: ReadonlySet<Scope>
}

/** Options of the gateway; every field has a default. */
export interface Options {
  /** Accepted bearer tokens (default none: then only anonymous reads, if allowed, get through). */
  readonly tokens?: ReadonlyArray<Token> | undefined
  /** Reads (GET/HEAD of blobs, the listing) without a token (default false). */
  readonly anonymousRead?: boolean | undefined
  /** Largest body of one `POST /blobs` and largest tus upload (default 5 GiB). */
  readonly maxBodySize?: number | undefined
  /** Uploads (POST/PUT /blobs and tus PATCH) running at once; more get 503 (default 64). */
  readonly maxConcurrentUploads?: number | undefined
  /** Longest a request may run before it is cut (default 1 hour; uploads stay resumable). */
  readonly requestTimeout?: Duration.DurationInput | undefined
  /** How long a tus upload may take before it expires (default 24 hours). */
  readonly uploadTtl?: Duration.DurationInput | undefined
  /** Largest page of `GET /blobs` (default 1000). */
  readonly maxPage?: number | undefined
  /**
   * How long the claim of a tus upload by a request lasts without renewal
   * (renewed every third of it while the request runs): how long an upload
   * stays locked after its writer crashed (default 30 seconds).
   */
  readonly uploadLease?: Duration.DurationInput | undefined
  /**
   * Origins whose pages may call the gateway from a browser (CORS; see
   * cors.ts): exact `scheme://host[:port]` values, or `*` for any. Default
   * none: same-origin only.
   */
  readonly corsOrigins?: ReadonlyArray<string> | undefined
}

/** Options with every default applied. */
export interface Settings {
  readonly tokens: ReadonlyArray<Token>
  readonly anonymousRead: boolean
  readonly maxBodySize: number
  readonly maxConcurrentUploads: number
  readonly requestTimeout: Duration.Duration
  readonly uploadTtl: Duration.Duration
  readonly maxPage: number
  readonly uploadLease: Duration.Duration
  readonly corsOrigins: ReadonlyArray<string>
}

/** Default largest body: 5 GiB. */
export const DEFAULT_MAX_BODY_SIZE = 5 * 1024 ** 3

/** Applies the defaults. */
export const settings = (options: Options = {}): Settings => ({
  tokens: options.tokens ?? [],
  anonymousRead: options.anonymousRead ?? false,
  maxBodySize: options.maxBodySize ?? DEFAULT_MAX_BODY_SIZE,
  maxConcurrentUploads: options.maxConcurrentUploads ?? 64,
  requestTimeout: Duration.decode(options.requestTimeout ?? Duration.hours(1)),
  uploadTtl: Duration.decode(options.uploadTtl ?? Duration.hours(24)),
  maxPage: options.maxPage ?? 1000,
  uploadLease: Duration.decode(options.uploadLease ?? Duration.seconds(30)),
  corsOrigins: options.corsOrigins ?? []
})

/**
 * Parses a token list: entries separated by whitespace or `;`, each
 * `<scopes>:<token>` with scopes joined by `,` (e.g.
 * `read,write:s3cr3t;read:public-token`). Errors never quote a token.
 */
export const parseTokens = (text: string): Either.Either<ReadonlyArray<Token>, string> => {
  const tokens: Array<Token> = []
  const entries = text.split(/[\s;]+/).filter((e) => e.length > 0)
  for (const [i, entry] of entries.entries()) {
    const colon = entry.indexOf(":")
    if (colon <= 0 || colon === entry.length - 1) {
      return Either.left(`token entry ${i + 1} is not <scopes>:<token>`)
    }
    const scopes = entry.slice(0, colon).split(",")
    const unknown = scopes.find((s) => !SCOPES.has(s))
    if (unknown !== undefined) {
      return Either.left(`token entry ${i + 1} has an unknown scope ${JSON.stringify(unknown)} (expected read, write, delete)`)
    }
    tokens.push({ token: Redacted.make(entry.slice(colon + 1)), scopes: new Set(scopes as Array<Scope>) })
  }
  return Either.right(tokens)
}

/** True for `*` and for a serialized origin (`https://app.example.com`, `http://127.0.0.1:8080`). */
export const isOrigin = (text: string): boolean => {
  if (text === "*") return true
  try {
    const url = new URL(text)
    return (url.protocol === "http:" || url.protocol === "https:") && url.origin === text
  } catch {
    return false
  }
}

/** Parses a list of origins separated by `,` or whitespace (`*` for any). */
export const parseOrigins = (text: string): Either.Either<ReadonlyArray<string>, string> => {
  const origins = text.split(/[\s,]+/).filter((o) => o.length > 0)
  const bad = origins.find((o) => !isOrigin(o))
  return bad === undefined
    ? Either.right(origins)
    : Either.left(`${JSON.stringify(bad)} is not an origin (scheme://host[:port], no path) or *`)
}

/** The gateway's options from the environment. */
export const config: Config.Config<Options> = Config.all({
  tokens: Config.redacted("GRAVITON_GATEWAY_TOKENS").pipe(
    Config.withDescription("Bearer tokens: <scopes>:<token> entries separated by ';' (scopes: read,write,delete)"),
    Config.mapOrFail((r) =>
      Either.mapLeft(
        parseTokens(Redacted.value(r)),
        (why) => ConfigError.InvalidData(["GRAVITON_GATEWAY_TOKENS"], why)
      )
    ),
    Config.withDefault([] as ReadonlyArray<Token>)
  ),
  anonymousRead: Config.boolean("GRAVITON_GATEWAY_ANONYMOUS_READ").pipe(Config.withDefault(false)),
  maxBodySize: Config.integer("GRAVITON_GATEWAY_MAX_BODY_SIZE").pipe(Config.withDefault(DEFAULT_MAX_BODY_SIZE)),
  maxConcurrentUploads: Config.integer("GRAVITON_GATEWAY_MAX_UPLOADS").pipe(Config.withDefault(64)),
  requestTimeout: Config.duration("GRAVITON_GATEWAY_REQUEST_TIMEOUT").pipe(Config.withDefault(Duration.hours(1))),
  uploadTtl: Config.duration("GRAVITON_GATEWAY_UPLOAD_TTL").pipe(Config.withDefault(Duration.hours(24))),
  maxPage: Config.integer("GRAVITON_GATEWAY_MAX_PAGE").pipe(Config.withDefault(1000)),
  uploadLease: Config.duration("GRAVITON_GATEWAY_UPLOAD_LEASE").pipe(Config.withDefault(Duration.seconds(30))),
  corsOrigins: Config.string("GRAVITON_GATEWAY_CORS_ORIGINS").pipe(
    Config.withDescription("Origins allowed to call the gateway from a browser, separated by ',' (* for any)"),
    Config.mapOrFail((text) =>
      Either.mapLeft(parseOrigins(text), (why) => ConfigError.InvalidData(["GRAVITON_GATEWAY_CORS_ORIGINS"], why))
    ),
    Config.withDefault([] as ReadonlyArray<string>)
  )
})
