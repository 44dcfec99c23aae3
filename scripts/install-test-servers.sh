#!/usr/bin/env bash
# Makes sure the servers the test harness starts are installed: PostgreSQL's
# server binaries (Debian package) and moto (Python, in .venv-moto/). Fast
# and silent-ish when both are there; `npm test` runs it first (pretest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-postgres.sh
bash scripts/install-moto.sh
