"""Slow clients cannot hold connections (issue 19, Low: no header-read timeout), against a real
uvicorn server started with the options ``rag-serve`` gives it
(:func:`serving.cli.uvicorn_options`): a request head sent a few bytes at a time is cut off
``server.header_timeout_s`` after the connection opened, or after the previous response on a
kept-alive connection; a slow but timely head, and a long answer after it, are unaffected."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.servers import free_port, serve_app

DEADLINE_S = 1.0


async def slow_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers after 1.5 s (longer than the head deadline): the deadline must not cut it."""
    if scope["type"] != "http":
        return
    await asyncio.sleep(1.5 if scope["path"] == "/slow" else 0)
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


@contextlib.asynccontextmanager
async def served(make_settings: Any) -> AsyncIterator[int]:
    from serving.cli import uvicorn_options

    settings = make_settings(server={"port": free_port(), "header_timeout_s": DEADLINE_S})
    options = {**uvicorn_options(settings), "log_level": "warning"}
    async with serve_app(slow_app, **options):
        yield settings.server.port


def drip(port: int, head: list[bytes], pause: float, keep_alive_first: bool = False) -> float:
    """Send ``head`` piece by piece, ``pause`` seconds apart, after one full request first when
    ``keep_alive_first``; the seconds until the server closed the connection (or the whole
    response arrived: returned as a negative number)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        started = time.monotonic()
        if keep_alive_first:
            sock.sendall(b"GET /fast HTTP/1.1\r\nHost: t\r\n\r\n")
            assert sock.recv(1024).startswith(b"HTTP/1.1 200")
            started = time.monotonic()
        try:
            for piece in head:
                sock.sendall(piece)
                time.sleep(pause)
            data = b""
            while True:
                chunk = sock.recv(1024)
                if not chunk:
                    return time.monotonic() - started
                data += chunk
                if data.endswith(b"ok"):
                    assert data.startswith(b"HTTP/1.1 200"), data
                    return -(time.monotonic() - started)
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - started
        except TimeoutError:  # the server held the connection open for 10 s
            return float("inf")


SLOWLORIS = [b"GET /fast HTTP/1.1\r\n", b"Host: t\r\n"] + [b"X-Drip: 1\r\n"] * 30


@pytest.mark.slow
async def test_a_head_sent_a_few_bytes_at_a_time_is_cut_off(make_settings: Any) -> None:
    async with served(make_settings) as port:
        fresh, kept_alive, timely = await asyncio.gather(
            asyncio.to_thread(drip, port, SLOWLORIS, 0.2),
            asyncio.to_thread(drip, port, SLOWLORIS, 0.2, True),
            asyncio.to_thread(
                drip, port, [b"GET /slow HTTP/1.1\r\n", b"Host: t\r\n", b"\r\n"], 0.2
            ),
        )
    # 30 pieces 0.2 s apart would take 6 s: the server closes at its 1 s deadline.
    assert DEADLINE_S - 0.1 < fresh < DEADLINE_S + 1.0, fresh
    assert DEADLINE_S - 0.1 < kept_alive < DEADLINE_S + 1.0, kept_alive
    # A head complete in 0.6 s gets its answer, although the answer takes 1.5 s more.
    assert timely < -1.5, timely
