/**
 * Configuration of the S3 backend: what a program passes to `layer(options)`,
 * what `layerConfig` reads from the environment, and the validated settings
 * every S3 module works from.
 *
 * Locators: the backend serves `s3://<bucket>/<path>` where `<bucket>` must
 * be the configured bucket (anything else is InvalidInput: one client, one
 * bucket, one least-privilege policy) and `<path>` maps to the object key
 * `<prefix><path>`. The prefix never shows in locators, so the same data can
 * be moved under another prefix without rewriting them.
 */
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Schedule from "effect/Schedule"
import { ObjectStoreError } from "../../core/Errors.js"
import { isFeature, type ObjectStoreFeature } from "../../ports/ObjectStoreCapabilities.js"

/** 1 MiB. */
export const MiB = 1024 * 1024
/** 1 GiB. */
export const GiB = 1024 * MiB

/** S3's smallest part (every part but the last). */
export const MIN_PART_SIZE = 5 * MiB
/** S3's largest part, and the largest single PutObject / CopyObject. */
export const MAX_PART_SIZE = 5 * GiB
/** S3's part-number limit. */
export const MAX_PARTS = 10_000

/**
 * How the SDK computes and checks flexible checksums (CRC32 etc.):
 * `WHEN_REQUIRED` only where an operation demands one; `WHEN_SUPPORTED` on
 * every call that can carry one (the SDK's own default since 2025).
 */
export type ChecksumMode = "WHEN_REQUIRED" | "WHEN_SUPPORTED"

/** Server-side encryption applied to every object this backend writes (and, for SSE-C, reads). */
export type Encryption =
  | { readonly _tag: "None" }
  /** SSE-S3: keys managed by S3 (`AES256`). */
  | { readonly _tag: "S3" }
  /** SSE-KMS: `aws:kms` with the given key (ARN, id or alias), or the account's `aws/s3` key. */
  | { readonly _tag: "Kms"; readonly keyId?: string | undefined }
  /** SSE-C: a 256-bit customer key (base64), sent with every call and never stored by S3. */
  | { readonly _tag: "Customer"; readonly key: Redacted.Redacted<string> }

/** Static credentials; absent = the SDK's default provider chain (env, profile, SSO, IMDS ...). */
export interface S3Credentials {
  readonly accessKeyId: Redacted.Redacted<string>
  readonly secretAccessKey: Redacted.Redacted<string>
  readonly sessionToken?: Redacted.Redacted<string> | undefined
}

