"""uvicorn's HTTP protocol with a deadline on every request head (the only importer of
uvicorn's protocol internals).

uvicorn has no header-read timeout: a client that opens a connection and sends its request
line and headers a few bytes at a time ("slowloris") holds the connection, and the
keep-alive timer is reset by every byte. :func:`with_head_deadline` gives uvicorn (through
its public ``http=`` option) a protocol class that closes a connection whose request head is
not complete ``seconds`` after the connection opened, or after the previous response on it
finished. The deadline stops once the head is in: a slow body or a long streamed answer is
not affected (bodies are capped in bytes by :class:`serving.middleware.BodyLimit`).
"""

from __future__ import annotations

import asyncio
import importlib.util
from typing import Any

from rag.errors import ConfigError, how_to_run


def with_head_deadline(seconds: float) -> type[asyncio.Protocol]:
    """The protocol class to pass as uvicorn's ``http`` option: httptools' protocol
    (uvicorn's own choice when httptools is installed, as the lock does) with a deadline of
    ``seconds`` on every request head."""
    if importlib.util.find_spec("httptools") is None:
        raise ConfigError(
            "httptools is not installed, and rag-serve's HTTP protocol needs it. Install the "
            f"locked dependencies (make setup), then run {how_to_run('rag-serve')} again."
        )
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HeadDeadlineProtocol(HttpToolsProtocol):  # type: ignore[misc]  # untyped in uvicorn
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._head_deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self._arm_head_deadline()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_head_deadline()
            super().connection_lost(exc)

        def on_headers_complete(self) -> None:
            self._disarm_head_deadline()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            idle = self.cycle is None or self.cycle.response_complete  # no pipelined request
            if idle and not self.transport.is_closing():
                self._arm_head_deadline()

        def _arm_head_deadline(self) -> None:
            self._disarm_head_deadline()
            self._head_deadline = self.loop.call_later(seconds, self._head_too_slow)

        def _disarm_head_deadline(self) -> None:
            if self._head_deadline is not None:
                self._head_deadline.cancel()
                self._head_deadline = None

        def _head_too_slow(self) -> None:
            self._head_deadline = None
            if not self.transport.is_closing():
                self.transport.close()

    return HeadDeadlineProtocol
