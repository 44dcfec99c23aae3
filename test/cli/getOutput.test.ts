/**
 * `get -o` writes where a person expects, as `cp` and `curl -o` do (issue
 * #16, item 1): into a device, FIFO or socket in place; through a symbolic
 * link to its target; over a regular file atomically, keeping its mode and
 * owner; with a temporary name that fits any legal file name.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { hasTrace, isRoot, removeTempDirs, run, sha256Key, tempDir } from "./runCli.js"

afterAll(removeTempDirs)

describe("get -o", () => {
  let home: string
  let work: string
  const content = randomBytes(200 * 1024 + 3)
  const key = sha256Key(content)

  beforeAll(async () => {
    home = tempDir("getout-home")
    work = tempDir("getout-work")
    fs.writeFileSync(path.join(work, "data.bin"), content)
    const put = await run(["put", path.join(work, "data.bin")], { home })
    expect(put.out.trim()).toBe(key)
  })

  const noPartFiles = (dir: string) => expect(fs.readdirSync(dir).filter((f) => f.endsWith(".part"))).toEqual([])

  it.skipIf(!isRoot)("-o a character device writes into it and leaves the node (needs root for mknod)", async () => {
    // A private /dev/null twin: the same test on a broken build harms nothing outside this directory.
    const device = path.join(work, "null")
    expect(spawnSync("mknod", ["-m", "666", device, "c", "1", "3"]).status).toBe(0)
    const r = await run(["get", key, "-o", device], { home })
    expect(r.code).toBe(0)
    const st = fs.lstatSync(device)
    expect(st.isCharacterDevice()).toBe(true)
    expect((st.mode & 0o777).toString(8)).toBe("666")
    noPartFiles(work)
  })

  it.skipIf(!isRoot)("-o /dev/null as root writes into the device and leaves it a character device (needs root)", async () => {
    const before = fs.statSync("/dev/null")
    expect(before.isCharacterDevice()).toBe(true)
    const r = await run(["get", key, "-o", "/dev/null"], { home })
    expect(r.code).toBe(0)
    const after = fs.lstatSync("/dev/null")
    expect(after.isCharacterDevice()).toBe(true)
    expect(after.rdev).toBe(before.rdev)
    expect(after.mode).toBe(before.mode)
    noPartFiles("/dev")
  })

  it("-o a FIFO streams the bytes to its reader and leaves the FIFO", async () => {
    const fifo = path.join(work, "fifo")
    expect(spawnSync("mkfifo", [fifo]).status).toBe(0)
    const received = new Promise<Buffer>((resolve, reject) => {
      const chunks: Array<Buffer> = []
      fs.createReadStream(fifo).on("data", (d) => chunks.push(d as Buffer)).on("end", () => resolve(Buffer.concat(chunks)))
        .on("error", reject)
    })
    const r = await run(["get", key, "-o", fifo], { home })
    expect(r.code).toBe(0)
    expect((await received).equals(content)).toBe(true)
    expect(fs.lstatSync(fifo).isFIFO()).toBe(true)
    noPartFiles(work)
  })

  it("-o a Unix socket sends the bytes to whoever listens there", async () => {
    const socketPath = path.join(work, "sock")
    const chunks: Array<Buffer> = []
    const done = new Promise<void>((resolve) => {
      const server = net.createServer((c) => {
        c.on("data", (d) => chunks.push(d))
        c.on("end", () => {
          server.close()
          resolve()
        })
      })
      server.listen(socketPath)
    })
    await new Promise((r) => setTimeout(r, 50))
    const r = await run(["get", key, "-o", socketPath], { home })
    expect(r.stderr).toBe(`wrote ${socketPath} (200.0 KiB, verified) in ${r.stderr.match(/in ([\d.]+) s/)?.[1]} s\n`)
    expect(r.code).toBe(0)
    await done
    expect(Buffer.concat(chunks).equals(content)).toBe(true)
  })

  it("-o a symbolic link writes its target and the link stays; a dangling link creates its target", async () => {
    const target = path.join(work, "target.bin")
    fs.writeFileSync(target, "old")
    const link = path.join(work, "link.bin")
    fs.symlinkSync("target.bin", link)
    const r = await run(["get", key, "-o", link], { home })
    expect(r.code).toBe(0)
    expect(fs.lstatSync(link).isSymbolicLink()).toBe(true)
    expect(fs.readlinkSync(link)).toBe("target.bin")
    expect(fs.readFileSync(target).equals(content)).toBe(true)

    const dangling = path.join(work, "dangling.bin")
    fs.symlinkSync("created.bin", dangling)
    const d = await run(["get", key, "-o", dangling], { home })
    expect(d.code).toBe(0)
    expect(fs.lstatSync(dangling).isSymbolicLink()).toBe(true)
    expect(fs.readFileSync(path.join(work, "created.bin")).equals(content)).toBe(true)
    noPartFiles(work)
  })

  it("an existing 0600 file stays 0600 (and keeps its owner)", async () => {
    const file = path.join(work, "secret.bin")
    fs.writeFileSync(file, "old", { mode: 0o600 })
    fs.chmodSync(file, 0o600)
    if (isRoot) fs.chownSync(file, 1234, 4321)
    const r = await run(["get", key, "-o", file], { home })
    expect(r.code).toBe(0)
    const st = fs.statSync(file)
    expect((st.mode & 0o7777).toString(8)).toBe("600")
    if (isRoot) expect([st.uid, st.gid]).toEqual([1234, 4321])
    expect(fs.readFileSync(file).equals(content)).toBe(true)
    noPartFiles(work)
  })

  it("a 255-byte file name works (the temporary name is shortened to fit)", async () => {
    const name = "n".repeat(255)
    const r = await run(["get", key, "-o", name], { home: work, env: { GRAVITON_HOME: home } })
    expect(r.stderr).not.toContain("too long")
    expect(r.code).toBe(0)
    expect(fs.readFileSync(path.join(work, name)).equals(content)).toBe(true)
    // Multi-byte characters: 85 three-byte characters are 255 bytes.
    const wide = "€".repeat(85)
    const w = await run(["get", key, "-o", wide], { home: work, env: { GRAVITON_HOME: home } })
    expect(w.code).toBe(0)
    expect(fs.readFileSync(path.join(work, wide)).equals(content)).toBe(true)
    noPartFiles(work)
  })

  it("-o a directory is refused with exit 2 and the directory is untouched", async () => {
    const dir = path.join(work, "adir")
    fs.mkdirSync(dir)
    const r = await run(["get", key, "-o", dir], { home })
    expect(r.code).toBe(2)
    expect(r.stderr).toContain("it is a directory")
    expect(hasTrace(r.stderr)).toBe(false)
    expect(fs.statSync(dir).isDirectory()).toBe(true)
  })
})