/** Everything `S3Client.layer` accepts; only `bucket` is required. */
export interface S3ClientOptions {
  readonly bucket: string
  /** Default "us-east-1". */
  readonly region?: string | undefined
  /** Custom endpoint (MinIO, moto, R2 ...); absent = AWS. */
  readonly endpoint?: string | undefined
  /** `https://host/bucket/key` instead of `https://bucket.host/key`; most S3-compatible servers need it. */
  readonly forcePathStyle?: boolean | undefined
  /** Key prefix every object of this backend lives under, e.g. "graviton/" (default none). */
  readonly prefix?: string | undefined
  readonly credentials?: S3Credentials | undefined
  /** Bytes per multipart part (and the single-PutObject threshold). Default 8 MiB, at least 5 MiB. */
  readonly partSize?: number | undefined
  /**
   * Largest part an upload may grow to (parts of a stream of unknown length
   * double every 1,000 parts; a declared size is split into parts of
   * size / maxParts). Held memory is at most maxPartSize × max(2, concurrency),
   * and the largest object is about maxParts × maxPartSize: beyond it a put
   * fails with InvalidInput. Default 64 MiB (about 490 GiB for a stream of
   * unknown length, 625 GiB declared); up to 5 GiB.
   */
  readonly maxPartSize?: number | undefined
  /** Parts uploaded at once; memory is about partSize × (concurrency + 1). Default 4. */
  readonly concurrency?: number | undefined
  /** Most parts one upload may use. Default and maximum 10,000. */
  readonly maxParts?: number | undefined
  /** Every part but the last has the same size (no growth; some S3-compatible services require it). */
  readonly equalParts?: boolean | undefined
  /** Default none. SSE-C needs an `https://` endpoint (AWS's is), unless `allowInsecureSseC`. */
  readonly encryption?: Encryption | undefined
  /**
   * Allow SSE-C over a plain-HTTP endpoint. SSE-C sends the customer key in a
   * header of every request, so over `http://` anyone on the path reads it:
   * without this the layer refuses to build. For local test servers only.
   * Default false (`GRAVITON_S3_ALLOW_INSECURE_SSEC`).
   */
  readonly allowInsecureSseC?: boolean | undefined
  /** Default `WHEN_REQUIRED`; see `ChecksumMode` and docs/backends/s3.md. */
  readonly checksum?: ChecksumMode | undefined
  /** Most sockets the client keeps open to the endpoint. Default 50. */
  readonly maxSockets?: number | undefined
  /** Time allowed to open a connection. Default 10 seconds. */
  readonly connectionTimeout?: Duration.DurationInput | undefined
  /** Idle time allowed on an open socket before the request fails with Timeout. Default 2 minutes. */
  readonly socketTimeout?: Duration.DurationInput | undefined
  /** Objects larger than this are copied with UploadPartCopy. Default (and maximum) 5 GiB, S3's CopyObject limit. */
  readonly multipartCopyThreshold?: number | undefined
  /** Part size of a multipart copy (grown to stay under `maxParts`). Default 512 MiB. */
  readonly copyPartSize?: number | undefined
  /**
   * Send `If-None-Match: *` where a write must not replace an object (blob
   * puts), so racing puts of the same content store it once. Default true;
   * turn off only for servers that reject the header.
   */
  readonly conditionalWrites?: boolean | undefined
  /**
   * SigV4 payload signing: `auto` (the SDK's choice: bodies are hashed into
   * the signature over plain HTTP, UNSIGNED-PAYLOAD over HTTPS) or
   * `unsigned` (UNSIGNED-PAYLOAD always, as OpenDAL does; saves a SHA-256
   * pass over every byte sent on plain-HTTP endpoints). Default `auto`.
   */
  readonly payloadSigning?: PayloadSigning | undefined
  /** Retry schedule for transient failures; absent = the runtime's default (src/kit/Retry.ts). */
  readonly retrySchedule?: Schedule.Schedule<unknown, unknown> | undefined
  /**
   * Features the endpoint lacks although S3 has them (an S3-compatible
   * server): the object store's declared capabilities leave them out, so
   * the declaration stays true there (a create-only object put then fails
   * with Unsupported); "encryption" declares none applied. It changes no
   * request: `conditionalWrites` decides whether `If-None-Match` is sent.
   * Default none (AWS S3).
   */
  readonly unsupported?: ReadonlyArray<S3Unsupported> | undefined
}

/** A feature an S3-compatible endpoint may lack (see `S3ClientOptions.unsupported`). */
export type S3Unsupported = ObjectStoreFeature | "encryption"

/** See `S3ClientOptions.payloadSigning`. */
export type PayloadSigning = "auto" | "unsigned"

/** Validated options with every default filled in. */
export interface S3Settings {
  readonly bucket: string
  readonly region: string
  readonly endpoint: Option.Option<string>
  readonly forcePathStyle: boolean
  /** "" or a prefix ending in "/". */
  readonly prefix: string
  readonly credentials: Option.Option<S3Credentials>
  readonly partSize: number
  readonly maxPartSize: number
  readonly concurrency: number
  readonly maxParts: number
  readonly equalParts: boolean
  readonly encryption: Encryption
  readonly checksum: ChecksumMode
  readonly maxSockets: number
  readonly connectionTimeout: Duration.Duration
  readonly socketTimeout: Duration.Duration
  readonly multipartCopyThreshold: number
  readonly copyPartSize: number
  readonly conditionalWrites: boolean
  readonly payloadSigning: PayloadSigning
  readonly retrySchedule: Option.Option<Schedule.Schedule<unknown, unknown>>
  readonly unsupported: ReadonlyArray<S3Unsupported>
}

const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/

const invalid = (description: string) =>
  new ObjectStoreError({ reason: "InvalidInput", backend: "s3", method: "config", description })

