/**
 * Server-side encryption on every S3 server: the SSE settings reach every
 * call that needs them (checked on the requests as sent), the server
 * records them where it honours SSE, an SSE-C object is unreadable without
 * its key where the server enforces SSE-C, and the customer key never shows
 * in an error, a log line or the settings.
 */
import * as S3 from "@aws-sdk/client-s3"
import { expect } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import { inspect } from "node:util"
import * as S3Client from "../../../src/backends/s3/S3Client.js"
import { S3ClientInstance } from "../../../src/backends/s3/S3Client.js"
import type { Encryption, S3ClientOptions, S3Settings } from "../../../src/backends/s3/S3Config.js"
import * as S3ObjectStore from "../../../src/backends/s3/S3ObjectStore.js"
import { BlobStore } from "../../../src/ports/BlobStore.js"
import { MutableObjectStore } from "../../../src/ports/ObjectStore.js"
import { chunked, collect, MiB, randomBytes, sameBytes, utf8 } from "../../../src/testing/bytes.js"
import * as Harness from "../../harness/s3.js"
import { eachServer, locatorMaker, putBytes, read, storeLayer, useServers } from "./fixtures.js"
import { type Call, inject, spy } from "./sdk.js"

useServers()

const P = 5 * MiB

/** A fixed 256-bit test key (base64) and its raw bytes in hex, to look for in messages. */
const customerKeyBytes = Buffer.from(randomBytes(32, 4242))
const customerKey = customerKeyBytes.toString("base64")
const otherKey = Buffer.from(randomBytes(32, 4343)).toString("base64")
const customer = (key: string): Encryption => ({ _tag: "Customer", key: Redacted.make(key) })

const kmsKeyId = process.env.GRAVITON_TEST_S3_KMS_KEY_ID ?? "arn:aws:kms:us-east-1:123456789012:key/graviton-test"

/** Writes a single-part object, a multipart one and a copy; returns the calls made. */
const writeAll = (f: Effect.Effect.Success<typeof locatorMaker>) =>
  Effect.gen(function*() {
    const { client } = yield* S3ClientInstance
    const store = yield* MutableObjectStore
    const seen = yield* spy(client)
    yield* putBytes(f.at("single"), utf8("one request"))
    yield* putBytes(f.at("multi"), randomBytes(P + 1, 1))
    yield* store.copy(f.at("single"), f.at("copied"))
    yield* read(f.at("single"))
    yield* collect(store.get(f.at("multi"), { start: 10, end: 20 }))
    return seen.calls
  })

const callsOf = (calls: ReadonlyArray<Call>, command: string) => calls.filter((c) => c.command === command)

const rawHead = (settings: S3Settings, key: string) =>
  Effect.flatMap(S3ClientInstance, ({ client }) =>
    Effect.promise(() => client.send(new S3.HeadObjectCommand({ Bucket: settings.bucket, Key: key }))))

eachServer("SSE-S3", (c) => storeLayer(c, "sse-s3", { encryption: { _tag: "S3" } }), (test, server) => {
  test.scoped()("every write asks for AES256; parts and reads carry no SSE header", () =>
    Effect.gen(function*() {
      const f = yield* locatorMaker
      const calls = yield* writeAll(f)
      for (const command of ["PutObject", "CreateMultipartUpload", "CopyObject"]) {
        const sent = callsOf(calls, command)
        expect(sent.length, command).toBeGreaterThan(0)
        for (const c of sent) expect(c.input.ServerSideEncryption, command).toBe("AES256")
      }
      for (const command of ["UploadPart", "CompleteMultipartUpload", "GetObject", "HeadObject"]) {
        for (const c of callsOf(calls, command)) expect(c.input.ServerSideEncryption, command).toBeUndefined()
      }
    }), 60_000)

  test.scoped(server.capabilities.sse)("the server records SSE-S3 on every object written", () =>
    Effect.gen(function*() {
      const { settings } = yield* S3ClientInstance
      const f = yield* locatorMaker
      yield* writeAll(f)
      for (const name of ["single", "multi", "copied"]) {
        expect((yield* rawHead(settings, f.key(name))).ServerSideEncryption, name).toBe("AES256")
      }
    }), 60_000)
})

