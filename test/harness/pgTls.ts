/**
 * TLS on the test PostgreSQL server: a self-signed CA and a server
 * certificate made with openssl (for 127.0.0.1 and localhost), installed on a
 * running local cluster with ALTER SYSTEM and a configuration reload
 * (`ssl` and its files take effect on reload, no restart). Connections without
 * TLS keep working (pg_hba's `host` lines accept both), so the other test
 * files sharing the server are unaffected; `disable` turns it off again.
 *
 * Also made: a second, unrelated CA (`wrongCaFile`), for the client that
 * must refuse the server.
 */
import { spawnSync } from "node:child_process"
import { chmodSync, chownSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Pg from "pg"

export interface PgTls {
  /** The CA that signed the server's certificate (PEM). */
  readonly caFile: string
  /** A CA that signed nothing the server has (PEM). */
  readonly wrongCaFile: string
  /** Turns TLS off again and deletes the files. */
  readonly disable: () => Promise<void>
}

const openssl = (args: ReadonlyArray<string>, cwd: string): void => {
  const r = spawnSync("openssl", args, { cwd, encoding: "utf8" })
  if (r.status !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr || r.error}`)
}

/** Whether openssl can be run here (else the TLS tests skip, saying so). */
export const opensslMissing = (): string | undefined =>
  spawnSync("openssl", ["version"]).status === 0 ? undefined : "openssl is not installed on this machine"

/** A self-signed CA in `dir` named `name` (name.key, name.pem). */
const makeCa = (dir: string, name: string, subject: string): void =>
  openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", subject, "-keyout", `${name}.key`, "-out", `${name}.pem`], dir)

/**
 * Turns TLS on for the server at `adminUrl` (a superuser URL of a cluster on
 * this machine). Returns a reason instead when that cannot be done here.
 */
export const enableTls = async (adminUrl: string): Promise<PgTls | string> => {
  const missing = opensslMissing()
  if (missing !== undefined) return missing
  const admin = new Pg.Client({ connectionString: adminUrl })
  await admin.connect()
  try {
    const { rows } = await admin.query("SELECT current_setting('data_directory', true) AS dir, rolsuper FROM pg_roles WHERE rolname = current_user")
    const dataDir = rows[0]?.dir as string | null
    if (rows[0]?.rolsuper !== true || dataDir === null || !existsSync(dataDir)) {
      return "the test server is not a local cluster this test may configure (superuser, data directory on this machine)"
    }
    // The server reads the key as its own user, which must own it (mode 0600).
    const owner = statSync(dataDir)
    const dir = mkdtempSync(join(tmpdir(), "graviton-pg-tls-"))
    chmodSync(dir, 0o755)
    makeCa(dir, "ca", "/CN=Graviton test CA")
    makeCa(dir, "wrong-ca", "/CN=Someone else's CA")
    writeFileSync(join(dir, "server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n")
    openssl(["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr"], dir)
    openssl(["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-extfile", "server.ext", "-out", "server.pem"], dir)
    chmodSync(join(dir, "server.key"), 0o600)
    if (process.getuid?.() === 0) chownSync(join(dir, "server.key"), owner.uid, owner.gid)
    for (const f of ["server.pem", "ca.pem", "wrong-ca.pem"]) chmodSync(join(dir, f), 0o644)

    const set = async (name: string, value: string) => admin.query(`ALTER SYSTEM SET ${name} = '${value.replace(/'/g, "''")}'`)
    await set("ssl_cert_file", join(dir, "server.pem"))
    await set("ssl_key_file", join(dir, "server.key"))
    await set("ssl", "on")
    await admin.query("SELECT pg_reload_conf()")
    // The reload is asynchronous: wait until a new session sees TLS on.
    const deadline = Date.now() + 15_000
    for (;;) {
      const probe = new Pg.Client({ connectionString: adminUrl })
      await probe.connect()
      const on = (await probe.query("SHOW ssl")).rows[0]?.ssl === "on"
      await probe.end()
      if (on) break
      if (Date.now() > deadline) throw new Error("the server did not turn TLS on after a reload (see its log: key or certificate refused?)")
      await new Promise((r) => setTimeout(r, 100))
    }
    return {
      caFile: join(dir, "ca.pem"),
      wrongCaFile: join(dir, "wrong-ca.pem"),
      disable: async () => {
        const off = new Pg.Client({ connectionString: adminUrl })
        await off.connect()
        try {
          for (const name of ["ssl", "ssl_cert_file", "ssl_key_file"]) await off.query(`ALTER SYSTEM RESET ${name}`)
          await off.query("SELECT pg_reload_conf()")
        } finally {
          await off.end()
        }
        rmSync(dir, { recursive: true, force: true })
      }
    }
  } finally {
    await admin.end()
  }
}
