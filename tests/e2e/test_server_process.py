"""The built app in a real uvicorn process (rag-serve), streaming an answer over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ASSETS, REPO

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(sample_kb: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    env = {
        **os.environ,
        "RAG_PROFILE": "test",
        "RAG_STORE__PATH": str(sample_kb.store.path),
        "RAG_PATHS__ASSETS_DIR": str(ASSETS),
    }
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "serving.cli", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
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
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_server_streams_a_cited_answer(server: str) -> None:
    payload = {"question": "What is the name of the shared print queue?", "stream": True}
    events: list[tuple[str, Any]] = []
    with httpx.stream("POST", f"{server}/v1/ask", json=payload, timeout=120) as resp:
        assert resp.status_code == 200
        assert resp.headers["x-request-id"]
        name = ""
        for line in resp.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    names = [n for n, _ in events]
    assert names[0] == "citations" and names[-1] == "done" and "delta" in names
    sources = [Path(c["source"]).name for c in events[0][1]["citations"]]
    assert "faq-printing.txt" in sources
    assert events[-1][1]["usage"]["completion_tokens"] > 0


def test_server_health_and_docs(server: str) -> None:
    assert httpx.get(f"{server}/healthz").json() == {"status": "ok"}
    spec = httpx.get(f"{server}/openapi.json").json()
    assert {"/v1/ask", "/healthz", "/readyz"} <= set(spec["paths"])
