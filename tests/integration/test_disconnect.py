"""A client that hangs up mid-answer aborts its engine request (real uvicorn, real TCP),
whether it asked for a stream or for one JSON answer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.servers import serve_app, until_ready

pytestmark = pytest.mark.slow


async def wait_for(predicate: Any, seconds: float) -> bool:
    for _ in range(int(seconds / 0.05)):
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return bool(predicate())


@contextlib.asynccontextmanager
async def served(sample_kb: Any, engine: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app with a long answer budget (generation is still running when the client
    leaves) behind a real uvicorn, and a client once it is ready."""
    from serving.app import create_app

    settings = sample_kb.model_copy(
        update={"llm": sample_kb.llm.model_copy(update={"max_tokens": 4000})}
    )
    async with (
        serve_app(create_app(settings, engine=engine)) as base,
        httpx.AsyncClient(base_url=base, timeout=30) as client,
    ):
        await until_ready(client)
        yield client


async def test_disconnect_aborts_the_engine_request(sample_kb: Any, tiny_engine: Any) -> None:
    async with served(sample_kb, tiny_engine) as client:
        payload = {"question": "What is the guest Wi-Fi password?", "stream": True}
        async with client.stream("POST", "/v1/ask", json=payload) as resp:
            assert resp.status_code == 200
            lines = resp.aiter_lines()
            async for line in lines:
                if line.startswith("event: citations"):
                    break
            # The first request on a cold engine can take a while to be admitted.
            running = await wait_for(lambda: tiny_engine.unfinished_requests() == 1, 90)
            assert running, [line async for line in lines][-4:]
        # Leaving the block closed the connection mid-answer.
        assert await wait_for(lambda: tiny_engine.unfinished_requests() == 0, 15)


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/v1/ask", {"question": "What is the guest Wi-Fi password?"}),
        (
            "/v1/chat/completions",
            {
                "model": "knowledge-base",
                "messages": [{"role": "user", "content": "What is the guest Wi-Fi password?"}],
            },
        ),
    ],
)
async def test_disconnect_aborts_a_non_streaming_answer(
    sample_kb: Any, tiny_engine: Any, path: str, payload: dict[str, Any]
) -> None:
    async with served(sample_kb, tiny_engine) as client:
        asking = asyncio.create_task(client.post(path, json=payload))
        running = await wait_for(lambda: tiny_engine.unfinished_requests() == 1, 90)
        assert running and not asking.done()
        asking.cancel()  # the client gives up: httpx closes the connection
        with contextlib.suppress(asyncio.CancelledError):
            await asking
        assert await wait_for(lambda: tiny_engine.unfinished_requests() == 0, 15)
