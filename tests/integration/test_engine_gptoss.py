"""The real AsyncLLM with a tiny random-weight gpt-oss and the real o200k_harmony tokenizer.

Random weights produce no meaningful text, so these tests check the plumbing: harmony
rendering reaches the engine as token ids, the stop tokens end generation, nothing outside
the final channel is streamed, and cancelling a consumer aborts the engine request.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from rag.engines.vllm_engine import detect_family
from rag.types import Finished, GenerationRequest, TextDelta

pytestmark = pytest.mark.slow


def req(request_id: str, max_tokens: int = 16) -> GenerationRequest:
    return GenerationRequest(
        request_id=request_id,
        instructions="Answer from the sources.",
        context="Sources:\n<<<\n[1] Wi-Fi\nThe password is harbor-blue-42.\n>>>",
        question="What is the guest Wi-Fi password?",
        max_tokens=max_tokens,
        temperature=0.0,
    )


def test_tiny_model_is_detected_as_gpt_oss(tiny_gptoss_dir: Any) -> None:
    assert detect_family(tiny_gptoss_dir) == "gpt-oss"


async def test_harmony_prompt_runs_through_the_real_engine(tiny_engine: Any) -> None:
    from rag.engines.harmony import HarmonyCodec

    request = req("tiny-1")
    expected_ids = HarmonyCodec().render(request)
    events = [e async for e in tiny_engine.stream(request)]
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert (
        finished.usage.prompt_tokens
        == len(expected_ids)
        == tiny_engine.count_prompt_tokens(request)
    )
    assert 1 <= finished.usage.completion_tokens <= 16
    # Random weights never open a final channel: nothing may leak to the user.
    assert all(isinstance(e, TextDelta) for e in events[:-1])
    assert tiny_engine.unfinished_requests() == 0


async def test_stop_tokens_end_generation(tiny_engine: Any) -> None:
    """Allow only ``<|return|>``: the engine must stop after it, as a stop token."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    renderer = tiny_engine._renderer
    ids = renderer.render(req("tiny-2"), ())
    params = SamplingParams(
        max_tokens=20,
        temperature=0.0,
        stop_token_ids=renderer.stop_token_ids,
        allowed_token_ids=[renderer.stop_token_ids[0]],
    )
    outputs = [
        o
        async for o in tiny_engine._engine.generate(
            TokensPrompt(prompt_token_ids=ids), params, "tiny-2"
        )
    ]
    completion = outputs[-1].outputs[0]
    assert completion.finish_reason == "stop"
    assert len(completion.token_ids) == 1


async def test_cancelling_the_consumer_aborts_the_engine_request(tiny_engine: Any) -> None:
    started = asyncio.Event()

    async def consume() -> None:
        async with contextlib.aclosing(tiny_engine.stream(req("tiny-3", 3000))) as events:
            started.set()
            async for _ in events:
                pass

    task = asyncio.create_task(consume())
    await started.wait()
    for _ in range(100):
        if tiny_engine.unfinished_requests() == 1:
            break
        await asyncio.sleep(0.05)
    assert tiny_engine.unfinished_requests() == 1
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    for _ in range(100):
        if tiny_engine.unfinished_requests() == 0:
            break
        await asyncio.sleep(0.05)
    assert tiny_engine.unfinished_requests() == 0
