"""A real Chroma server process for the tests (``chroma run``, 127.0.0.1, temp dir, free port).

One server per test session; tests isolate themselves with their own database or collection.
Registered as a pytest plugin in ``tests/conftest.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port

START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ChromaServer:
    host: str
    port: int
    path: Path
    log: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def chroma_executable() -> Path:
    """The ``chroma`` CLI installed beside this interpreter (the chromadb package ships it)."""
    exe = Path(sys.executable).parent / "chroma"
    if not exe.is_file():
        pytest.fail(f"The chroma CLI is missing at {exe}: reinstall chromadb (make setup).")
    return exe


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    root = tmp_path_factory.mktemp("chroma-server")
    server = ChromaServer("127.0.0.1", free_port(), root / "data", root / "server.log")
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False", "NO_COLOR": "1"}
    with server.log.open("wb") as log:
        proc = subprocess.Popen(
            [
                str(chroma_executable()),
                "run",
                "--path",
                str(server.path),
                "--host",
                server.host,
                "--port",
                str(server.port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"chroma run exited ({proc.returncode}): {server.log.read_text()[-2000:]}"
                )
            try:
                if httpx.get(f"{server.url}/api/v2/heartbeat", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"chroma run did not answer in {START_TIMEOUT_S:.0f} s")
            time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
