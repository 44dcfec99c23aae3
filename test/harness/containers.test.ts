/**
 * The harness's choice between containers and local servers
 * (containers.ts), driven by a fake runtime probe: these machines have no
 * container daemon, so the "runtime answers" branch can only be reached so.
 */
import { describe, expect, it } from "@effect/vitest"
import { containerSkip, env, images, pgTargets, type Probe, selector, testcontainersProbe } from "./containers.js"
import { makeCandidates } from "./s3.js"

const fake = (answer: Awaited<ReturnType<Probe>> | Error) => {
  const calls = { n: 0 }
  const probe: Probe = () => {
    calls.n++
    return answer instanceof Error ? Promise.reject(answer) : Promise.resolve(answer)
  }
  return { probe, calls }
}

describe("container selection", () => {
  it("a runtime that answers: containers are used, said once, the probe asked once", async () => {
    const { calls, probe } = fake({ _tag: "Answered", runtime: "unix:///fake/docker.sock" })
    const lines: Array<string> = []
    const select = selector(probe, (l) => lines.push(l))
    const first = await select()
    const again = await select()
    expect(first).toBe(again)
    expect(first.containers).toBe(true)
    expect(first.skip).toBeUndefined()
    expect(calls.n).toBe(1)
    expect(lines).toHaveLength(1)
    expect(lines[0]).toContain("unix:///fake/docker.sock")
    expect(lines[0]).toContain(images.postgres)
    expect(lines[0]).toContain(images.minio)
  })

  it("no runtime: local servers only, the reason said once", async () => {
    const { probe } = fake({ _tag: "None", reason: "no container runtime answers (fake)" })
    const lines: Array<string> = []
    const select = selector(probe, (l) => lines.push(l))
    await select()
    const chosen = await select()
    expect(chosen.containers).toBe(false)
    expect(chosen.skip).toBe("no container runtime answers (fake)")
    expect(lines).toEqual(["test servers: no container runtime answers (fake): PostgreSQL and S3 suites use local servers only"])
  })

  it("a probe that throws counts as no runtime", async () => {
    const chosen = await selector(fake(new Error("socket hang up")).probe, () => {})()
    expect(chosen.containers).toBe(false)
    expect(chosen.skip).toContain("socket hang up")
  })

  it("the real probe answers with one of the two shapes; GRAVITON_TEST_CONTAINERS=0 turns containers off", async () => {
    const found = await testcontainersProbe()
    expect(found._tag === "Answered" ? found.runtime : found.reason).not.toBe("")
    const saved = process.env.GRAVITON_TEST_CONTAINERS
    process.env.GRAVITON_TEST_CONTAINERS = "0"
    try {
      expect(await testcontainersProbe()).toEqual({ _tag: "None", reason: "GRAVITON_TEST_CONTAINERS=0" })
    } finally {
      if (saved === undefined) delete process.env.GRAVITON_TEST_CONTAINERS
      else process.env.GRAVITON_TEST_CONTAINERS = saved
    }
  })

  it("what the global setup hands over decides the PostgreSQL servers and their titles", () => {
    expect(pgTargets({})).toEqual([{ label: "local postgres", url: undefined }])
    expect(pgTargets({ [env.pgUrl]: "postgres://u:p@127.0.0.1:5999/postgres" })).toEqual([
      { label: "local postgres", url: undefined },
      { label: `${images.postgres} container`, url: "postgres://u:p@127.0.0.1:5999/postgres" }
    ])
  })

  it("and the MinIO container candidate of the S3 suites: skipped with the probe's reason, or started", async () => {
    const none = makeCandidates({ [env.skip]: "no container runtime answers (fake)" }).find((c) => c.name === "minio-container")!
    expect(none.skip).toBe("no container runtime answers (fake)")
    expect(containerSkip({})).toContain("did not run")
    const running = makeCandidates({
      [env.skip]: "",
      [env.minioEndpoint]: "http://127.0.0.1:9999",
      [env.minioAccessKey]: "access",
      [env.minioSecretKey]: "secret"
    }).find((c) => c.name === "minio-container")!
    expect(running.skip).toBeUndefined()
    expect(await running.start()).toMatchObject({ endpoint: "http://127.0.0.1:9999", accessKeyId: "access", secretAccessKey: "secret" })
  })
})
