#!/usr/bin/env node
// Runs the TypeScript CLI through tsx's loader, so a fresh clone needs no build step.
import { register } from "tsx/esm/api"
import { dirname, join } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

register()
const main = join(dirname(fileURLToPath(import.meta.url)), "..", "src", "cli", "main.ts")
await import(pathToFileURL(main).href)
