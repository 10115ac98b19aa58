"""A real ``rag-serve`` process on a free port, shared by the end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from tests.conftest import ASSETS, REPO
from tests.procs import OWN_GROUP, stop_group


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def run_server(
    store_path: Path, workdir: Path, port: int, env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """Start ``python -m serving.cli`` with the test profile; yield its base URL once ready."""
    log = workdir / "server.log"
    full_env = {
        **os.environ,
        "RAG_PROFILE": "test",
        "RAG_STORE__PATH": str(store_path),
        "RAG_PATHS__ASSETS_DIR": str(ASSETS),
        "RAG_PATHS__DATA_DIR": str(workdir),
        **(env or {}),
    }
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "serving.cli", "--host", "127.0.0.1", "--port", str(port)],
            env=full_env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            **OWN_GROUP,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("server not ready in 240 s:\n" + log.read_text()[-3000:])
        yield base
    finally:
        stop_group(proc, signal.SIGINT)
