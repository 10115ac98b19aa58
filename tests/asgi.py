"""The app in-process for integration tests: an httpx client over ASGI, once it is ready."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx


@contextlib.asynccontextmanager
async def ready_client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and yield a client once ``/readyz`` is 200 (or after 60 s:
    the test's own requests then show why it is not ready)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for _ in range(600):
                if (await client.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.1)
            yield client


async def sse(client: httpx.AsyncClient, payload: dict[str, Any]) -> list[tuple[str, Any]]:
    """``POST /v1/ask`` with ``payload`` (``stream: true``): the SSE events, as (name, data)."""
    events: list[tuple[str, Any]] = []
    name = ""
    async with client.stream("POST", "/v1/ask", json=payload) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        async for line in resp.aiter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    return events
