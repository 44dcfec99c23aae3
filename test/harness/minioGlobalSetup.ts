/**
 * vitest globalSetup: one MinIO server (minio.ts: TLS, self-signed
 * certificate) for the whole test run when scripts/install-minio.sh has built
 * it, handed to the test files through the environment: its endpoint and keys,
 * and NODE_EXTRA_CA_CERTS naming its certificate, which the workers (started
 * after this) and the CLI processes they spawn read when they start. When
 * MinIO is not installed the reason is handed over instead and the `minio`
 * candidate of the S3 suites is skipped with it.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { binary, caBundle, env, start } from "./minio.js"

export default async function setup(): Promise<() => Promise<void>> {
  if (!existsSync(binary)) {
    process.env[env.skip] = `MinIO is not installed (run scripts/install-minio.sh; expected ${binary})`
    return async () => {}
  }
  const server = await start()
  const bundleDir = mkdtempSync(join(tmpdir(), "graviton-ca-"))
  process.env.NODE_EXTRA_CA_CERTS = caBundle(server.certificate, bundleDir)
  process.env[env.skip] = ""
  process.env[env.endpoint] = server.endpoint
  process.env[env.accessKey] = server.accessKeyId
  process.env[env.secretKey] = server.secretAccessKey
  return async () => {
    await server.stop()
    rmSync(bundleDir, { recursive: true, force: true })
  }
}
