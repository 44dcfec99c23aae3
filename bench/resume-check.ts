/**
 * The cost of `upload --resume`'s source check on a large file (issue #16):
 * half of a file is uploaded, then a "new process" (a fresh layer) resumes:
 * the fingerprint check (`resume`), the proof (the last landed segment
 * re-sent and compared with its digest), and for scale the rest of the
 * transfer with `complete`. Run: npx tsx bench/resume-check.ts [MiB, default 512]
 */
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { randomFillSync } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as EmbeddedStore from "../src/stores/EmbeddedStore.js"
import { Uploads } from "../src/uploads/Uploads.js"

const MiB = 1024 * 1024
const size = Number(process.argv[2] ?? 512) * MiB
const seg = 8 * MiB
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "resume-check-"))
const file = path.join(dir, "in.bin")
const fd = fs.openSync(file, "w")
const buf = Buffer.alloc(seg)
for (let at = 0; at < size; at += seg) fs.writeSync(fd, randomFillSync(buf), 0, seg, at)
fs.closeSync(fd)
const st = fs.statSync(file, { bigint: true })
const source = `file:size=${st.size};mtime=${st.mtimeNs};ctime=${st.ctimeNs};dev=${st.dev};ino=${st.ino}`
const read = (start: number, end: number) => {
  const b = Buffer.alloc(end - start)
  const h = fs.openSync(file, "r")
  fs.readSync(h, b, 0, b.length, start)
  fs.closeSync(h)
  return Stream.make(new Uint8Array(b.buffer, b.byteOffset, b.length))
}
const send = (u: Uploads["Type"], id: string, from: number, to: number) =>
  Effect.forEach(Array.from({ length: (to - from) / seg }, (_, i) => from + i * seg), (at) => u.write(id, at, read(at, at + seg)), { concurrency: 4, discard: true })
const ms = (t: number) => `${(performance.now() - t).toFixed(1)} ms`
const layer = () => EmbeddedStore.layerWithUploads({ home: path.join(dir, "home") })

const main = Effect.gen(function*() {
  const id = yield* Effect.provide(Effect.gen(function*() {
    const u = yield* Uploads
    const id = yield* u.begin({ size, source })
    yield* send(u, id, 0, size / 2)
    return id
  }), layer())
  yield* Effect.provide(Effect.gen(function*() {
    const u = yield* Uploads
    let t = performance.now()
    const status = yield* u.resume(id, { source })
    console.log(`fingerprint check (resume): ${ms(t)}; landed ${status.received / MiB} MiB of ${size / MiB} MiB`)
    t = performance.now()
    const last = status.landed[status.landed.length - 1]!
    const w = yield* u.write(id, last.end - seg, read(last.end - seg, last.end))
    console.log(`proof (last landed 8 MiB segment read, hashed, compared; ${w.written} bytes written): ${ms(t)}`)
    t = performance.now()
    yield* send(u, id, size / 2, size)
    yield* u.complete(id)
    console.log(`for scale: sending the other ${size / 2 / MiB} MiB and complete: ${ms(t)}`)
  }), layer())
})
Effect.runPromise(main).finally(() => fs.rmSync(dir, { recursive: true, force: true }))
