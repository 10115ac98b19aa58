#!/usr/bin/env bash
# The multi-replica tests (issue 25) start a real PostgreSQL server and a real haproxy load
# balancer on 127.0.0.1 in temp folders (tests/postgres_server.py, tests/e2e/test_replicas.py).
# Install Debian's packages when missing; nothing is started or enabled as a system service.
set -euo pipefail
have_pg() { ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; }
if have_pg && command -v haproxy >/dev/null 2>&1; then
  exit 0
fi
t0=$(date +%s)
bash "$(dirname "$0")/debian_install.sh" servers "the multi-replica tests" \
  --no-install-recommends postgresql haproxy
command -v haproxy >/dev/null 2>&1 || exit 0
echo "servers: ready in $(( $(date +%s) - t0 )) s ($(haproxy -v 2>&1 | head -1 | cut -c1-40))"
