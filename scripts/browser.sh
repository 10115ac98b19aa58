#!/usr/bin/env bash
# The widget's browser tests drive Debian's chromium with Playwright (Playwright's own browser
# download does not work offline). Install it, and a CJK font for the Chinese UI, when missing.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && fc-list 2>/dev/null | grep -qi "wenquanyi\|noto sans cjk"; then
  exit 0
fi
pkgs="chromium fonts-wqy-microhei"
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "browser: chromium or a CJK font is missing and this user cannot install them;" \
       "run: sudo apt-get install -y $pkgs" >&2
  exit 0
fi
echo "browser: installing Debian $pkgs for the widget's browser tests"
t0=$(date +%s)
if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q $pkgs >/dev/null 2>&1; then
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $pkgs >/dev/null
fi
echo "browser: ready in $(( $(date +%s) - t0 )) s ($(chromium --version 2>/dev/null | head -c 40))"
