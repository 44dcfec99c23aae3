/**
 * The S3 backend's pure parts, without a server: the one error mapping,
 * configuration (options and environment), part sizing, copy-source
 * encoding and the locator ↔ key mapping.
 */
import { describe, expect, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as FastCheck from "effect/FastCheck"
import { copySource } from "../../../src/backends/s3/internal/ops.js"
import { copyRanges, plan, STAGES } from "../../../src/backends/s3/internal/parts.js"
import * as S3Capabilities from "../../../src/backends/s3/S3Capabilities.js"
import * as S3Client from "../../../src/backends/s3/S3Client.js"
import * as S3Config from "../../../src/backends/s3/S3Config.js"
import { classify, relabel, toObjectStoreError } from "../../../src/backends/s3/S3Error.js"
import { locate, locatorOfKey } from "../../../src/backends/s3/S3ObjectStore.js"
import * as BlobLocator from "../../../src/core/BlobLocator.js"
import { isTransientReason } from "../../../src/core/Errors.js"

const MiB = 1024 * 1024
const GiB = 1024 * MiB
const TiB = 1024 * GiB

/** An SDK service exception as the SDK builds it. */
const service = (code: string, status: number, message = "server says no") =>
  Object.assign(new Error(message), { name: code, Code: code, $fault: status >= 500 ? "server" : "client", $metadata: { httpStatusCode: status } })

/** A Node network error. */
const network = (code: string) => Object.assign(new Error(`connect ${code} 127.0.0.1:9`), { code })

describe("S3Error.classify", () => {
  const cases: ReadonlyArray<readonly [string, unknown, string]> = [
    ["NoSuchKey 404", service("NoSuchKey", 404), "NotFound"],
    ["HEAD 404 (no body)", service("NotFound", 404), "NotFound"],
    ["NoSuchBucket", service("NoSuchBucket", 404), "NotFound"],
    ["NoSuchUpload", service("NoSuchUpload", 404), "NotFound"],
    ["AccessDenied", service("AccessDenied", 403), "PermissionDenied"],
    ["SignatureDoesNotMatch", service("SignatureDoesNotMatch", 403), "PermissionDenied"],
    ["InvalidAccessKeyId", service("InvalidAccessKeyId", 403), "PermissionDenied"],
    ["ExpiredToken", service("ExpiredToken", 400), "PermissionDenied"],
    ["SlowDown 503", service("SlowDown", 503), "Throttled"],
    ["ThrottlingException", service("ThrottlingException", 400), "Throttled"],
    ["429 without a known code", service("Whatever", 429), "Throttled"],
    ["InternalError 500", service("InternalError", 500), "Unavailable"],
    ["502", service("BadGateway", 502), "Unavailable"],
    ["ServiceUnavailable 503", service("ServiceUnavailable", 503), "Unavailable"],
    ["504 without a code", service("UnknownError", 504), "Unavailable"],
    ["RequestTimeout 400", service("RequestTimeout", 400), "Timeout"],
    ["ECONNRESET", network("ECONNRESET"), "Unavailable"],
    ["ECONNREFUSED", network("ECONNREFUSED"), "Unavailable"],
    ["EPIPE", network("EPIPE"), "Unavailable"],
    ["ETIMEDOUT", network("ETIMEDOUT"), "Timeout"],
    ["SDK TimeoutError", Object.assign(new Error("socket timed out"), { name: "TimeoutError" }), "Timeout"],
    // The SDK's HTTP handler renames these "TimeoutError" (issue #15, finding 6): the Node code decides.
    ["a reset as the SDK reports it", Object.assign(network("ECONNRESET"), { name: "TimeoutError" }), "Unavailable"],
    ["a broken pipe as the SDK reports it", Object.assign(network("EPIPE"), { name: "TimeoutError" }), "Unavailable"],
    ["ETIMEDOUT as the SDK reports it", Object.assign(network("ETIMEDOUT"), { name: "TimeoutError" }), "Timeout"],
    ["a wrapped network cause", Object.assign(new Error("socket hang up"), { cause: network("ECONNRESET") }), "Unavailable"],
    ["InvalidArgument", service("InvalidArgument", 400), "InvalidInput"],
    ["InvalidRange 416", service("InvalidRange", 416), "InvalidInput"],
    ["EntityTooSmall", service("EntityTooSmall", 400), "InvalidInput"],
    ["KeyTooLongError", service("KeyTooLongError", 400), "InvalidInput"],
    ["another 4xx", service("Teapot", 418), "InvalidInput"],
    ["BadDigest", service("BadDigest", 400), "Corrupted"],
    ["PreconditionFailed 412", service("PreconditionFailed", 412), "Conflict"],
    ["NotImplemented 501", service("NotImplemented", 501), "Unsupported"],
    ["MethodNotAllowed 405", service("MethodNotAllowed", 405), "Unsupported"],
    ["a plain Error", new Error("boom"), "Unknown"],
    ["not even an Error", 42, "Unknown"]
  ]
  for (const [label, error, reason] of cases) {
    it(`${label} → ${reason}`, () => {
      expect(classify(error).reason).toBe(reason)
    })
  }

  it("transient exactly for 5xx, throttling, timeouts and connection failures", () => {
    const transient = [service("InternalError", 500), service("BadGateway", 502), service("ServiceUnavailable", 503),
      service("UnknownError", 504), service("SlowDown", 503), service("RequestTimeout", 400), network("ECONNRESET"),
      network("ETIMEDOUT")]
    const permanent = [service("AccessDenied", 403), service("NoSuchBucket", 404), service("InvalidArgument", 400),
      service("NoSuchKey", 404), service("Teapot", 418), service("PreconditionFailed", 412)]
    for (const e of transient) expect(isTransientReason(classify(e).reason), (e as Error).name).toBe(true)
    for (const e of permanent) expect(isTransientReason(classify(e).reason), (e as Error).name).toBe(false)
  })

  it("the description names the code, the status and the server's message; the error names the call", () => {
    const e = toObjectStoreError("GetObject", "s3://b/k", service("AccessDenied", 403, "Access Denied"))
    expect(e.description).toBe("GetObject s3://b/k: AccessDenied (HTTP 403): Access Denied")
    expect([e.reason, e.method, e.backend]).toEqual(["PermissionDenied", "GetObject", "s3"])
    const relabelled = relabel("get")(e)
    expect([relabelled.method, relabelled.description, relabelled.reason]).toEqual(["get", e.description, "PermissionDenied"])
  })
})

describe("S3Config.resolve", () => {
  it("fills in the defaults", () => {
    const s = Either.getOrThrow(S3Config.resolve({ bucket: "my-bucket" }))
    expect([s.region, s.prefix, s.partSize, s.concurrency, s.maxParts, s.equalParts, s.checksum, s.conditionalWrites])
      .toEqual(["us-east-1", "", 8 * MiB, 4, 10_000, false, "WHEN_REQUIRED", true])
    expect([s.encryption._tag, Option.isNone(s.endpoint), Option.isNone(s.credentials), s.multipartCopyThreshold])
      .toEqual(["None", true, true, 5 * GiB])
  })

  it("normalizes the key prefix", () => {
    for (const [given, wanted] of [["", ""], ["graviton", "graviton/"], ["/a/b/", "a/b/"], ["a/b", "a/b/"]] as const) {
      expect(Either.getOrThrow(S3Config.resolve({ bucket: "my-bucket", prefix: given })).prefix).toBe(wanted)
    }
    for (const bad of ["a//b", "a/../b", "./a", "a\u0000"]) {
      expect(Either.isLeft(S3Config.resolve({ bucket: "my-bucket", prefix: bad })), bad).toBe(true)
    }
  })

  it("refuses what S3 would refuse later", () => {
    const bad = [
      { bucket: "My_Bucket" },
      { bucket: "ab" },
      { bucket: "my-bucket", partSize: 4 * MiB },
      { bucket: "my-bucket", partSize: 6 * GiB },
      { bucket: "my-bucket", maxParts: 10_001 },
      { bucket: "my-bucket", concurrency: 0 },
      { bucket: "my-bucket", endpoint: "not a url" },
      { bucket: "my-bucket", checksum: "ALWAYS" as never },
      { bucket: "my-bucket", encryption: { _tag: "Customer", key: Redacted.make("c2hvcnQ=") } } as const
    ]
    for (const options of bad) {
      const result = S3Config.resolve(options)
      expect(Either.isLeft(result), JSON.stringify(options)).toBe(true)
      if (Either.isLeft(result)) expect(result.left.reason).toBe("InvalidInput")
    }
  })

  it("SSE-C over a plain-HTTP endpoint is refused (the key would travel in clear) unless explicitly allowed", () => {
    const key = Buffer.alloc(32, 7).toString("base64")
    const encryption = { _tag: "Customer", key: Redacted.make(key) } as const
    const refused = S3Config.resolve({ bucket: "my-bucket", endpoint: "http://127.0.0.1:9000", encryption })
    expect(Either.isLeft(refused)).toBe(true)
    if (Either.isLeft(refused)) {
      expect([refused.left._tag, refused.left.reason, refused.left.method]).toEqual(["ObjectStoreError", "InvalidInput", "config"])
      expect(refused.left.message).toContain("not HTTPS")
      expect(refused.left.message).not.toContain(key)
    }
    // Other encryption over http, SSE-C over https or on AWS (no endpoint), and the explicit opt-in pass.
    for (const options of [
      { bucket: "my-bucket", endpoint: "http://127.0.0.1:9000", encryption: { _tag: "S3" } as const },
      { bucket: "my-bucket", endpoint: "https://s3.example.com", encryption },
      { bucket: "my-bucket", encryption },
      { bucket: "my-bucket", endpoint: "http://127.0.0.1:9000", encryption, allowInsecureSseC: true }
    ]) {
      expect(Either.isRight(S3Config.resolve(options)), JSON.stringify(options)).toBe(true)
    }
  })

  it.effect("building the client layer fails with the configuration error; no client is made", () =>
    Effect.gen(function*() {
      const encryption = { _tag: "Customer", key: Redacted.make(Buffer.alloc(32, 7).toString("base64")) } as const
      // Mapped to plain values: a built client is not something to print in a failure.
      const built = yield* Layer.build(S3Client.layer({ bucket: "my-bucket", endpoint: "http://127.0.0.1:9", encryption })).pipe(
        Effect.scoped,
        Effect.as("a client was built"),
        Effect.either
      )
      expect(Either.isLeft(built) ? [built.left.reason, built.left.method] : built.right).toEqual(["InvalidInput", "config"])
    }))

  it("an SSE-C key is 32 bytes of base64, and is never quoted in the error", () => {
    const short = "c2hvcnQta2V5LWJ5dGVz"
    const result = S3Config.resolve({ bucket: "my-bucket", encryption: { _tag: "Customer", key: Redacted.make(short) } })
    expect(Either.isLeft(result) && !result.left.message.includes(short)).toBe(true)
    const good = Buffer.alloc(32, 7).toString("base64")
    expect(Either.isRight(S3Config.resolve({ bucket: "my-bucket", encryption: { _tag: "Customer", key: Redacted.make(good) } })))
      .toBe(true)
  })
})

describe("S3Config.config", () => {
  const load = (env: Record<string, string>) =>
    Effect.runSync(Effect.either(Effect.withConfigProvider(S3Config.config, ConfigProvider.fromMap(new Map(Object.entries(env))))))

  it("reads every GRAVITON_S3_* variable", () => {
    const key = Buffer.alloc(32, 1).toString("base64")
    const options = Either.getOrThrow(load({
      GRAVITON_S3_BUCKET: "b-1",
      GRAVITON_S3_REGION: "eu-west-3",
      GRAVITON_S3_ENDPOINT: "http://127.0.0.1:9000",
      GRAVITON_S3_FORCE_PATH_STYLE: "true",
      GRAVITON_S3_PREFIX: "pre",
      GRAVITON_S3_ACCESS_KEY_ID: "AKIA",
      GRAVITON_S3_SECRET_ACCESS_KEY: "sekrit",
      GRAVITON_S3_PART_SIZE: String(16 * MiB),
      GRAVITON_S3_CONCURRENCY: "8",
      GRAVITON_S3_MAX_PARTS: "500",
      GRAVITON_S3_EQUAL_PARTS: "true",
      GRAVITON_S3_SSE: "SSE-C",
      GRAVITON_S3_SSE_C_KEY: key,
      GRAVITON_S3_ALLOW_INSECURE_SSEC: "true",
      GRAVITON_S3_CHECKSUM: "WHEN_SUPPORTED",
      GRAVITON_S3_CONDITIONAL_WRITES: "false",
      GRAVITON_S3_UNSUPPORTED: "fileAndPrefix, encryption"
    }))
    expect([options.bucket, options.region, options.endpoint, options.forcePathStyle, options.prefix]).toEqual([
      "b-1",
      "eu-west-3",
      "http://127.0.0.1:9000",
      true,
      "pre"
    ])
    expect([options.partSize, options.concurrency, options.maxParts, options.equalParts, options.checksum, options.conditionalWrites])
      .toEqual([16 * MiB, 8, 500, true, "WHEN_SUPPORTED", false])
    expect(Redacted.value(options.credentials!.secretAccessKey)).toBe("sekrit")
    expect(String(options.credentials!.secretAccessKey)).toBe("<redacted>")
    expect(options.encryption?._tag === "Customer" && Redacted.value(options.encryption.key)).toBe(key)
    expect(options.unsupported).toEqual(["fileAndPrefix", "encryption"])
    expect(options.allowInsecureSseC).toBe(true)
    expect(Either.isRight(S3Config.resolve(options))).toBe(true)
  })

  it("SSE-C with an http:// endpoint from the environment is refused unless GRAVITON_S3_ALLOW_INSECURE_SSEC is set", () => {
    const env = {
      GRAVITON_S3_BUCKET: "b-1",
      GRAVITON_S3_ENDPOINT: "http://127.0.0.1:9000",
      GRAVITON_S3_SSE: "SSE-C",
      GRAVITON_S3_SSE_C_KEY: Buffer.alloc(32, 1).toString("base64")
    }
    const options = Either.getOrThrow(load(env))
    expect(options.allowInsecureSseC).toBe(false)
    expect(Either.isLeft(S3Config.resolve(options))).toBe(true)
    expect(Either.isRight(S3Config.resolve(Either.getOrThrow(load({ ...env, GRAVITON_S3_ALLOW_INSECURE_SSEC: "true" }))))).toBe(true)
  })

  it("without credentials the SDK's default chain is used; half a pair is an error", () => {
    const options = Either.getOrThrow(load({ GRAVITON_S3_BUCKET: "b-1" }))
    expect([options.credentials, options.encryption, options.region]).toEqual([undefined, { _tag: "None" }, "us-east-1"])
    expect(Either.isLeft(load({ GRAVITON_S3_BUCKET: "b-1", GRAVITON_S3_ACCESS_KEY_ID: "AKIA" }))).toBe(true)
  })

  it("SSE modes: AES256, aws:kms with a key id; SSE-C needs its key; the bucket is required", () => {
    expect(Either.getOrThrow(load({ GRAVITON_S3_BUCKET: "b-1", GRAVITON_S3_SSE: "AES256" })).encryption).toEqual({ _tag: "S3" })
    expect(Either.getOrThrow(load({ GRAVITON_S3_BUCKET: "b-1", GRAVITON_S3_SSE: "aws:kms", GRAVITON_S3_SSE_KMS_KEY_ID: "k" }))
      .encryption).toEqual({ _tag: "Kms", keyId: "k" })
    expect(Either.isLeft(load({ GRAVITON_S3_BUCKET: "b-1", GRAVITON_S3_SSE: "SSE-C" }))).toBe(true)
    expect(Either.isLeft(load({ GRAVITON_S3_BUCKET: "b-1", GRAVITON_S3_SSE: "rot13" }))).toBe(true)
    expect(Either.isLeft(load({}))).toBe(true)
  })
})

describe("S3Capabilities", () => {
  const of = (options: S3Config.S3ClientOptions) => S3Capabilities.of(Either.getOrThrow(S3Config.resolve(options)))

  it("AWS S3: no rename, server-side copies, multipart, conditional writes, every head field, objects up to 10,000 parts of maxPartSize (about 492 GiB with the default 64 MiB cap)", () => {
    const c = of({ bucket: "my-bucket" })
    expect([c.nativeMove, c.nativeCopy, c.multipart, c.conditionalWrite, c.rangedRead, c.fileAndPrefix]).toEqual([false, true, true, true, true, true])
    expect([c.contentType, c.metadata, c.etag, c.lastModified, c.encryption, c.maxObjectSize]).toEqual([true, true, true, true, "none", 528_482_304_000])
    expect(of({ bucket: "my-bucket", maxPartSize: 128 * MiB }).maxObjectSize).toBeGreaterThan(528_482_304_000)
  })

  it("follows the configuration: encryption, conditional writes, equal parts", () => {
    const key = Redacted.make(Buffer.alloc(32, 7).toString("base64"))
    expect(of({ bucket: "my-bucket", encryption: { _tag: "S3" } }).encryption).toBe("sse-s3")
    expect(of({ bucket: "my-bucket", encryption: { _tag: "Kms", keyId: "alias/k" } }).encryption).toBe("sse-kms")
    expect(of({ bucket: "my-bucket", encryption: { _tag: "Customer", key } }).encryption).toBe("sse-c")
    expect(of({ bucket: "my-bucket", conditionalWrites: false }).conditionalWrite).toBe(false)
    expect(of({ bucket: "my-bucket", equalParts: true, partSize: 5 * MiB, maxParts: 100 }).maxObjectSize).toBe(500 * MiB)
  })

  it("leaves out what the endpoint is declared to lack, and only from the declaration", () => {
    const options = { bucket: "my-bucket", encryption: { _tag: "S3" }, unsupported: ["conditionalWrite", "fileAndPrefix", "encryption"] } as const
    const c = of(options)
    expect([c.conditionalWrite, c.fileAndPrefix, c.encryption, c.nativeCopy]).toEqual([false, false, "none", true])
    // S3BlobStore still sends If-None-Match as configured (harmless where it is ignored).
    expect(Either.getOrThrow(S3Config.resolve(options)).conditionalWrites).toBe(true)
    expect(Either.isLeft(S3Config.resolve({ bucket: "my-bucket", unsupported: ["teleport" as never] }))).toBe(true)
  })
})

describe("part sizing", () => {
  it("defaults: the first 1,000 parts keep the configured size, then double, up to maxPartSize and no further", () => {
    const s = Either.getOrThrow(S3Config.resolve({ bucket: "my-bucket" }))
    expect(s.maxPartSize).toBe(64 * MiB)
    const p = plan({ partSize: s.partSize, maxPartSize: s.maxPartSize, maxParts: s.maxParts, equalParts: false })
    expect([p.sizeOf(1), p.sizeOf(1000), p.sizeOf(1001), p.sizeOf(2001), p.sizeOf(3001), p.sizeOf(5001), p.sizeOf(10_000)]).toEqual([
      8 * MiB,
      8 * MiB,
      16 * MiB,
      32 * MiB,
      64 * MiB,
      64 * MiB,
      64 * MiB
    ])
    // Issue #15 finding 7: the parts (and the memory they hold) no longer double on to 4 GiB.
    let largest = 0
    for (let n = 1; n <= 10_000; n++) largest = Math.max(largest, p.sizeOf(n))
    expect(largest).toBe(64 * MiB)
    expect(p.capacity).toBe(1000 * (8 + 16 + 32) * MiB + 7000 * 64 * MiB)
    expect(S3Capabilities.of(s).maxObjectSize).toBe(p.capacity)
  })

  it("maxPartSize 5 GiB lets the 10 stages grow and hold more than 5 TiB", () => {
    const p = plan({ partSize: 8 * MiB, maxPartSize: 5 * GiB, maxParts: 10_000, equalParts: false })
    expect(p.sizeOf(10_000)).toBe(8 * MiB * 2 ** (STAGES - 1))
    expect(p.capacity).toBeGreaterThanOrEqual(5 * TiB)
  })

  it("maxPartSize is at least partSize and at most 5 GiB; GRAVITON_S3_MAX_PART_SIZE sets it", () => {
    expect(Either.isLeft(S3Config.resolve({ bucket: "my-bucket", partSize: 16 * MiB, maxPartSize: 8 * MiB }))).toBe(true)
    expect(Either.isLeft(S3Config.resolve({ bucket: "my-bucket", maxPartSize: 6 * GiB }))).toBe(true)
    expect(Either.getOrThrow(S3Config.resolve({ bucket: "my-bucket", partSize: 128 * MiB })).maxPartSize).toBe(128 * MiB)
    const fromEnv = Effect.runSync(Effect.withConfigProvider(
      S3Config.config,
      ConfigProvider.fromMap(new Map([["GRAVITON_S3_BUCKET", "b-1"], ["GRAVITON_S3_MAX_PART_SIZE", String(32 * MiB)]]))
    ))
    expect(fromEnv.maxPartSize).toBe(32 * MiB)
  })

  it("a declared size gets equal parts, grown to fit the part limit", () => {
    expect(plan({ partSize: 8 * MiB, maxPartSize: 64 * MiB, maxParts: 10_000, equalParts: false, size: 100 * MiB }).sizeOf(7)).toBe(8 * MiB)
    const huge = plan({ partSize: 8 * MiB, maxPartSize: 5 * GiB, maxParts: 10_000, equalParts: false, size: 5 * TiB })
    expect(huge.sizeOf(1)).toBe(huge.sizeOf(9_999))
    expect(Math.ceil((5 * TiB) / huge.sizeOf(1))).toBeLessThanOrEqual(10_000)
    // Capped: the plan holds less than the declared size, which the upload refuses before its first byte.
    const capped = plan({ partSize: 8 * MiB, maxPartSize: 64 * MiB, maxParts: 10_000, equalParts: false, size: 5 * TiB })
    expect([capped.sizeOf(1), capped.capacity]).toEqual([64 * MiB, 10_000 * 64 * MiB])
  })

  it("equal parts never grow", () => {
    const p = plan({ partSize: 5 * MiB, maxPartSize: 5 * GiB, maxParts: 3, equalParts: true })
    expect([p.sizeOf(1), p.sizeOf(3), p.capacity]).toEqual([5 * MiB, 5 * MiB, 15 * MiB])
  })

  it.prop(
    "any length up to the capacity fits in maxParts parts of 5 MiB to maxPartSize",
    [
      FastCheck.integer({ min: 5, max: 64 }),
      FastCheck.integer({ min: 1, max: 10_000 }),
      FastCheck.double({ min: 0, max: 1, noNaN: true }),
      FastCheck.integer({ min: 0, max: 5120 })
    ],
    ([partMiB, maxParts, fraction, extraMiB]) => {
      const maxPartSize = Math.min(5 * GiB, (partMiB + extraMiB) * MiB)
      const p = plan({ partSize: partMiB * MiB, maxPartSize, maxParts, equalParts: false })
      let remaining = Math.floor(p.capacity * fraction)
      let n = 0
      while (remaining > 0) {
        n++
        const size = p.sizeOf(n)
        if (size < 5 * MiB || size > maxPartSize) return false
        remaining -= size
      }
      return n <= maxParts
    }
  )

  it.prop("copy ranges tile [0, size) in at most maxParts contiguous pieces", [
    FastCheck.integer({ min: 0, max: 6 * TiB }),
    FastCheck.integer({ min: 1, max: 10_000 })
  ], ([size, maxParts]) => {
    const ranges = copyRanges(size, 512 * MiB, maxParts)
    let at = 0
    for (const [s, e] of ranges) {
      if (s !== at || e <= s || e - s > 5 * GiB) return false
      at = e
    }
    return at === size && ranges.length <= Math.max(maxParts, Math.ceil(size / (5 * GiB)))
  })
})

describe("locators and keys", () => {
  const settings = Either.getOrThrow(S3Config.resolve({ bucket: "my-bucket", prefix: "tenant" }))

  it("s3://<bucket>/<path> maps to <prefix><path> and back", () => {
    const l = Either.getOrThrow(BlobLocator.parse("s3://my-bucket/a/b c/é.txt"))
    const at = Either.getOrThrow(locate(settings, "get", l))
    expect(at.key).toBe("tenant/a/b c/é.txt")
    expect(Option.map(locatorOfKey(settings, at.key), BlobLocator.render)).toEqual(Option.some("s3://my-bucket/a/b c/é.txt"))
    expect(Option.isNone(locatorOfKey(settings, "other/a"))).toBe(true)
    expect(Option.isNone(locatorOfKey(settings, "tenant/a//b"))).toBe(true)
  })

  it("another bucket, another scheme, a malformed path or an over-long key is InvalidInput", () => {
    // Plain records: a caller may hand over anything shaped like a locator, checked or not.
    const bad = [
      { scheme: "s3", bucket: "other-bucket", path: "a" },
      { scheme: "gs", bucket: "my-bucket", path: "a" },
      { scheme: "s3", bucket: "my-bucket", path: "a/../b" },
      { scheme: "s3", bucket: "my-bucket", path: "x".repeat(1020) }
    ] as unknown as ReadonlyArray<BlobLocator.BlobLocator>
    for (const l of bad) {
      const result = locate(settings, "get", l)
      expect(Either.isLeft(result) && result.left.reason === "InvalidInput", String(l.path).slice(0, 20)).toBe(true)
    }
  })

  it("copy sources are URL-encoded per segment", () => {
    expect(copySource("b", "dir with space/a+b%c/é😀")).toBe("b/dir%20with%20space/a%2Bb%25c/%C3%A9%F0%9F%98%80")
    expect(copySource("b", "plain/key-1.txt")).toBe("b/plain/key-1.txt")
  })
})
