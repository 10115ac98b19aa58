"""The event loop only waits: an answer's CPU work (history tokens, follow-up detection,
packing and prompt rendering, grounding every sentence against every source) runs in worker
threads, so other requests are served meanwhile.

Timing-robust on a loaded machine: the bound is relative. The grounding of a long answer is
first timed on its own (``G``); while the same answer is produced, a ticker on the loop
records the longest gap between its turns, which must stay well under ``G`` (on the loop it
would be at least ``G``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import pytest

from rag.types import Finished, GenerationRequest, HistoryTurn, Principal, TextDelta, Usage

pytestmark = pytest.mark.slow

READER = Principal("loop-test", frozenset({"everyone"}))
QUESTION = "What is the guest Wi-Fi password and how do I print?"


class LongAnswer:
    """The real engine for counting and rendering; the answer it streams is ``reply``."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self.reply = ""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    async def stream(
        self, request: GenerationRequest, history: Sequence[HistoryTurn] = ()
    ) -> AsyncGenerator[Any, None]:
        for start in range(0, len(self.reply), 2000):
            yield TextDelta(self.reply[start : start + 2000])
        yield Finished(Usage(10, 10))


async def longest_gap(work: Any) -> tuple[float, Any]:
    """Run ``work`` while a ticker measures the longest time the loop did not turn."""
    gaps = [0.0]
    stop = asyncio.Event()

    async def tick() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.002)
            now = time.perf_counter()
            gaps[0] = max(gaps[0], now - last)
            last = now

    ticker = asyncio.create_task(tick())
    try:
        result = await work
    finally:
        stop.set()
        await ticker
    return gaps[0], result


async def test_grounding_a_long_answer_leaves_the_loop_free(
    sample_kb: Any, smol_engine: Any
) -> None:
    from rag.answering.answer import AnswerService
    from rag.answering.grounding import ground, split_sentences
    from rag.services import build_knowledge_base, build_retriever

    kb = build_knowledge_base(sample_kb)
    engine = LongAnswer(smol_engine)
    service = AnswerService(sample_kb, build_retriever(sample_kb, kb), engine)
    hits = service.retriever.search(QUESTION, READER)
    packed, _ = service.pack(QUESTION, hits, READER)
    sentences = [s for src in packed.sources for s in split_sentences(src.hit.chunk.text)]
    assert sentences
    reply = " ".join(sentences)
    started = time.perf_counter()
    while True:  # long enough that grounding it takes a while on this machine
        started = time.perf_counter()
        ground(reply, packed.sources)
        grounding_s = time.perf_counter() - started
        if grounding_s >= 0.4 or len(reply) > 2_000_000:
            break
        reply = f"{reply} {reply}"
    engine.reply = reply

    # A stall from other processes on a busy 2-core machine can hit any one try; grounding
    # on the loop would stall every try for the whole grounding time.
    gaps = []
    for _ in range(3):
        gap, answer = await longest_gap(service.ask(QUESTION, READER))
        assert answer.citations and not answer.declined
        gaps.append(gap)
        if gap < grounding_s / 2:
            break
    assert min(gaps) < grounding_s / 2, (gaps, grounding_s)
