#!/usr/bin/env bash
# chromium-up.sh - install headless Chromium from the system's Debian packages, for tests/test_report.py
# (the HTML report is loaded in a real browser). Idempotent; exits non-zero if it cannot install, and the
# caller goes on: the report test then skips, saying chromium is missing.
set -euo pipefail
if command -v chromium > /dev/null 2>&1 || command -v chromium-browser > /dev/null 2>&1; then
  echo "chromium-up: $(command -v chromium || command -v chromium-browser) already installed"
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get > /dev/null 2>&1; then
  echo "chromium-up: needs root and apt-get to install chromium" >&2
  exit 1
fi
APTLOG=$(mktemp /tmp/chromium-apt.XXXXXX.log)
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update && apt-get install -y --no-install-recommends chromium; } > "$APTLOG" 2>&1; then
  tail -20 "$APTLOG" >&2
  echo "chromium-up: apt-get failed (full log: $APTLOG)" >&2
  exit 1
fi
rm -f "$APTLOG"
echo "chromium-up: installed $(command -v chromium)"
