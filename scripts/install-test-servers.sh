#!/usr/bin/env bash
# Makes sure the servers the test harness starts are installed: PostgreSQL's
# server binaries (Debian package), moto (Python, in .venv-moto/), Flyway's
# jars (Maven Central, for the Flyway interoperability tests) and MinIO
# (built from the Go module proxy; minutes the first time, then cached).
# Fast and silent-ish when all are there; `npm test` runs it first (pretest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-postgres.sh
bash scripts/install-moto.sh
bash scripts/install-flyway.sh
bash scripts/install-minio.sh
