"""Context packing in exact harmony tokens: the 128K budget is never exceeded, whole-KB mode,
expansion, access control and the canonical (cache-friendly) order."""

from __future__ import annotations

import random
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import pytest

from rag.types import Chunk, EngineEvent, GenerationRequest, HistoryTurn, Hit, Principal

WIDE = Principal("wide", frozenset({"everyone"}))
SMALL = Principal("small", frozenset({"small"}))


class HarmonyCounting:
    """The Engine seam with real harmony rendering for counting; it never generates."""

    family = "gpt-oss"
    name = "counting"
    healthy = True

    def __init__(self, max_model_len: int) -> None:
        from rag.engines.harmony import HarmonyCodec

        self._codec = HarmonyCodec()
        self.max_model_len = max_model_len

    def count_prompt_tokens(
        self, request: GenerationRequest, history: Sequence[HistoryTurn] = ()
    ) -> int:
        return len(self._codec.render(request, history))

    def count_text_tokens(self, text: str) -> int:
        return len(self._codec.encode_plain(text))

    def stream(
        self, request: GenerationRequest, history: Sequence[HistoryTurn] = ()
    ) -> AsyncGenerator[EngineEvent, None]:  # pragma: no cover - not used here
        raise NotImplementedError

    async def close(self) -> None:  # pragma: no cover
        return None


def _text(rng: random.Random, words: int) -> str:
    vocab = ["pressure", "wing", "flow", "boundary", "layer", "heat", "Mach", "shock", "网络"]
    return " ".join(
        rng.choice(vocab) if rng.random() < 0.8 else str(rng.randint(0, 99999))
        for _ in range(words)
    )


@pytest.fixture(scope="module")
def packing(make_settings: Any, assets: Any) -> Any:
    from rag.answering.answer import AnswerService
    from rag.index.store import ChromaStore
    from rag.retrieval.hybrid import Retriever
    from rag.services import build_keyword_index

    settings = make_settings(  # no context cap: the test profile's is for the CPU model
        llm={"max_model_len": 131072, "max_tokens": 2048}, context={"max_tokens": None}
    )
    rng = random.Random(7)
    chunks = [
        Chunk(
            f"d{d}:x:{i}",
            f"d{d}",
            _text(rng, 360),
            f"/kb/doc{d}.txt",
            f"Doc {d}",
            "",
            None,
            i,
            ("everyone",),
            f"h{d}{i}",
        )
        for d in range(4)
        for i in range(90)
    ] + [
        Chunk(
            f"s:x:{i}",
            "s",
            f"Small fact {i}: code SM-{i}.",
            "/kb/small.txt",
            "Small",
            "",
            None,
            i,
            ("small",),
            f"s{i}",
        )
        for i in range(5)
    ]
    store = ChromaStore(settings.store, embedder_id="test-vectors", dimension=4)
    store.upsert(chunks, [[rng.random() for _ in range(4)] for _ in chunks])
    keyword = build_keyword_index(settings)
    keyword.on_upsert(chunks)
    keyword.commit()
    engine = HarmonyCounting(131072)
    retriever = Retriever(settings.retrieval, None, store, keyword)  # type: ignore[arg-type]
    return settings, AnswerService(settings, retriever, engine), engine, chunks


def _hits(chunks: list[Chunk], ids: list[str]) -> list[Hit]:
    by_id = {c.chunk_id: c for c in chunks}
    return [Hit(by_id[i], 1.0 / (n + 1), dense_score=0.9) for n, i in enumerate(ids)]


