"""``finish_reason`` tells OpenAI clients the truth: ``length`` when the answer stopped at the
token cap (the official ``openai`` SDK, against the app)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.asgi import ready_client

pytestmark = pytest.mark.slow

MESSAGES = [{"role": "user", "content": "What is the name of the shared print queue?"}]


@pytest.fixture(scope="module")
async def sdk(sample_kb: Any, smol_engine: Any) -> AsyncIterator[Any]:
    from openai import AsyncOpenAI

    from serving.app import create_app

    async with ready_client(create_app(sample_kb, engine=smol_engine)) as client:
        yield AsyncOpenAI(
            base_url="http://test/v1", api_key="unused", http_client=client, max_retries=0
        )


async def test_a_completion_cut_at_the_cap_says_length(sdk: Any) -> None:
    done = await sdk.chat.completions.create(
        model="knowledge-base", messages=MESSAGES, max_tokens=2
    )
    assert done.choices[0].finish_reason == "length"
    assert done.usage.completion_tokens == 2
    assert done.choices[0].message.content


async def test_a_stream_cut_at_the_cap_says_length(sdk: Any) -> None:
    stream = await sdk.chat.completions.create(
        model="knowledge-base", messages=MESSAGES, max_tokens=2, stream=True
    )
    reasons = [c.choices[0].finish_reason async for c in stream if c.choices]
    assert reasons[-1] == "length" and set(reasons[:-1]) == {None}
