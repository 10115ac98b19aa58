"""The app in-process for integration tests: an httpx client over ASGI, once it is ready."""

from __future__ import annotations

import asyncio
import contextlib
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