const positiveInt = (name: string, value: number, min: number, max: number): Either.Either<number, ObjectStoreError> =>
  Number.isSafeInteger(value) && value >= min && value <= max
    ? Either.right(value)
    : Either.left(invalid(`${name} must be an integer between ${min} and ${max}, got ${value}`))

/** Normalizes a key prefix: no leading "/", one trailing "/", no empty, "." or ".." segments. */
export const normalizePrefix = (prefix: string | undefined): Either.Either<string, ObjectStoreError> => {
  const trimmed = (prefix ?? "").replace(/^\/+|\/+$/g, "")
  if (trimmed === "") return Either.right("")
  const segments = trimmed.split("/")
  if (segments.some((s) => s === "" || s === "." || s === "..")) {
    return Either.left(invalid(`the key prefix ${JSON.stringify(prefix)} has an empty, "." or ".." segment`))
  }
  if (/[\u0000-\u001f\u007f]/.test(trimmed)) return Either.left(invalid("the key prefix contains a control character"))
  return Either.right(`${trimmed}/`)
}

/** Decodes an SSE-C key and checks it is 256 bits, without ever putting it in a message. */
const checkCustomerKey = (key: Redacted.Redacted<string>): Either.Either<void, ObjectStoreError> => {
  const text = Redacted.value(key)
  const valid = /^[A-Za-z0-9+/]+={0,2}$/.test(text) && Buffer.from(text, "base64").length === 32
  return valid ? Either.void : Either.left(invalid("the SSE-C key must be 32 bytes, base64-encoded"))
}

/** Validates options and fills in the defaults. */
export const resolve = (options: S3ClientOptions): Either.Either<S3Settings, ObjectStoreError> =>
  Either.gen(function*() {
    if (typeof options.bucket !== "string" || !BUCKET.test(options.bucket) || options.bucket.includes("..")) {
      return yield* Either.left(invalid(`${JSON.stringify(options.bucket)} is not a valid S3 bucket name`))
    }
    const prefix = yield* normalizePrefix(options.prefix)
    const partSize = yield* positiveInt("partSize", options.partSize ?? 8 * MiB, MIN_PART_SIZE, MAX_PART_SIZE)
    const maxPartSize = yield* positiveInt("maxPartSize", options.maxPartSize ?? Math.max(partSize, 64 * MiB), partSize, MAX_PART_SIZE)
    const concurrency = yield* positiveInt("concurrency", options.concurrency ?? 4, 1, 64)
    const maxParts = yield* positiveInt("maxParts", options.maxParts ?? MAX_PARTS, 1, MAX_PARTS)
    const maxSockets = yield* positiveInt("maxSockets", options.maxSockets ?? 50, 1, 1024)
    const multipartCopyThreshold = yield* positiveInt(
      "multipartCopyThreshold",
      options.multipartCopyThreshold ?? MAX_PART_SIZE,
      MIN_PART_SIZE,
      MAX_PART_SIZE
    )
    const copyPartSize = yield* positiveInt("copyPartSize", options.copyPartSize ?? 512 * MiB, MIN_PART_SIZE, MAX_PART_SIZE)
    const encryption = options.encryption ?? { _tag: "None" }
    if (encryption._tag === "Customer") yield* checkCustomerKey(encryption.key)
    const checksum = options.checksum ?? "WHEN_REQUIRED"
    if (checksum !== "WHEN_REQUIRED" && checksum !== "WHEN_SUPPORTED") {
      return yield* Either.left(invalid(`checksum must be WHEN_REQUIRED or WHEN_SUPPORTED, got ${String(checksum)}`))
    }
    const payloadSigning = options.payloadSigning ?? "auto"
    if (payloadSigning !== "auto" && payloadSigning !== "unsigned") {
      return yield* Either.left(invalid(`payloadSigning must be auto or unsigned, got ${String(payloadSigning)}`))
    }
    const unsupported = options.unsupported ?? []
    const unknown = unsupported.find((name) => name !== "encryption" && !isFeature(name))
    if (unknown !== undefined) return yield* Either.left(invalid(`unsupported names an unknown feature: ${JSON.stringify(unknown)}`))
    const endpoint = Option.fromNullable(options.endpoint).pipe(Option.filter((e) => e.length > 0))
    if (Option.isSome(endpoint) && !URL.canParse(endpoint.value)) {
      return yield* Either.left(invalid(`the endpoint ${JSON.stringify(endpoint.value)} is not a URL`))
    }
    // Absent = AWS's own endpoint, always HTTPS.
    if (
      encryption._tag === "Customer" && Option.isSome(endpoint) && new URL(endpoint.value).protocol !== "https:" &&
      options.allowInsecureSseC !== true
    ) {
      return yield* Either.left(invalid(
        `SSE-C sends the customer key with every request, and the endpoint ${endpoint.value} is not HTTPS: ` +
          "use an https:// endpoint (allowInsecureSseC / GRAVITON_S3_ALLOW_INSECURE_SSEC=true is for local test servers only)"
      ))
    }
    return {
      bucket: options.bucket,
      region: options.region ?? "us-east-1",
      endpoint,
      forcePathStyle: options.forcePathStyle ?? false,
      prefix,
      credentials: Option.fromNullable(options.credentials),
      partSize,
      maxPartSize,
      concurrency,
      maxParts,
      equalParts: options.equalParts ?? false,
      encryption,
      checksum,
      maxSockets,
      connectionTimeout: Duration.decode(options.connectionTimeout ?? "10 seconds"),
      socketTimeout: Duration.decode(options.socketTimeout ?? "2 minutes"),
      multipartCopyThreshold,
      copyPartSize,
      conditionalWrites: options.conditionalWrites ?? true,
      payloadSigning,
      retrySchedule: Option.fromNullable(options.retrySchedule),
      unsupported
    } satisfies S3Settings
  })