eachServer("SSE-KMS", (c) => storeLayer(c, "sse-kms", { encryption: { _tag: "Kms", keyId: kmsKeyId } }), (test, server) => {
  const realEndpoint = server.name === "env" && process.env.GRAVITON_TEST_S3_KMS_KEY_ID === undefined
    ? "set GRAVITON_TEST_S3_KMS_KEY_ID to test SSE-KMS on a real endpoint"
    : server.name.startsWith("minio")
    ? "MinIO refuses key ids its KMS does not hold (KeyNotFound), and the test's id is an AWS ARN"
    : undefined
  test.scoped(realEndpoint)("every write asks for aws:kms with the key id", () =>
    Effect.gen(function*() {
      const f = yield* locatorMaker
      const calls = yield* writeAll(f)
      for (const command of ["PutObject", "CreateMultipartUpload", "CopyObject"]) {
        for (const c of callsOf(calls, command)) {
          expect([c.input.ServerSideEncryption, c.input.SSEKMSKeyId], command).toEqual(["aws:kms", kmsKeyId])
        }
      }
      for (const c of callsOf(calls, "UploadPart")) expect(c.input.SSEKMSKeyId).toBeUndefined()
    }), 60_000)

  test.scoped(realEndpoint, server.capabilities.sse)("the server records SSE-KMS and the key on every object written", () =>
    Effect.gen(function*() {
      const { settings } = yield* S3ClientInstance
      const f = yield* locatorMaker
      yield* writeAll(f)
      for (const name of ["single", "multi", "copied"]) {
        const h = yield* rawHead(settings, f.key(name))
        expect([h.ServerSideEncryption, h.SSEKMSKeyId], name).toEqual(["aws:kms", kmsKeyId])
      }
    }), 60_000)
})

/** The client options of the current layer with other encryption, for a second client on the same bucket. */
const withEncryption = (settings: S3Settings, encryption: Encryption): S3ClientOptions => ({
  bucket: settings.bucket,
  prefix: settings.prefix,
  region: settings.region,
  endpoint: Option.getOrUndefined(settings.endpoint),
  forcePathStyle: settings.forcePathStyle,
  credentials: Option.getOrUndefined(settings.credentials),
  retrySchedule: Harness.testRetrySchedule,
  encryption,
  allowInsecureSseC: settings.endpoint._tag === "Some" && settings.endpoint.value.startsWith("http:")
})

/** Texts an error may be shown as: none may contain the key. */
const renderings = (error: unknown): ReadonlyArray<string> => [
  String(error),
  (error as Error).message ?? "",
  JSON.stringify(error) ?? "",
  inspect(error, { depth: 6 }),
  Cause.pretty(Cause.fail(error))
]

const expectNoKey = (texts: ReadonlyArray<string>) => {
  for (const text of texts) {
    expect(text).not.toContain(customerKey)
    expect(text).not.toContain(customerKeyBytes.toString("hex"))
  }
}

