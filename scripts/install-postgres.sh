#!/usr/bin/env bash
# Installs Debian's PostgreSQL server for the PostgreSQL test harness
# (test/harness/pgCluster.ts runs initdb/postgres from it). Idempotent: when
# the server binaries are already there, nothing is installed and apt is not
# touched. Runs as root on a fresh Debian 12 machine in CI.
set -euo pipefail

find_bindir() {
  if [ -n "${GRAVITON_PG_BINDIR:-}" ] && [ -x "$GRAVITON_PG_BINDIR/initdb" ] && [ -x "$GRAVITON_PG_BINDIR/postgres" ]; then
    echo "$GRAVITON_PG_BINDIR"
    return 0
  fi
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n -r); do
    if [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ]; then
      echo "$dir"
      return 0
    fi
  done
  return 1
}

if bindir="$(find_bindir)"; then
  echo "install-postgres: server binaries already in $bindir ($("$bindir/postgres" --version))"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-postgres: PostgreSQL server binaries are missing; install the 'postgresql' package (needs root)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update
# The server only: Debian's default major version (15 on Debian 12). The
# package creates the `postgres` user the harness runs the cluster as; its
# own cluster service is not needed (and does not start in containers).
apt-get install -y --no-install-recommends postgresql

bindir="$(find_bindir)" || { echo "install-postgres: installed, but initdb/postgres were not found" >&2; exit 1; }
id postgres >/dev/null 2>&1 || { echo "install-postgres: the 'postgres' user is missing" >&2; exit 1; }
echo "install-postgres: installed $("$bindir/postgres" --version) in $bindir"
