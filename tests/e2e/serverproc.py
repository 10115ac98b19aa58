"""A real ``rag-serve`` process on a free port, shared by the end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from tests.conftest import ASSETS, REPO
from tests.procs import OWN_GROUP, stop_group
from tests.servers import wait_ready


def start_server(
    store_path: Path, workdir: Path, port: int, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``python -m serving.cli`` with the test profile, its log in
    ``workdir/server.log`` (appended: a restarted server keeps the earlier lines); does not
    wait for it."""
    full_env = {
        **os.environ,
        "RAG_PROFILE": "test",
        "RAG_STORE__PATH": str(store_path),
        "RAG_PATHS__ASSETS_DIR": str(ASSETS),
        "RAG_PATHS__DATA_DIR": str(workdir),
        **(env or {}),
    }
    with (workdir / "server.log").open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "serving.cli", "--host", "127.0.0.1", "--port", str(port)],
            env=full_env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            **OWN_GROUP,
        )


@contextlib.contextmanager
def run_server(
    store_path: Path,
    workdir: Path,
    port: int,
    env: Mapping[str, str] | None = None,
    ready: Callable[[subprocess.Popen[bytes], str, Path], None] = wait_ready,
) -> Iterator[str]:
    """:func:`start_server`; yield its base URL once ``ready`` (``/readyz`` by default)
    returns, and stop it (its process group) at the end."""
    proc = start_server(store_path, workdir, port, env)
    base = f"http://127.0.0.1:{port}"
    try:
        ready(proc, base, workdir / "server.log")
        yield base
    finally:
        stop_group(proc, signal.SIGINT)
