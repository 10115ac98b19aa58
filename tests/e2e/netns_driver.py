"""Run inside a network namespace with only loopback: ingest, start the server, ask.

Usage: python -m tests.e2e.netns_driver WORKDIR KB_DIR PORT  (prints one JSON line)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx


def main() -> None:
    workdir, kb_dir, port = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    env = {**os.environ, "KB_NET_AUDIT_BLOCK": "1"}
    ingest = subprocess.run(
        [sys.executable, "-m", "ingest.cli", "add", kb_dir, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    result: dict[str, object] = {
        "ingest_rc": ingest.returncode,
        "ingest_err": ingest.stderr[-2000:],
    }
    log = (workdir / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "serving.cli", "--host", "127.0.0.1", "--port", port],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and server.poll() is None:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        question = {"question": "What is the name of the shared print queue?"}
        resp = httpx.post(f"{base}/v1/ask", json=question, timeout=300)
        result.update(status=resp.status_code, body=resp.json())
    except Exception as exc:  # reported to the test, which shows the server log
        result["error"] = repr(exc)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    try:
        with socket_probe() as reached:
            result["internet_reachable"] = reached
    except Exception as exc:
        result["probe_error"] = repr(exc)
    print(json.dumps(result))


class socket_probe:
    """Whether a public address is reachable from here (it must not be, in the namespace)."""

    def __enter__(self) -> bool:
        import socket

        s = socket.socket()
        s.settimeout(2)
        try:
            s.connect(("192.0.2.1", 80))  # TEST-NET-1: never routed anywhere
            return True
        except OSError:
            return False
        finally:
            s.close()

    def __exit__(self, *exc: object) -> None:
        return None


if __name__ == "__main__":
    main()