// The test servers listen on plain http://: SSE-C there must be allowed explicitly (see S3Config).
eachServer("SSE-C", (c) => storeLayer(c, "sse-c", { encryption: customer(customerKey), allowInsecureSseC: true }), (test, server) => {
  test.scoped()("every call carries the customer key: writes, parts, completion, reads, heads, both sides of a copy", () =>
    Effect.gen(function*() {
      const f = yield* locatorMaker
      const calls = yield* writeAll(f)
      const needing = ["PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "GetObject", "HeadObject", "CopyObject"]
      for (const command of needing) {
        const sent = callsOf(calls, command)
        expect(sent.length, command).toBeGreaterThan(0)
        for (const c of sent) expect([c.input.SSECustomerAlgorithm, c.input.SSECustomerKey], command).toEqual(["AES256", customerKey])
      }
      for (const c of callsOf(calls, "CopyObject")) {
        expect([c.input.CopySourceSSECustomerAlgorithm, c.input.CopySourceSSECustomerKey]).toEqual(["AES256", customerKey])
      }
      // And the objects read back with the key.
      expect(sameBytes(yield* read(f.at("copied")), utf8("one request"))).toBe(true)
    }), 60_000)

  test.scoped()("the blob store passes the key through staging, copy and verified reads", () =>
    Effect.gen(function*() {
      const { client } = yield* S3ClientInstance
      const blobs = yield* BlobStore
      const seen = yield* spy(client)
      const bytes = randomBytes(P + 100, 77)
      const stored = yield* Stream.run(chunked(bytes), blobs.put())
      expect(sameBytes(yield* collect(blobs.get(stored.key)), bytes)).toBe(true)
      for (const command of ["CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "CopyObject", "GetObject", "HeadObject"]) {
        for (const c of callsOf(seen.calls, command)) expect(c.input.SSECustomerAlgorithm, command).toBe("AES256")
      }
    }), 60_000)

  test.scoped(server.capabilities.sseC)("without the key, or with another key, the object cannot be read", () =>
    Effect.gen(function*() {
      const { client, settings } = yield* S3ClientInstance
      const f = yield* locatorMaker
      yield* putBytes(f.at("secret"), utf8("secret"))
      const raw = yield* Effect.exit(Effect.tryPromise(() =>
        client.send(new S3.GetObjectCommand({ Bucket: settings.bucket, Key: f.key("secret") }))))
      expect(raw._tag).toBe("Failure")
      const other = yield* Effect.flatMap(S3Client.make(withEncryption(settings, customer(otherKey))), (shape) =>
        S3ObjectStore.make.pipe(Effect.provideService(S3ClientInstance, shape)))
      const error = yield* Effect.flip(collect(other.get(f.at("secret"))))
      expect(["PermissionDenied", "InvalidInput"]).toContain(error.reason)
      expectNoKey(renderings(error))
      expect(sameBytes(yield* read(f.at("secret")), utf8("secret"))).toBe(true)
    }))

  test.scoped()("the key never appears in errors, in logs of failed aborts, or in the settings", () =>
    Effect.gen(function*() {
      const { client, settings } = yield* S3ClientInstance
      const store = yield* MutableObjectStore
      const f = yield* locatorMaker
      yield* inject(client, { command: "GetObject", status: 403, code: "AccessDenied", times: Infinity })
      yield* inject(client, { command: "PutObject", status: 400, code: "InvalidArgument", times: Infinity })
      yield* inject(client, { command: "UploadPart", status: 400, code: "InvalidArgument", times: Infinity })
      yield* inject(client, { command: "AbortMultipartUpload", status: 403, code: "AccessDenied" })
      const errors = [
        yield* Effect.flip(collect(store.get(f.at("x")))),
        yield* Effect.flip(putBytes(f.at("x"), utf8("x"))),
        yield* Effect.flip(putBytes(f.at("y"), randomBytes(P + 1, 3)))
      ]
      for (const e of errors) expectNoKey(renderings(e))
      expectNoKey([inspect(settings, { depth: 6 }), JSON.stringify(settings) ?? "", String(settings.encryption)])
      expect(settings.encryption._tag === "Customer" ? String(settings.encryption.key) : "").toBe("<redacted>")
    }).pipe(
      // Failed aborts log a warning: capture everything logged and check it too.
      (self) =>
        Effect.gen(function*() {
          const logged: Array<string> = []
          const capture = Logger.make(({ message }) => {
            logged.push(inspect(message, { depth: 6 }))
          })
          yield* Effect.provide(self, Logger.replace(Logger.defaultLogger, capture))
          expect(logged.length).toBeGreaterThan(0)
          expectNoKey(logged)
        })
    ), 60_000)
})
