#!/usr/bin/env bash
# Installs moto (a local S3-compatible server, Python) into .venv-moto/ at the
# repository root, for the S3 test harness (test/harness/s3.ts). Idempotent:
# a venv that already has a working moto_server is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=".venv-moto"
SPEC="moto[server]"

if [ -x "$VENV/bin/moto_server" ] && "$VENV/bin/python" -c "import moto.server" >/dev/null 2>&1; then
  echo "install-moto: $VENV already has moto $("$VENV/bin/python" -c 'import moto; print(moto.__version__)')"
  exit 0
fi

# Debian ships python3 without ensurepip unless python3-venv is installed.
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-moto: python3 with the venv module is missing; install python3-venv (needs root)" >&2
    exit 1
  fi
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv
fi

rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$SPEC"
"$VENV/bin/python" -c "import moto.server; import moto; print('install-moto: moto', moto.__version__, 'installed in $VENV')"
