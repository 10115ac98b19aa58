#!/usr/bin/env bash
# The multi-replica tests (issue 25) start a real PostgreSQL server and a real haproxy load
# balancer on 127.0.0.1 in temp folders (tests/postgres_server.py, tests/e2e/test_replicas.py).
# Install Debian's packages when missing; nothing is started or enabled as a system service.
set -euo pipefail
have_pg() { ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; }
if have_pg && command -v haproxy >/dev/null 2>&1; then
  exit 0
fi
pkgs="postgresql haproxy"
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "servers: PostgreSQL or haproxy is missing and this user cannot install them;" \
       "run: sudo apt-get install -y $pkgs" >&2
  exit 0
fi
echo "servers: installing Debian $pkgs for the multi-replica tests"
t0=$(date +%s)
# policy-rc.d 101: the packages' scripts must not start system-wide services here.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && made_policy=1
fi
trap '[ "$made_policy" = 1 ] && rm -f "$policy"' EXIT
if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $pkgs >/dev/null 2>&1; then
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $pkgs >/dev/null
fi
echo "servers: ready in $(( $(date +%s) - t0 )) s ($(haproxy -v 2>&1 | head -1 | cut -c1-40))"
