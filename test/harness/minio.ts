/**
 * MinIO as a local S3 server for the tests: the binary scripts/install-minio.sh
 * builds into the cache, started over TLS with a self-signed certificate made
 * here with openssl (MinIO refuses SSE-C over plain HTTP, as AWS does, so
 * only TLS lets the tests see SSE-C enforced), with a KMS key so that SSE-S3
 * works too. No vitest imports: minioGlobalSetup.ts starts one server per
 * test run with it.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { request } from "node:https"
import { createServer } from "node:net"
import { homedir, tmpdir } from "node:os"
import { join } from "node:path"

/** The version scripts/install-minio.sh builds (keep the two in step). */
export const VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"

const cacheRoot = process.env.GRAVITON_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "graviton")

/** Where scripts/install-minio.sh puts the server. */
export const binary = join(cacheRoot, "minio", VERSION, "minio")

/** Environment variables through which the global setup hands the server to test files. */
export const env = {
  /** Why MinIO does not run ("" when it does). */
  skip: "GRAVITON_TEST_MINIO_SKIP",
  endpoint: "GRAVITON_TEST_MINIO_ENDPOINT",
  accessKey: "GRAVITON_TEST_MINIO_ACCESS_KEY",
  secretKey: "GRAVITON_TEST_MINIO_SECRET_KEY"
} as const

/** A running MinIO. */
export interface MinioServer {
  readonly endpoint: string
  readonly accessKeyId: string
  readonly secretAccessKey: string
  /** The self-signed certificate (PEM) clients must trust. */
  readonly certificate: string
  readonly stop: () => Promise<void>
}

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => (typeof address === "object" && address !== null ? resolve(address.port) : reject(new Error("no port"))))
    })
  })

/** A self-signed certificate for 127.0.0.1 in MinIO's certs folder layout (public.crt, private.key). */
const makeCertificate = (certs: string): string => {
  mkdirSync(certs, { recursive: true })
  execFileSync("openssl", [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-days",
    "7",
    "-subj",
    "/CN=graviton-test-minio",
    "-addext",
    "subjectAltName=IP:127.0.0.1,DNS:localhost",
    "-keyout",
    join(certs, "private.key"),
    "-out",
    join(certs, "public.crt")
  ], { stdio: "ignore" })
  return readFileSync(join(certs, "public.crt"), "utf8")
}

/** True when MinIO answers its liveness probe over TLS with our certificate. */
const live = (endpoint: string, ca: string): Promise<boolean> =>
  new Promise((resolve) => {
    const req = request(`${endpoint}/minio/health/live`, { ca, timeout: 1000 }, (res) => {
      res.resume()
      resolve(res.statusCode === 200)
    })
    req.on("error", () => resolve(false))
    req.on("timeout", () => req.destroy())
    req.end()
  })

/** Starts MinIO over TLS on a free loopback port, data and certificate in a temp folder. */
export const start = async (): Promise<MinioServer> => {
  if (!existsSync(binary)) throw new Error(`MinIO is not installed at ${binary} (run scripts/install-minio.sh)`)
  const dir = mkdtempSync(join(tmpdir(), "graviton-minio-"))
  const certificate = makeCertificate(join(dir, "certs"))
  const accessKeyId = "graviton-test"
  const secretAccessKey = randomBytes(16).toString("hex")
  for (let attempt = 0; attempt < 3; attempt++) {
    const [port, consolePort] = [await freePort(), await freePort()]
    const child: ChildProcess = spawn(binary, [
      "server",
      join(dir, "data"),
      "--address",
      `127.0.0.1:${port}`,
      "--console-address",
      `127.0.0.1:${consolePort}`,
      "--certs-dir",
      join(dir, "certs"),
      "--quiet"
    ], {
      stdio: ["ignore", "pipe", "pipe"],
      env: {
        ...process.env,
        MINIO_ROOT_USER: accessKeyId,
        MINIO_ROOT_PASSWORD: secretAccessKey,
        // A static KMS key: SSE-S3 (and SSE-KMS with this key id) work without a KMS server.
        MINIO_KMS_SECRET_KEY: `graviton-test-key:${randomBytes(32).toString("base64")}`,
        MINIO_BROWSER: "off",
        MINIO_UPDATE: "off"
      }
    })
    let log = ""
    child.stdout!.on("data", (d) => (log = (log + d).slice(-4000)))
    child.stderr!.on("data", (d) => (log = (log + d).slice(-4000)))
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
    const endpoint = `https://127.0.0.1:${port}`
    const deadline = Date.now() + 60_000
    let up = false
    while (!up && child.exitCode === null && child.signalCode === null && Date.now() < deadline) {
      up = await live(endpoint, certificate)
      if (!up) await new Promise((r) => setTimeout(r, 200))
    }
    if (up) {
      const stop = async () => {
        if (child.exitCode === null && child.signalCode === null) {
          const timer = setTimeout(() => child.kill("SIGKILL"), 5000)
          child.kill("SIGTERM")
          await exited
          clearTimeout(timer)
        }
        rmSync(dir, { recursive: true, force: true })
      }
      return { endpoint, accessKeyId, secretAccessKey, certificate, stop }
    }
    child.kill("SIGKILL")
    await exited
    // Someone may have taken a port between probing and binding: try others.
    if (!/address already in use/i.test(log)) {
      rmSync(dir, { recursive: true, force: true })
      throw new Error(`MinIO did not start: ${log}`)
    }
  }
  rmSync(dir, { recursive: true, force: true })
  throw new Error("MinIO could not bind a free port after 3 attempts")
}

/**
 * Writes a CA bundle of our certificate plus whatever NODE_EXTRA_CA_CERTS
 * already named, for NODE_EXTRA_CA_CERTS of the processes started after this
 * (Node reads it once, at start).
 */
export const caBundle = (certificate: string, directory: string): string => {
  const previous = process.env.NODE_EXTRA_CA_CERTS
  const file = join(directory, "graviton-test-ca.pem")
  writeFileSync(file, (previous && existsSync(previous) ? readFileSync(previous, "utf8") + "\n" : "") + certificate)
  return file
}