def test_128k_budget_is_filled_but_never_exceeded(packing: Any) -> None:
    _, service, engine, chunks = packing
    limit = 131072 - 2048
    history = [HistoryTurn("user", "earlier question"), HistoryTurn("assistant", "answer")]
    hits = _hits(chunks, ["d2:x:40", "d0:x:5", "d3:x:89", "d1:x:0"])
    packed, request = service.pack("What is the shock layer?", hits, WIDE, history)
    total = engine.count_prompt_tokens(request, history)
    assert total <= limit
    assert total >= 0.95 * limit, total  # expansion to whole documents filled the window
    assert packed.mode == "retrieval"
    chosen = [c.chunk_id for c in packed.chosen]
    assert len(chosen) == len(set(chosen))
    assert chosen[:4] == [h.chunk.chunk_id for h in hits]  # the hits themselves come first
    assert all(c.groups == ("everyone",) for c in packed.chosen)  # no 'small' chunk leaks
    # Canonical order: by source then position; numbered 1..n once.
    keys = [(s.hit.chunk.source, s.hit.chunk.index) for s in packed.sources]
    assert keys == sorted(keys)
    assert [s.n for s in packed.sources] == list(range(1, len(packed.sources) + 1))
    assert request.context.endswith(">>>") and request.question.endswith("shock layer?")


def test_configured_cap_limits_the_sources(packing: Any) -> None:
    settings, service, engine, chunks = packing
    capped = settings.model_copy(
        update={"context": settings.context.model_copy(update={"max_tokens": 16384})}
    )
    from rag.answering.answer import AnswerService

    small = AnswerService(capped, service.retriever, engine)
    packed, request = small.pack("q", _hits(chunks, ["d1:x:10"]), WIDE)
    sources_tokens = engine.count_text_tokens(request.context)
    assert 16384 * 0.9 <= sources_tokens <= 16384
    # Neighbours of the hit come before the rest of its document.
    ids = [c.chunk_id for c in packed.chosen[:3]]
    assert ids == ["d1:x:10", "d1:x:9", "d1:x:11"]


def test_whole_knowledge_base_when_it_fits_and_only_what_the_caller_may_read(
    packing: Any,
) -> None:
    _, service, _, chunks = packing
    packed, request = service.pack("code?", _hits(chunks, ["s:x:3"]), SMALL)
    assert packed.mode == "whole_kb"
    # Five adjacent chunks of one document merge into one numbered passage.
    assert len(packed.sources) == 1 and packed.sources[0].n == 1
    assert all(f"SM-{i}." in request.context for i in range(5))
    assert "pressure" not in request.context


def test_consecutive_questions_share_a_prompt_prefix_in_canonical_order(packing: Any) -> None:
    settings, service, engine, chunks = packing
    from rag.answering.answer import AnswerService

    def prefix_tokens(order: str) -> int:
        cfg = settings.context.model_copy(
            update={"max_tokens": 8000, "order": order, "expand": "neighbours"}
        )
        svc = AnswerService(settings.model_copy(update={"context": cfg}), service.retriever, engine)
        _, r1 = svc.pack("first?", _hits(chunks, ["d0:x:3", "d1:x:50"]), WIDE)
        _, r2 = svc.pack("second?", _hits(chunks, ["d1:x:50", "d0:x:3"]), WIDE)
        a, b = svc._engine._codec.render(r1), svc._engine._codec.render(r2)
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        return n

    canonical, by_score = prefix_tokens("canonical"), prefix_tokens("score")
    # Same sources, other ranking: canonical order repeats the whole context (6 chunks of
    # ~400 tokens); score order diverges right after the instructions.
    assert canonical > 2000 > 300 > by_score


def test_per_request_options_reach_the_engine_request(packing: Any) -> None:
    from rag.answering.answer import AnswerOptions

    settings, service, _, chunks = packing
    hits = _hits(chunks, ["d1:x:10"])
    _, request = service.pack("q", hits, WIDE, (), "r1", AnswerOptions("high", 8))
    assert (request.reasoning_effort, request.max_tokens) == ("high", 8)
    _, capped = service.pack("q", hits, WIDE, (), "r2", AnswerOptions(max_tokens=10**6))
    assert capped.max_tokens == settings.llm.max_tokens  # never more than the budget assumed
    assert capped.reasoning_effort == settings.llm.reasoning_effort
