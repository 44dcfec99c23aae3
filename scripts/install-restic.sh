#!/usr/bin/env bash
# Builds restic 0.17.3 from the Go module proxy into a cache folder, as the
# peer of `npm run bench:dedup` (bench/dedup.ts). A bench tool only: no test
# depends on it. The binary is cached, so only the first run builds (a few
# minutes on a 2-core machine). Without go, or if the build fails, it says so
# and exits 0: the bench then reports restic as unavailable.
# Prints nothing on stdout but messages; the binary is at
# "$ROOT/restic/$VERSION/restic".
set -euo pipefail

MODULE=github.com/restic/restic/cmd/restic
# `@latest` resolves to the old v0.10.0 (module path quirk): pin the tag.
VERSION=v0.17.3
ROOT="${GRAVITON_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/graviton}"
BIN="$ROOT/restic/$VERSION"

if [ -x "$BIN/restic" ]; then
  echo "install-restic: restic $VERSION already in $BIN"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "install-restic: no go on the PATH: restic unavailable, bench:dedup reports it so (install Go to build restic)"
  exit 0
fi

started=$(date +%s)
echo "install-restic: building restic $VERSION with $(go version) (a few minutes the first time) ..."
mkdir -p "$BIN"
if ! GOBIN="$BIN" GOFLAGS=-trimpath go install "$MODULE@$VERSION"; then
  rm -rf "$BIN"
  echo "install-restic: building restic $VERSION failed after $(( $(date +%s) - started )) s: restic unavailable, bench:dedup reports it so"
  exit 0
fi
echo "install-restic: restic $VERSION built in $BIN ($(( $(date +%s) - started )) s)"
