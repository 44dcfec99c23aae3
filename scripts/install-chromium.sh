#!/usr/bin/env bash
# Installs Debian's Chromium for the browser test of the gateway's page
# (test/gateway/page.test.ts, driven by playwright-core with
# executablePath /usr/bin/chromium). Needs root and apt-get; where either is
# missing, or the install fails, it says why and exits 0: the browser test is
# then skipped with its reason in the title. GRAVITON_SKIP_CHROMIUM=1 skips
# the install on purpose.
set -uo pipefail

for candidate in /usr/bin/chromium /usr/bin/chromium-browser /usr/bin/google-chrome; do
  if [ -x "$candidate" ]; then
    echo "install-chromium: $("$candidate" --version 2>/dev/null | head -1) at $candidate"
    exit 0
  fi
done
if [ "${GRAVITON_SKIP_CHROMIUM:-}" = "1" ]; then
  echo "install-chromium: GRAVITON_SKIP_CHROMIUM=1: not installing Chromium; the browser test will be skipped"
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "install-chromium: not root, cannot apt-get install chromium: the browser test will be skipped"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-chromium: no apt-get on this machine: the browser test will be skipped (install Chromium at /usr/bin/chromium)"
  exit 0
fi
echo "install-chromium: apt-get install chromium"
log="$(mktemp)"
if DEBIAN_FRONTEND=noninteractive apt-get update >"$log" 2>&1 \
  && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium >>"$log" 2>&1; then
  echo "install-chromium: $(/usr/bin/chromium --version 2>/dev/null | head -1)"
else
  echo "install-chromium: apt-get failed; the browser test will be skipped. Its last lines:"
  tail -5 "$log" | sed 's/^/  /'
fi
rm -f "$log"
exit 0
