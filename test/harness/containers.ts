/**
 * Container servers for the test harness (Testcontainers): where a container
 * runtime answers, the PostgreSQL and S3 suites also run against a
 * `postgres:15` and a MinIO container; where none answers, the harness says
 * so once per test run and the suites use local servers only.
 *
 * The choice is made once per run by containersGlobalSetup.ts (vitest
 * `globalSetup`), which starts the containers and hands them to the test
 * files through the environment (the variables below), since test/harness/s3.ts
 * must work without vitest too. `select` takes the runtime probe as a
 * parameter, so the choice itself is tested with a fake probe
 * (test/harness/containers.test.ts): these machines have no container daemon.
 *
 * GRAVITON_TEST_CONTAINERS=0 turns containers off even where a runtime answers.
 */

/** What asking for a container runtime found. */
export type ProbeResult =
  | { readonly _tag: "Answered"; readonly runtime: string }
  | { readonly _tag: "None"; readonly reason: string }

/** Asks whether a container runtime answers. */
export type Probe = () => Promise<ProbeResult>

/** Images the containers run (pinned, so a run is reproducible). */
export const images = {
  postgres: "postgres:15",
  minio: "minio/minio:RELEASE.2024-12-18T13-15-44Z"
} as const

/** Environment variables through which the global setup hands the choice to test files. */
export const env = {
  /** Why no container runs ("" when they do). */
  skip: "GRAVITON_TEST_CONTAINERS_SKIP",
  /** Superuser URL of the PostgreSQL container. */
  pgUrl: "GRAVITON_TEST_CONTAINER_PG_URL",
  /** Endpoint, access key and secret key of the MinIO container. */
  minioEndpoint: "GRAVITON_TEST_CONTAINER_MINIO_ENDPOINT",
  minioAccessKey: "GRAVITON_TEST_CONTAINER_MINIO_ACCESS_KEY",
  minioSecretKey: "GRAVITON_TEST_CONTAINER_MINIO_SECRET_KEY"
} as const

/** The real probe: Testcontainers' own runtime detection (Docker, Podman, Colima ... as it finds them). */
export const testcontainersProbe: Probe = async () => {
  if (process.env.GRAVITON_TEST_CONTAINERS === "0") return { _tag: "None", reason: "GRAVITON_TEST_CONTAINERS=0" }
  try {
    const { getContainerRuntimeClient } = await import("testcontainers")
    const client = await getContainerRuntimeClient()
    return { _tag: "Answered", runtime: `${client.info.containerRuntime.host} (${client.info.containerRuntime.remoteSocketPath})` }
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e)
    return { _tag: "None", reason: `no container runtime answers (${message.split("\n")[0]})` }
  }
}

/** Which servers a test run uses. */
export interface Selection {
  /** True when the suites also run against containers. */
  readonly containers: boolean
  /** The one line the harness prints about it. */
  readonly note: string
  /** Why containers are not used (undefined when they are). */
  readonly skip: string | undefined
}

/**
 * Decides, from the probe, whether the suites also run against containers,
 * and says so through `log` once (later calls return the same answer
 * without asking or printing again). A probe that throws counts as no
 * runtime.
 */
export const selector = (probe: Probe, log: (line: string) => void): (() => Promise<Selection>) => {
  let chosen: Promise<Selection> | undefined
  return () =>
    (chosen ??= probe().catch((e): ProbeResult => ({ _tag: "None", reason: `the runtime probe failed: ${String(e)}` })).then(
      (found) => {
        const selection: Selection = found._tag === "Answered"
          ? {
            containers: true,
            skip: undefined,
            note: `test servers: container runtime ${found.runtime}: PostgreSQL and S3 suites also run on ` +
              `${images.postgres} and ${images.minio} containers`
          }
          : {
            containers: false,
            skip: found.reason,
            note: `test servers: ${found.reason}: PostgreSQL and S3 suites use local servers only`
          }
        log(selection.note)
        return selection
      }
    ))
}

/** A server a suite runs against; its label goes in the test titles. */
export interface PgTarget {
  readonly label: string
  /** Superuser URL, or undefined for the local server of postgres.ts (started on demand). */
  readonly url: string | undefined
}

/** The PostgreSQL servers of a test file, from what the global setup left in `environment`. */
export const pgTargets = (environment: NodeJS.ProcessEnv = process.env): ReadonlyArray<PgTarget> => {
  const local: PgTarget = { label: "local postgres", url: undefined }
  const container = environment[env.pgUrl]
  return container ? [local, { label: `${images.postgres} container`, url: container }] : [local]
}

/** Why the container candidates are skipped in this test file, from what the global setup left in `environment`. */
export const containerSkip = (environment: NodeJS.ProcessEnv = process.env): string | undefined =>
  environment[env.skip] ||
  (environment[env.minioEndpoint] || environment[env.pgUrl]
    ? undefined
    : "no container was started for this run (containersGlobalSetup.ts did not run)")
