/**
 * The page at `/`: drop a file, watch it upload through tus (/files/),
 * pause and resume, get its key and a download link; below, the stored
 * blobs with their sizes. Plain HTML and a small tus client of its own
 * (creation, HEAD to resume, PATCH in 8 MiB chunks), no framework. The
 * token, when one is needed, is typed in and kept in the browser's
 * localStorage.
 */
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"

const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Graviton</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font: 15px/1.4 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; color: #222 }
  #drop { border: 2px dashed #999; border-radius: 8px; padding: 2rem; text-align: center; cursor: pointer }
  #drop.over { border-color: #36c; background: #eef4ff }
  progress { width: 100%; height: 1rem }
  code { word-break: break-all }
  table { width: 100%; border-collapse: collapse } td { padding: .2rem .4rem; border-bottom: 1px solid #eee; word-break: break-all }
  td.size { text-align: right; white-space: nowrap }
</style>
</head>
<body>
<h1>Graviton</h1>
<p><label>Token <input id="token" type="password" size="30" autocomplete="off"></label></p>
<div id="drop">Drop a file here, or click to choose one<input id="file" type="file" hidden></div>
<p><progress id="progress" value="0" max="1"></progress></p>
<p><span id="status">No upload yet.</span>
  <button id="pause" disabled>Pause</button> <button id="resume" disabled>Resume</button></p>
<p id="result" hidden>Key: <code id="key"></code> — <a id="download" download>download</a></p>
<h2>Stored blobs</h2>
<table id="blobs"><tbody></tbody></table>
<script>
"use strict"
const CHUNK = 8 * 1024 * 1024
const $ = (id) => document.getElementById(id)
const tokenInput = $("token")
tokenInput.value = localStorage.getItem("graviton-token") || ""
tokenInput.addEventListener("change", () => { localStorage.setItem("graviton-token", tokenInput.value); listBlobs() })
const auth = () => tokenInput.value ? { Authorization: "Bearer " + tokenInput.value } : {}
const tus = () => ({ ...auth(), "Tus-Resumable": "1.0.0" })
const b64 = (s) => btoa(unescape(encodeURIComponent(s)))
const human = (n) => n < 1024 ? n + " B" : n < 1048576 ? (n / 1024).toFixed(1) + " KiB" : n < 1073741824 ? (n / 1048576).toFixed(1) + " MiB" : (n / 1073741824).toFixed(2) + " GiB"

let current = null
function status(text) { $("status").textContent = text }

async function upload(file) {
  $("result").hidden = true
  const saved = "graviton-upload:" + file.name + ":" + file.size + ":" + file.lastModified
  let location = localStorage.getItem(saved)
  let offset = 0
  if (location) {
    const head = await fetch(location, { method: "HEAD", headers: tus() })
    if (head.ok) offset = Number(head.headers.get("Upload-Offset"))
    else location = null
  }
  if (!location) {
    const res = await fetch("files/", { method: "POST", headers: { ...tus(), "Upload-Length": String(file.size), "Upload-Metadata": "filename " + b64(file.name) } })
    if (res.status !== 201) return status("Could not start the upload: HTTP " + res.status)
    location = new URL(res.headers.get("Location"), window.location.href).pathname
    localStorage.setItem(saved, location)
    const key = res.headers.get("Graviton-Key")
    if (key) return done(saved, key)
  }
  current = { file, location, offset, saved, paused: false }
  $("pause").disabled = false
  $("resume").disabled = true
  return send()
}

async function send() {
  const u = current
  while (!u.paused && u.offset < u.file.size) {
    $("progress").value = u.offset / u.file.size
    status("Uploading " + u.file.name + ": " + human(u.offset) + " of " + human(u.file.size))
    const chunk = u.file.slice(u.offset, u.offset + CHUNK)
    let res
    try {
      res = await fetch(u.location, { method: "PATCH", body: chunk, headers: { ...tus(), "Upload-Offset": String(u.offset), "Content-Type": "application/offset+octet-stream" } })
    } catch (e) {
      u.paused = true
      $("pause").disabled = true; $("resume").disabled = false
      return status("Connection lost at " + human(u.offset) + "; press Resume")
    }
    if (res.status === 409 || res.status === 423) {
      const head = await fetch(u.location, { method: "HEAD", headers: tus() })
      u.offset = Number(head.headers.get("Upload-Offset"))
      continue
    }
    if (res.status !== 204) return status("Upload failed: HTTP " + res.status)
    u.offset = Number(res.headers.get("Upload-Offset"))
    const key = res.headers.get("Graviton-Key")
    if (key) return done(u.saved, key)
  }
  if (u.paused) status("Paused at " + human(u.offset) + " of " + human(u.file.size))
}

function done(saved, key) {
  localStorage.removeItem(saved)
  current = null
  $("progress").value = 1
  $("pause").disabled = true; $("resume").disabled = true
  status("Stored.")
  $("key").textContent = key
  $("download").href = "blobs/" + key
  $("result").hidden = false
  listBlobs()
}

$("pause").addEventListener("click", () => { if (current) { current.paused = true; $("pause").disabled = true; $("resume").disabled = false } })
$("resume").addEventListener("click", async () => {
  if (!current) return
  const head = await fetch(current.location, { method: "HEAD", headers: tus() })
  if (!head.ok) return status("The upload is gone (HTTP " + head.status + "); drop the file again")
  current.offset = Number(head.headers.get("Upload-Offset"))
  current.paused = false
  $("pause").disabled = false; $("resume").disabled = true
  send()
})

const drop = $("drop")
drop.addEventListener("click", () => $("file").click())
$("file").addEventListener("change", (e) => { if (e.target.files[0]) upload(e.target.files[0]) })
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over") })
drop.addEventListener("dragleave", () => drop.classList.remove("over"))
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); if (e.dataTransfer.files[0]) upload(e.dataTransfer.files[0]) })

async function listBlobs() {
  const res = await fetch("blobs?limit=100", { headers: auth() })
  const body = $("blobs").tBodies[0]
  body.textContent = ""
  if (!res.ok) { body.insertRow().insertCell().textContent = "Listing refused: HTTP " + res.status; return }
  const page = await res.json()
  page.blobs.sort((a, b) => (b.createdAt || "").localeCompare(a.createdAt || ""))
  for (const b of page.blobs) {
    const row = body.insertRow()
    const link = document.createElement("a")
    link.href = "blobs/" + b.key
    link.textContent = b.key
    row.insertCell().appendChild(link)
    const size = row.insertCell()
    size.className = "size"
    size.textContent = human(b.size)
  }
}
listBlobs()
</script>
</body>
</html>
`

/** GET / */
export const page = Effect.succeed(
  HttpServerResponse.text(html, { contentType: "text/html; charset=utf-8", headers: { "cache-control": "no-cache" } })
)
