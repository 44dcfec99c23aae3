/**
 * The AWS SDK client as a scoped resource, built from `S3ClientOptions` and
 * destroyed (with its sockets) when the scope closes. Every other S3 module
 * takes `S3ClientInstance` from the context, so one client (one connection
 * pool) serves the object stores and the blob store alike.
 *
 * The SDK's own retries are off (`maxAttempts: 1`): the runtime's
 * `Schedule` decides, once, on the reason our error mapping gives
 * (src/backends/s3/S3Error.ts), so no call is retried twice over.
 */
import { S3Client as Sdk } from "@aws-sdk/client-s3"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import { Agent as HttpAgent } from "node:http"
import { Agent as HttpsAgent } from "node:https"
import type { ObjectStoreError } from "../../core/Errors.js"
import { config, resolve, type S3ClientOptions, type S3Settings } from "./S3Config.js"

/** SSE request fields for each kind of call; functions, so the SSE-C key is only unwrapped into a request. */
export interface SseFields {
  /** PutObject, CreateMultipartUpload, CopyObject / UploadPartCopy destination. */
  readonly write: () => Record<string, string>
  /** UploadPart, UploadPartCopy, CompleteMultipartUpload, GetObject, HeadObject (SSE-C only). */
  readonly customer: () => Record<string, string>
  /** CopyObject / UploadPartCopy source (SSE-C only). */
  readonly copySource: () => Record<string, string>
}

/** A live client and the settings it was built from. */
export interface S3ClientShape {
  readonly client: Sdk
  readonly settings: S3Settings
  readonly sse: SseFields
}

/** The S3 client shared by the S3 ports. */
export class S3ClientInstance extends Context.Tag("graviton/S3ClientInstance")<S3ClientInstance, S3ClientShape>() {}

const sseFields = (settings: S3Settings): SseFields => {
  const encryption = settings.encryption
  const none = () => ({})
  switch (encryption._tag) {
    case "None":
      return { write: none, customer: none, copySource: none }
    case "S3":
      return { write: () => ({ ServerSideEncryption: "AES256" }), customer: none, copySource: none }
    case "Kms":
      return {
        write: () => ({
          ServerSideEncryption: "aws:kms",
          ...(encryption.keyId === undefined ? {} : { SSEKMSKeyId: encryption.keyId })
        }),
        customer: none,
        copySource: none
      }
    case "Customer": {
      // The SDK adds the key's MD5 itself (ssec middleware).
      const customer = () => ({ SSECustomerAlgorithm: "AES256", SSECustomerKey: Redacted.value(encryption.key) })
      return {
        write: customer,
        customer,
        copySource: () => ({
          CopySourceSSECustomerAlgorithm: "AES256",
          CopySourceSSECustomerKey: Redacted.value(encryption.key)
        })
      }
    }
  }
}

/** Builds a client from validated settings; it is destroyed when the scope closes. */
export const fromSettings = (settings: S3Settings): Effect.Effect<S3ClientShape, never, Scope.Scope> =>
  Effect.map(
    Effect.acquireRelease(
      Effect.sync(() => {
        // Keep-alive pools sized by us: a socket is released when a body is consumed or destroyed.
        const agentOptions = { keepAlive: true, maxSockets: settings.maxSockets }
        const httpAgent = new HttpAgent(agentOptions)
        const httpsAgent = new HttpsAgent(agentOptions)
        const client = new Sdk({
          region: settings.region,
          ...Option.match(settings.endpoint, { onNone: () => ({}), onSome: (endpoint) => ({ endpoint }) }),
          forcePathStyle: settings.forcePathStyle,
          ...Option.match(settings.credentials, {
            onNone: () => ({}),
            onSome: (c) => ({
              credentials: {
                accessKeyId: Redacted.value(c.accessKeyId),
                secretAccessKey: Redacted.value(c.secretAccessKey),
                ...(c.sessionToken === undefined ? {} : { sessionToken: Redacted.value(c.sessionToken) })
              }
            })
          }),
          maxAttempts: 1,
          requestChecksumCalculation: settings.checksum,
          responseChecksumValidation: settings.checksum,
          // With agents of our own the SDK's handler never waits for "100 Continue" before the
          // body (it writes it at once), so the header would only cost an interim response per part.
          expectContinueHeader: false,
          requestHandler: {
            httpAgent,
            httpsAgent,
            connectionTimeout: Duration.toMillis(settings.connectionTimeout),
            socketTimeout: Duration.toMillis(settings.socketTimeout)
          }
        })
        if (settings.payloadSigning === "unsigned") {
          // The signer takes a payload hash already present as given: no SHA-256 pass over the body.
          client.middlewareStack.add(
            (next) => (args) => {
              const request = args.request as { headers?: Record<string, string> } | undefined
              if (request?.headers !== undefined) request.headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
              return next(args)
            },
            { step: "build", name: "gravitonUnsignedPayload" }
          )
        }
        return { client, httpAgent, httpsAgent }
      }),
      ({ client, httpAgent, httpsAgent }) =>
        Effect.sync(() => {
          client.destroy()
          httpAgent.destroy()
          httpsAgent.destroy()
        })
    ),
    ({ client }) => ({ client, settings, sse: sseFields(settings) })
  )

/** Validates `options` and builds a client, destroyed when the scope closes. */
export const make = (options: S3ClientOptions): Effect.Effect<S3ClientShape, ObjectStoreError, Scope.Scope> =>
  Effect.flatMap(resolve(options), fromSettings)

/** Provides S3ClientInstance from options. */
export const layer = (options: S3ClientOptions): Layer.Layer<S3ClientInstance, ObjectStoreError> =>
  Layer.scoped(S3ClientInstance, make(options))

/** Provides S3ClientInstance from a Config of the options (by default `S3Config.config`, i.e. GRAVITON_S3_*). */
export const layerConfig = (
  options: Config.Config.Wrap<S3ClientOptions> = config
): Layer.Layer<S3ClientInstance, ObjectStoreError | ConfigError.ConfigError> =>
  Layer.scoped(S3ClientInstance, Effect.flatMap(Config.unwrap(options), make))
