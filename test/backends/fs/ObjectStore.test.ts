import { afterAll } from "@effect/vitest"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as FsObjectStore from "../../../src/backends/fs/FsObjectStore.js"
import { testMutableObjectStore } from "../../../src/testing/ObjectStore.js"

// One temporary root for this file, shared by the suite (each test works under its own prefix).
const root = mkdtempSync(join(tmpdir(), "graviton-fs-conformance-"))
afterAll(() => rmSync(root, { recursive: true, force: true }))

// The store declares what it lacks (fileAndPrefix: objects are files); the suite reads it from the store.
testMutableObjectStore("fs", FsObjectStore.layer({ root }), { scheme: "file", bucket: "conformance" })
