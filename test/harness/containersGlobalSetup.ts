/**
 * vitest globalSetup: asks once per run whether a container runtime answers
 * (containers.ts), says what it found on one line, and where one does,
 * starts a PostgreSQL and a MinIO container for the whole run and hands them
 * to the test files through the environment (the workers start after this
 * and inherit it). Stops them at the end.
 */
import { env, images, selector, testcontainersProbe } from "./containers.js"

export default async function setup(): Promise<() => Promise<void>> {
  const selection = await selector(testcontainersProbe, (line) => console.log(line))()
  if (!selection.containers) {
    process.env[env.skip] = selection.skip
    return async () => {}
  }
  const { PostgreSqlContainer } = await import("@testcontainers/postgresql")
  const { MinioContainer } = await import("@testcontainers/minio")
  const [pg, minio] = await Promise.all([
    new PostgreSqlContainer(images.postgres).start(),
    new MinioContainer(images.minio).start()
  ])
  process.env[env.skip] = ""
  process.env[env.pgUrl] = pg.getConnectionUri()
  process.env[env.minioEndpoint] = minio.getConnectionUrl()
  process.env[env.minioAccessKey] = minio.getUsername()
  process.env[env.minioSecretKey] = minio.getPassword()
  return async () => {
    await Promise.all([pg.stop(), minio.stop()])
  }
}
