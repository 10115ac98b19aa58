#!/usr/bin/env bash
# The widget's browser tests drive Debian's chromium with Playwright (Playwright's own browser
# download does not work offline). Install it, and a CJK font for the Chinese UI, when missing.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && fc-list 2>/dev/null | grep -qi "wenquanyi\|noto sans cjk"; then
  exit 0
fi
t0=$(date +%s)
bash "$(dirname "$0")/debian_install.sh" browser "the widget's browser tests" chromium fonts-wqy-microhei
command -v chromium >/dev/null 2>&1 || exit 0
echo "browser: ready in $(( $(date +%s) - t0 )) s ($(chromium --version 2>/dev/null | head -c 40))"