const encryptionConfig: Config.Config<Encryption> = Config.all({
  mode: Config.literal("none", "AES256", "aws:kms", "SSE-C")("GRAVITON_S3_SSE").pipe(
    Config.withDefault("none" as const),
    Config.withDescription("Server-side encryption: none, AES256 (SSE-S3), aws:kms (SSE-KMS) or SSE-C")
  ),
  kmsKeyId: Config.option(
    Config.string("GRAVITON_S3_SSE_KMS_KEY_ID").pipe(Config.withDescription("KMS key for aws:kms (default aws/s3)"))
  ),
  customerKey: Config.option(
    Config.redacted("GRAVITON_S3_SSE_C_KEY").pipe(Config.withDescription("Base64 256-bit key for SSE-C"))
  )
}).pipe(
  Config.mapOrFail(({ customerKey, kmsKeyId, mode }): Either.Either<Encryption, ConfigError.ConfigError> => {
    switch (mode) {
      case "none":
        return Either.right({ _tag: "None" })
      case "AES256":
        return Either.right({ _tag: "S3" })
      case "aws:kms":
        return Either.right({ _tag: "Kms", keyId: Option.getOrUndefined(kmsKeyId) })
      case "SSE-C":
        return Option.match(customerKey, {
          onNone: () =>
            Either.left(ConfigError.MissingData(["GRAVITON_S3_SSE_C_KEY"], "GRAVITON_S3_SSE=SSE-C needs GRAVITON_S3_SSE_C_KEY")),
          onSome: (key) => Either.right({ _tag: "Customer", key })
        })
    }
  })
)

const credentialsConfig: Config.Config<Option.Option<S3Credentials>> = Config.all({
  accessKeyId: Config.option(Config.redacted("GRAVITON_S3_ACCESS_KEY_ID")),
  secretAccessKey: Config.option(Config.redacted("GRAVITON_S3_SECRET_ACCESS_KEY")),
  sessionToken: Config.option(Config.redacted("GRAVITON_S3_SESSION_TOKEN"))
}).pipe(
  Config.mapOrFail(({ accessKeyId, secretAccessKey, sessionToken }) =>
    Option.isSome(accessKeyId) && Option.isSome(secretAccessKey)
      ? Either.right(Option.some({
        accessKeyId: accessKeyId.value,
        secretAccessKey: secretAccessKey.value,
        sessionToken: Option.getOrUndefined(sessionToken)
      }))
      : Option.isSome(accessKeyId) || Option.isSome(secretAccessKey)
      ? Either.left(ConfigError.MissingData(
        [Option.isSome(accessKeyId) ? "GRAVITON_S3_SECRET_ACCESS_KEY" : "GRAVITON_S3_ACCESS_KEY_ID"],
        "set both GRAVITON_S3_ACCESS_KEY_ID and GRAVITON_S3_SECRET_ACCESS_KEY, or neither (SDK default chain)"
      ))
      : Either.right(Option.none())
  )
)

