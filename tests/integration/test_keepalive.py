"""A stream that is silent (a long prefill before the first token) sends ``: keep-alive``
comments, so proxies keep the connection; SSE clients (the OpenAI SDK too) ignore them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

import httpx
import pytest

from rag.types import GenerationRequest, HistoryTurn
from tests.asgi import ready_client

pytestmark = pytest.mark.slow

QUESTION = "What is the guest Wi-Fi password?"


class SlowStart:
    """The real engine, silent for ``delay`` seconds before it starts (a long prefill)."""

    def __init__(self, engine: Any, delay: float) -> None:
        self._engine = engine
        self.delay = delay

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    async def stream(
        self, request: GenerationRequest, history: Sequence[HistoryTurn] = ()
    ) -> AsyncGenerator[Any, None]:
        await asyncio.sleep(self.delay)
        async with contextlib.aclosing(self._engine.stream(request, history)) as events:
            async for event in events:
                yield event


@pytest.fixture(scope="module")
async def client(sample_kb: Any, smol_engine: Any) -> AsyncIterator[httpx.AsyncClient]:
    from serving.app import create_app

    settings = sample_kb.model_copy(
        update={
            "server": sample_kb.server.model_copy(update={"sse_keepalive_s": 0.2}),
            "llm": sample_kb.llm.model_copy(update={"max_tokens": 8}),
        }
    )
    async with ready_client(create_app(settings, engine=SlowStart(smol_engine, 1.5))) as c:
        yield c


async def lines(client: httpx.AsyncClient, path: str, payload: dict[str, Any]) -> list[str]:
    async with client.stream("POST", path, json=payload) as resp:
        assert resp.status_code == 200
        return [line async for line in resp.aiter_lines() if line]


async def test_ask_stream_keeps_a_silent_connection_alive(client: httpx.AsyncClient) -> None:
    got = await lines(client, "/v1/ask", {"question": QUESTION, "stream": True})
    silent = got[got.index("event: citations") : got.index("event: delta")]
    # While the engine is silent (1.5 s before its first token), comments keep the line alive
    # (more may come earlier too, while retrieval runs on a busy machine).
    assert silent.count(": keep-alive") >= 2  # one every 0.2 s
    assert got[-2] == "event: done"


async def test_chat_stream_keeps_alive_and_openai_clients_ignore_it(
    client: httpx.AsyncClient,
) -> None:
    from openai import AsyncOpenAI

    payload = {"model": "knowledge-base", "stream": True}
    raw = await lines(
        client,
        "/v1/chat/completions",
        {**payload, "messages": [{"role": "user", "content": QUESTION}]},
    )
    assert ": keep-alive" in raw and raw[-1] == "data: [DONE]"
    sdk = AsyncOpenAI(base_url="http://test/v1", api_key="unused", http_client=client)
    stream = await sdk.chat.completions.create(
        model="knowledge-base", messages=[{"role": "user", "content": QUESTION}], stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
