"""Proof that nothing leaves the machine: an audit hook on ``socket.connect``.

``KB_NET_AUDIT=/path/file`` (set by the test suite, or by an operator who wants proof)
makes every entry point record each attempted connection to a non-loopback address as one
JSON line in that file; ``KB_NET_AUDIT_BLOCK=1`` also refuses it. Addresses listed in
``KB_NET_AUDIT_ALLOW`` (comma-separated hosts, e.g. a Chroma server) are allowed. Unix
sockets and loopback are always allowed. Each process that turns the audit on first writes a
header line (``{"event": "audit-start", ...}``), so an audit with no attempt leaves a file
that proves it was on; :func:`read_log` returns the attempts only.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import sys
import time
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import Any

AUDIT_ENV = "KB_NET_AUDIT"
BLOCK_ENV = "KB_NET_AUDIT_BLOCK"
ALLOW_ENV = "KB_NET_AUDIT_ALLOW"
_installed: set[str] = set()


def is_local(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def install(log_file: Path, *, block: bool = False, allow: Iterable[str] = ()) -> None:
    """Record (and with ``block``, refuse) connections to non-loopback addresses."""
    key = str(log_file)
    if key in _installed:
        return
    _installed.add(key)
    allowed = frozenset(allow)
    header = {
        "event": "audit-start",
        "time": time.time(),
        "pid": os.getpid(),
        "argv": sys.argv[:3],
        "block": block,
        "allow": sorted(allowed),
    }
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "a", encoding="utf-8") as out:
        out.write(json.dumps(header) + "\n")

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event != "socket.connect":
            return
        sock, address = args[0], args[1]
        if getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6):
            return
        host = str(address[0]) if isinstance(address, tuple) and address else str(address)
        if is_local(host) or host in allowed:
            return
        entry = {
            "time": time.time(),
            "pid": os.getpid(),
            "argv": sys.argv[:3],
            "address": [host, address[1] if isinstance(address, tuple) else None],
            "stack": traceback.format_stack(limit=12)[:-1],
        }
        with open(log_file, "a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")
        if block:
            raise PermissionError(f"outbound connection to {host} refused (no data leaves)")

    sys.addaudithook(hook)


def install_from_env() -> None:
    target = os.environ.get(AUDIT_ENV)
    if target:
        allow = [h for h in os.environ.get(ALLOW_ENV, "").split(",") if h]
        install(Path(target), block=os.environ.get(BLOCK_ENV) == "1", allow=allow)


def read_log(log_file: Path) -> list[dict[str, Any]]:
    """The attempted connections recorded in ``log_file`` (header lines left out)."""
    if not log_file.exists():
        return []
    entries = [json.loads(line) for line in log_file.read_text().splitlines() if line.strip()]
    return [e for e in entries if "event" not in e]
