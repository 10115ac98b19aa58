"""A real ``rag-serve`` process on a free port, shared by the end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from tests.conftest import ASSETS, REPO
from tests.procs import OWN_GROUP, stop_group
from tests.servers import wait_ready


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
        wait_ready(proc, base, log)
        yield base
    finally:
        stop_group(proc, signal.SIGINT)
