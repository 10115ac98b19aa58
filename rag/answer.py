"""Question in, events out: retrieve -> pack -> prompt -> stream -> cite.

:meth:`AnswerService.stream` yields a :class:`SourcesEvent` (the numbered sources the model
is given), :class:`rag.types.TextDelta` pieces of the answer, then one :class:`DoneEvent`
with the final answer, the citations it is supported by, usage and timings. Engine errors
propagate as :class:`rag.errors.RagError`; cancelling the consumer aborts the engine request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field

from rag import citations, prompt
from rag.config import Settings
from rag.context import pack
from rag.seams import Embedder, Engine, VectorStore
from rag.types import (
    Answer,
    Citation,
    Finished,
    GenerationRequest,
    HistoryTurn,
    Hit,
    Source,
    TextDelta,
    Usage,
)


@dataclass(frozen=True, slots=True)
class SourcesEvent:
    sources: list[Citation]


@dataclass(frozen=True, slots=True)
class DoneEvent:
    answer: Answer


AnswerEvent = SourcesEvent | TextDelta | DoneEvent


@dataclass
class _Clock:
    start: float = field(default_factory=time.perf_counter)
    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str) -> None:
        self.marks[name] = round((time.perf_counter() - self.start) * 1000, 1)


class AnswerService:
    def __init__(
        self, settings: Settings, embedder: Embedder, store: VectorStore, engine: Engine
    ) -> None:
        self._settings = settings
        self._embedder = embedder
        self._store = store
        self._engine = engine

    def retrieve(self, question: str, k: int | None = None) -> list[Hit]:
        vector = self._embedder.embed_query(question)
        return self._store.query(vector, k or self._settings.retrieval.top_k)

    def _request(self, question: str, sources: Sequence[Source]) -> GenerationRequest:
        llm = self._settings.llm
        return GenerationRequest(
            request_id=uuid.uuid4().hex,
            instructions=prompt.instructions_for(self._engine.family),
            context=prompt.render_sources(sources),
            question=question,
            max_tokens=llm.max_tokens,
            temperature=llm.temperature,
            reasoning_effort=llm.reasoning_effort,
        )

    async def stream(
        self, question: str, history: Sequence[HistoryTurn] = ()
    ) -> AsyncGenerator[AnswerEvent, None]:
        clock = _Clock()
        hits = await asyncio.to_thread(self.retrieve, question)
        clock.mark("retrieval_ms")
        relevant = [h for h in hits if h.score >= self._settings.retrieval.min_score]
        if not relevant:
            yield SourcesEvent([])
            yield TextDelta(prompt.DECLINE_MESSAGE)
            clock.mark("total_ms")
            yield DoneEvent(
                Answer(prompt.DECLINE_MESSAGE, [], Usage(), dict(clock.marks), declined=True)
            )
            return
        limit = self._engine.max_model_len - self._settings.llm.max_tokens

        def fits(candidate: list[Source]) -> bool:
            return self._engine.count_prompt_tokens(self._request(question, candidate)) <= limit

        sources = await asyncio.to_thread(pack, relevant, fits)
        request = self._request(question, sources)
        clock.mark("packing_ms")
        yield SourcesEvent([citations.to_citation(s) for s in sources])
        parts: list[str] = []
        usage = Usage()
        async with contextlib.aclosing(self._engine.stream(request, history)) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    if not parts:
                        clock.mark("first_token_ms")
                    parts.append(event.text)
                    yield event
                elif isinstance(event, Finished):
                    usage = event.usage
        text = "".join(parts).strip()
        if not text:
            text = prompt.NO_ANSWER_MESSAGE
            yield TextDelta(text)
        clock.mark("total_ms")
        yield DoneEvent(Answer(text, citations.select(text, sources), usage, dict(clock.marks)))

    async def ask(self, question: str, history: Sequence[HistoryTurn] = ()) -> Answer:
        async with contextlib.aclosing(self.stream(question, history)) as events:
            async for event in events:
                if isinstance(event, DoneEvent):
                    return event.answer
        raise RuntimeError("answer stream ended without a result")  # pragma: no cover
