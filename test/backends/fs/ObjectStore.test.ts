import { afterAll } from "@effect/vitest"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as FsObjectStore from "../../../src/backends/fs/FsObjectStore.js"
import { unsupported } from "../../../src/testing/capabilities.js"
import { testMutableObjectStore } from "../../../src/testing/ObjectStore.js"

// One temporary root for this file, shared by the suite (each test works under its own prefix).
const root = mkdtempSync(join(tmpdir(), "graviton-fs-conformance-"))
afterAll(() => rmSync(root, { recursive: true, force: true }))

testMutableObjectStore("fs", FsObjectStore.layer({ root }), {
  scheme: "file",
  bucket: "conformance",
  fileAndPrefix: unsupported("objects are files: `a` cannot be a file and the directory holding `a/b` (Conflict)")
})
