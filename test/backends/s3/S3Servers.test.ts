/**
 * The server matrix: prints which S3 servers run here and what each lets us
 * test, and checks every capability record against the server itself with
 * plain SDK calls, so a record cannot drift from what the server does (a
 * server that gains a feature fails here until its record says so).
 */
import * as S3 from "@aws-sdk/client-s3"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { randomBytes } from "node:crypto"
import * as Harness from "../../harness/s3.js"
import { useServers } from "./fixtures.js"

useServers()

/** Whether a promise settles successfully. */
const succeeds = (p: Promise<unknown>): Promise<boolean> => p.then(() => true, () => false)

type Probe = (client: S3.S3Client, bucket: string, r: Harness.Running) => Promise<boolean>

const text = async (out: S3.GetObjectCommandOutput) => Buffer.from(await out.Body!.transformToByteArray()).toString()

/** For each capability: does the server have it? Each probe works in its own keys of a fresh bucket. */
const probes: Record<keyof Harness.ServerCapabilities, Probe> = {
  multipartAbort: async (c, Bucket) => {
    // Listed under a prefix, as the suites look for uploads left behind.
    const open = () =>
      c.send(new S3.ListMultipartUploadsCommand({ Bucket, Prefix: "abort/" })).then((o) => (o.Uploads ?? []).map((u) => u.Key), () => undefined)
    const { UploadId } = await c.send(new S3.CreateMultipartUploadCommand({ Bucket, Key: "abort/x" }))
    const before = await open()
    const aborted = await succeeds(c.send(new S3.AbortMultipartUploadCommand({ Bucket, Key: "abort/x", UploadId })))
    const after = await open()
    return aborted && JSON.stringify(before) === JSON.stringify(["abort/x"]) && after !== undefined && after.length === 0
  },
  sse: async (c, Bucket) => {
    await c.send(new S3.PutObjectCommand({ Bucket, Key: "sse", Body: "x", ServerSideEncryption: "AES256" }))
    return (await c.send(new S3.HeadObjectCommand({ Bucket, Key: "sse" }))).ServerSideEncryption === "AES256"
  },
  sseC: async (c, Bucket) => {
    const key = randomBytes(32).toString("base64")
    await c.send(new S3.PutObjectCommand({ Bucket, Key: "ssec", Body: "secret", SSECustomerAlgorithm: "AES256", SSECustomerKey: key }))
    return !(await succeeds(c.send(new S3.GetObjectCommand({ Bucket, Key: "ssec" })).then(text)))
  },
  uploadPartCopy: async (c, Bucket) => {
    await c.send(new S3.PutObjectCommand({ Bucket, Key: "upc-src", Body: "copy me" }))
    const { UploadId } = await c.send(new S3.CreateMultipartUploadCommand({ Bucket, Key: "upc" }))
    const part = await c.send(new S3.UploadPartCopyCommand({ Bucket, Key: "upc", UploadId, PartNumber: 1, CopySource: `${Bucket}/upc-src` }))
      .catch(() => undefined)
    if (part === undefined) return false
    await c.send(new S3.CompleteMultipartUploadCommand({
      Bucket,
      Key: "upc",
      UploadId,
      MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.CopyPartResult?.ETag }] }
    }))
    return (await text(await c.send(new S3.GetObjectCommand({ Bucket, Key: "upc" })))) === "copy me"
  },
  encodedCopySource: async (c, Bucket) => {
    const odd = "a b+c%d é"
    await c.send(new S3.PutObjectCommand({ Bucket, Key: odd, Body: "odd" }))
    const copied = await succeeds(c.send(new S3.CopyObjectCommand({ Bucket, Key: "copied", CopySource: `${Bucket}/${encodeURIComponent(odd)}` })))
    return copied && (await text(await c.send(new S3.GetObjectCommand({ Bucket, Key: "copied" })))) === "odd"
  },
  conditionalWrites: async (c, Bucket) => {
    await c.send(new S3.PutObjectCommand({ Bucket, Key: "inm", Body: "first" }))
    const replaced = await succeeds(c.send(new S3.PutObjectCommand({ Bucket, Key: "inm", Body: "second", IfNoneMatch: "*" })))
    return !replaced && (await text(await c.send(new S3.GetObjectCommand({ Bucket, Key: "inm" })))) === "first"
  },
  authentication: async (_, Bucket, r) => {
    const stranger = Harness.rawClient({ ...r, accessKeyId: "AKIDNOBODY", secretAccessKey: "not-a-secret" })
    try {
      return !(await succeeds(stranger.send(new S3.PutObjectCommand({ Bucket, Key: "stranger", Body: "x" }))))
    } finally {
      stranger.destroy()
    }
  },
  minPartSize: async (c, Bucket) => {
    const { UploadId } = await c.send(new S3.CreateMultipartUploadCommand({ Bucket, Key: "small-parts" }))
    const parts = []
    for (const n of [1, 2]) {
      const { ETag } = await c.send(new S3.UploadPartCommand({ Bucket, Key: "small-parts", UploadId, PartNumber: n, Body: "tiny" }))
      parts.push({ PartNumber: n, ETag })
    }
    const done = await succeeds(c.send(new S3.CompleteMultipartUploadCommand({ Bucket, Key: "small-parts", UploadId, MultipartUpload: { Parts: parts } })))
    await c.send(new S3.AbortMultipartUploadCommand({ Bucket, Key: "small-parts", UploadId })).catch(() => undefined)
    return !done
  },
  keySemantics: async (c, Bucket) => {
    const keys = ["k/a", "k/a/b", "k/a-", "k/é", "k/～", "k/😀"]
    const stored = await Promise.all(keys.map((Key) => succeeds(c.send(new S3.PutObjectCommand({ Bucket, Key, Body: Key })))))
    const listed = (await c.send(new S3.ListObjectsV2Command({ Bucket, Prefix: "k/" }))).Contents?.map((o) => o.Key) ?? []
    const byUtf8 = [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
    return stored.every(Boolean) && JSON.stringify(listed) === JSON.stringify(byUtf8)
  }
}

describe("S3 test servers", () => {
  it("the capability matrix (printed for the record)", () => {
    const table = Harness.matrix()
    console.log(`\nS3 server capability matrix\n${table}\n`)
    expect(table).toContain("moto")
    expect(Harness.candidates.map((c) => c.name)).toEqual(["env", "minio", "minio-container", "moto", "s3rver"])
  })

  for (const server of Harness.candidates) {
    for (const name of Harness.capabilityNames) {
      const declared = server.capabilities[name] === true
      const title = `${server.name}: ${name} is ${declared ? "supported" : "unsupported"} as recorded`
      if (server.skip !== undefined) {
        it.skip(`${title} [skipped: ${server.skip}]`, () => {})
        continue
      }
      it.live(title, () =>
        Effect.promise(async () => {
          const r = await Harness.server(server)
          const place = await Harness.prepare(r, Harness.freshBucket(`probe-${name}`))
          const client = Harness.rawClient(r)
          try {
            return await probes[name](client, place.bucket, r)
          } finally {
            client.destroy()
          }
        }).pipe(Effect.map((actual) => expect(actual).toBe(declared))), 60_000)
    }
  }

  it.live("the harness starts a server per file and stops it", () =>
    Effect.promise(async () => {
      const s3rver = Harness.candidate("s3rver")
      const r = await Harness.server(s3rver)
      expect(r.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
      expect(await Harness.server(s3rver)).toBe(r)
      const response = await fetch(r.endpoint)
      expect(response.status).toBeLessThan(500)
    }))
})