const optional = <A>(config: Config.Config<A>): Config.Config<A | undefined> =>
  Config.map(Config.option(config), Option.getOrUndefined)

/**
 * Options from the environment (`GRAVITON_S3_*`): BUCKET (required), REGION,
 * ENDPOINT, FORCE_PATH_STYLE, PREFIX, ACCESS_KEY_ID / SECRET_ACCESS_KEY /
 * SESSION_TOKEN (else the SDK's default chain), PART_SIZE, MAX_PART_SIZE, CONCURRENCY,
 * MAX_PARTS, EQUAL_PARTS, SSE / SSE_KMS_KEY_ID / SSE_C_KEY / ALLOW_INSECURE_SSEC, CHECKSUM, MAX_SOCKETS,
 * CONDITIONAL_WRITES, PAYLOAD_SIGNING, UNSUPPORTED (comma-separated features the endpoint lacks).
 */
export const config: Config.Config<S3ClientOptions> = Config.all({
  bucket: Config.string("GRAVITON_S3_BUCKET").pipe(Config.withDescription("Bucket holding Graviton's objects")),
  region: Config.string("GRAVITON_S3_REGION").pipe(
    Config.orElse(() => Config.string("AWS_REGION")),
    Config.withDefault("us-east-1")
  ),
  endpoint: optional(Config.string("GRAVITON_S3_ENDPOINT").pipe(Config.withDescription("Custom endpoint URL"))),
  forcePathStyle: Config.boolean("GRAVITON_S3_FORCE_PATH_STYLE").pipe(Config.withDefault(false)),
  prefix: Config.string("GRAVITON_S3_PREFIX").pipe(Config.withDefault("")),
  credentials: Config.map(credentialsConfig, Option.getOrUndefined),
  partSize: optional(Config.integer("GRAVITON_S3_PART_SIZE").pipe(Config.withDescription("Part size in bytes"))),
  maxPartSize: optional(Config.integer("GRAVITON_S3_MAX_PART_SIZE").pipe(Config.withDescription("Largest part in bytes (bounds memory)"))),
  concurrency: optional(Config.integer("GRAVITON_S3_CONCURRENCY")),
  maxParts: optional(Config.integer("GRAVITON_S3_MAX_PARTS")),
  equalParts: Config.boolean("GRAVITON_S3_EQUAL_PARTS").pipe(Config.withDefault(false)),
  encryption: encryptionConfig,
  allowInsecureSseC: Config.boolean("GRAVITON_S3_ALLOW_INSECURE_SSEC").pipe(
    Config.withDefault(false),
    Config.withDescription("Allow SSE-C over a plain-HTTP endpoint (local test servers only: the key travels in clear)")
  ),
  checksum: Config.literal("WHEN_REQUIRED", "WHEN_SUPPORTED")("GRAVITON_S3_CHECKSUM").pipe(
    Config.withDefault("WHEN_REQUIRED" as const)
  ),
  maxSockets: optional(Config.integer("GRAVITON_S3_MAX_SOCKETS")),
  conditionalWrites: Config.boolean("GRAVITON_S3_CONDITIONAL_WRITES").pipe(Config.withDefault(true)),
  payloadSigning: Config.literal("auto", "unsigned")("GRAVITON_S3_PAYLOAD_SIGNING").pipe(Config.withDefault("auto" as const)),
  unsupported: Config.string("GRAVITON_S3_UNSUPPORTED").pipe(
    Config.withDefault(""),
    Config.withDescription("Features the endpoint lacks, e.g. conditionalWrite,fileAndPrefix (see ObjectStoreCapabilities)"),
    Config.map((text) => text.split(",").map((name) => name.trim()).filter((name) => name !== "") as ReadonlyArray<S3Unsupported>)
  )
})
