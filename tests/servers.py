"""Test servers on 127.0.0.1: a free port, an ASGI app under a real uvicorn on the test's own
event loop, and waiting for a server (in-process or a process) to say it is ready."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def serve_app(app: Any, port: int | None = None, **options: Any) -> AsyncIterator[str]:
    """Run an ASGI app with uvicorn on the current loop; yields its base address once it
    listens. ``options`` are ``uvicorn.Config`` keywords (e.g. ``rag-serve``'s own,
    :func:`serving.cli.uvicorn_options`), over quiet test defaults."""
    import uvicorn

    config = {
        "host": "127.0.0.1",
        "port": port or free_port(),
        "log_level": "warning",
        "timeout_graceful_shutdown": 1,
        **options,
    }
    server = uvicorn.Server(uvicorn.Config(app, **config))
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{config['port']}"
    finally:
        server.should_exit = True
        await task


async def until_ready(client: httpx.AsyncClient, seconds: float = 60.0) -> None:
    """Poll ``/readyz`` until it is 200 (or ``seconds`` pass: the test's own requests then
    show why the service is not ready)."""
    for _ in range(int(seconds / 0.1)):
        with contextlib.suppress(httpx.TransportError):
            if (await client.get("/readyz")).status_code == 200:
                return
        await asyncio.sleep(0.1)


def wait_ready(proc: subprocess.Popen[Any], base: str, log: Path, seconds: float = 240.0) -> None:
    """Wait for a server process's ``/readyz``; fail with the end of its log when it exits
    or is not ready in ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    pytest.fail(f"server not ready in {seconds:.0f} s:\n" + log.read_text()[-3000:])
