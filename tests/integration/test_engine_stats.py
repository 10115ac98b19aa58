"""The engine's per-request log line (read by bench/gpu_smoke.sh): sizes, prefix-cache reuse
and speed, never text. Runs on the shared tiny gpt-oss CPU engine."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest

from rag.types import Finished, GenerationRequest

pytestmark = pytest.mark.slow

LINE = re.compile(
    r"engine request (\S+): prompt (\d+) tokens \((\d+) from the prefix cache\), (\d+) generated, "
    r"first token (\d+) ms, ([\d.]+) tokens/s"
)


async def test_second_identical_prompt_is_served_from_the_prefix_cache(
    tiny_engine: Any, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "The vault code is 4711-zebra."
    runs, usages = [], []
    for n in range(2):
        request = GenerationRequest(
            request_id=f"stats-{n}",
            instructions="Answer from the sources.",
            context=f"Sources:\n<<<\n[1] Vault\n{secret} " + "Filler sentence. " * 60 + "\n>>>",
            question="What is the vault code?",
            max_tokens=4,
            temperature=0.0,
        )
        with caplog.at_level(logging.INFO, logger="rag.engines.vllm_engine"):
            events = [e async for e in tiny_engine.stream(request)]
        usages.append(next(e.usage for e in events if isinstance(e, Finished)))
        lines = [LINE.search(r.getMessage()) for r in caplog.records]
        runs.append(next(m for m in lines if m and m.group(1) == f"stats-{n}"))
        caplog.clear()
    first, second = runs
    prompt = int(first.group(2))
    assert prompt > 200 and int(second.group(2)) == prompt
    assert int(first.group(3)) == 0
    # Whole KV blocks of the prompt are reused (16 tokens on GPU, 128 on this CPU build);
    # the last, partly filled one is computed again.
    cached = int(second.group(3))
    assert prompt // 2 < cached < prompt and cached % 16 == 0
    # ... and the answer's usage carries the same figure (it feeds /metrics' hit ratio)
    assert [u.cached_tokens for u in usages] == [0, cached]
    assert usages[1].prompt_tokens == prompt
    assert 1 <= int(second.group(4)) <= 4
    assert "4711" not in caplog.text and all("4711" not in str(m.string) for m in runs)
