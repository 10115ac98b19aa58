#!/usr/bin/env bash
# Install Debian packages for the test suite, as root, when a caller found them missing:
#   scripts/debian_install.sh LABEL "what they are for" [apt-get options] PACKAGE...
# (scripts/browser.sh, scripts/servers.sh). A user who cannot install them is told the
# command to run, and set-up goes on. Package scripts start no system service here
# (policy-rc.d 101): the tests start what they need themselves.
set -euo pipefail
label=$1 why=$2
shift 2
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "$label: missing, and this user cannot install them; run: sudo apt-get install -y $*" >&2
  exit 0
fi
echo "$label: installing Debian $* for $why"
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && made_policy=1
fi
trap 'if [ "$made_policy" = 1 ]; then rm -f "$policy"; fi' EXIT
if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1; then
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
fi
