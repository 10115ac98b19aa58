"""Question in, events out: history -> retrieve -> pack -> prompt -> stream -> ground.

:meth:`AnswerService.stream` yields a :class:`SourcesEvent` (the numbered sources the model
is given), :class:`rag.types.TextDelta` pieces of the answer, then one :class:`DoneEvent`
with the final answer, the citations that support it, per-sentence grounding, usage and
timings. Engine errors propagate as :class:`rag.errors.RagError`; cancelling the consumer
aborts the engine request.

Only chunks the caller's :class:`rag.types.Principal` may read reach retrieval, the
context, the citations and hence the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from rag.answering import prompt, tokens
from rag.answering.citations import to_citation
from rag.answering.context import Packed, Packer, readable_by
from rag.answering.conversation import Conversations, standalone_query, trim_history
from rag.answering.grounding import Sentence
from rag.answering.health import EngineHealth
from rag.answering.verify import Verifier
from rag.answering.wording import say
from rag.config import Settings
from rag.errors import BadRequestError, EngineError, RagError
from rag.index.store import acl_where
from rag.retrieval.hybrid import Retriever
from rag.seams import Engine
from rag.types import (
    Answer,
    Chunk,
    Citation,
    Finished,
    GenerationRequest,
    HistoryTurn,
    Hit,
    Principal,
    Source,
    TextDelta,
    Usage,
)

log = logging.getLogger(__name__)
PROMPT_SAFETY_TOKENS = 8


@dataclass(frozen=True, slots=True)
class AnswerOptions:
    """Per-request choices a caller may make (the OpenAI-compatible route passes them)."""

    reasoning_effort: Literal["low", "medium", "high"] | None = None
    max_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class SourcesEvent:
    sources: list[Citation]


@dataclass(frozen=True, slots=True)
class DoneEvent:
    answer: Answer
    sentences: list[Sentence] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    """The numbered sources the model was given."""
    withheld: str = ""
    """The model's text that was not shown (never verified; rag/answering/verify.py)."""


AnswerEvent = SourcesEvent | TextDelta | DoneEvent


@dataclass
class _Clock:
    start: float = field(default_factory=time.perf_counter)
    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str) -> None:
        self.marks[name] = round((time.perf_counter() - self.start) * 1000, 1)


@dataclass
class Counters:
    """Events worth counting (exported by the metrics issue; logged here)."""

    questions: int = 0
    declined: int = 0
    unsupported_sentences: int = 0
    whole_kb: int = 0
    quoted: int = 0


class AnswerService:
    def __init__(
        self,
        settings: Settings,
        retriever: Retriever,
        engine: Engine,
        *,
        conversations: Conversations | None = None,
    ) -> None:
        self._settings = settings
        self._retriever = retriever
        self._engine = engine
        # Only the newest ``history_turns`` turns are ever sent: keep no more than that.
        self._conversations = conversations or Conversations(
            max_turns=max(2, settings.context.history_turns)
        )
        counter: Callable[[str], int] | None = getattr(engine, "count_text_tokens", None)
        self._count = counter or tokens.count
        self._packer = Packer(settings.context, self._count)
        self._corpus_cache: dict[tuple[frozenset[str], str], list[Chunk]] = {}
        self.counters = Counters()
        self.engine_health = EngineHealth()

    @property
    def retriever(self) -> Retriever:
        return self._retriever

    def retrieve(self, question: str, principal: Principal, k: int | None = None) -> list[Hit]:
        return self._retriever.search(question, principal, k)

    def _request(
        self,
        question: str,
        sources: Sequence[Source],
        request_id: str,
        options: AnswerOptions | None = None,
    ) -> GenerationRequest:
        llm = self._settings.llm
        opts = options or AnswerOptions()
        return GenerationRequest(
            request_id=request_id,
            instructions=prompt.instructions_for(self._engine.family),
            context=prompt.render_sources(sources),
            question=question,
            # A caller may ask for a shorter answer, never a longer one: the context budget
            # was computed for the configured maximum.
            max_tokens=min(opts.max_tokens or llm.max_tokens, llm.max_tokens),
            temperature=llm.temperature,
            reasoning_effort=opts.reasoning_effort or llm.reasoning_effort,
        )

    def _corpus(self, principal: Principal) -> list[Chunk] | None:
        """Everything the caller may read, when small enough to try whole-KB mode."""
        cfg = self._settings.context
        index = self._retriever.keyword_index
        if not cfg.whole_kb or index is None:
            return None
        permitted = index.permitted_fraction(principal.groups) * len(index)
        if permitted > cfg.whole_kb_max_chunks or not principal.groups:
            return None
        key = (principal.groups, index.generation or "")
        cached = self._corpus_cache.get(key)
        if cached is None:
            cached = self._retriever.store.chunks_where(acl_where(sorted(principal.groups)))
            if len(self._corpus_cache) > 64:
                self._corpus_cache.clear()
            self._corpus_cache[key] = cached
        return cached

    def pack(
        self,
        question: str,
        hits: Sequence[Hit],
        principal: Principal,
        history: Sequence[HistoryTurn] = (),
        request_id: str = "",
        options: AnswerOptions | None = None,
    ) -> tuple[Packed, GenerationRequest]:
        """Sources for ``hits`` within the exact token budget; the request to send."""
        limit = self._engine.max_model_len - self._settings.llm.max_tokens
        bare = self._request(question, [], request_id, options)
        overhead = self._engine.count_prompt_tokens(bare, history)
        budget = limit - overhead - PROMPT_SAFETY_TOKENS
        cap = self._settings.context.max_tokens
        if cap is not None:
            budget = min(budget, cap)
        packed = self._packer.pack(
            hits,
            budget,
            corpus=self._corpus(principal),
            documents=self._retriever.store,
            readable=readable_by(principal.groups),
        )
        request = self._request(question, packed.sources, request_id, options)
        while packed.sources and self._engine.count_prompt_tokens(request, history) > limit:
            packed = self._packer.trim(packed)
            request = self._request(question, packed.sources, request_id, options)
        return packed, request

    def history_for(
        self, principal: Principal, conversation_id: str | None, history: Sequence[HistoryTurn]
    ) -> list[HistoryTurn]:
        turns = list(history)
        if conversation_id:
            turns = self._conversations.history(principal.subject, conversation_id) + turns
        cfg = self._settings.context
        return trim_history(
            turns, self._count, max_tokens=cfg.history_tokens, max_turns=cfg.history_turns
        )

    def _relevant(self, hits: Sequence[Hit]) -> bool:
        if not hits:
            return False
        if self._settings.retrieval.mode == "keyword":
            return True
        best = _best_score(hits)
        return best is not None and best >= self._settings.retrieval.min_score

    async def stream(
        self,
        question: str,
        principal: Principal,
        history: Sequence[HistoryTurn] = (),
        *,
        conversation_id: str | None = None,
        options: AnswerOptions | None = None,
    ) -> AsyncGenerator[AnswerEvent, None]:
        clock = _Clock()
        self.counters.questions += 1
        turns = self.history_for(principal, conversation_id, history)
        query = standalone_query(question, turns)
        hits = await asyncio.to_thread(self._retriever.search, query, principal)
        clock.mark("retrieval_ms")
        if not self._relevant(hits):
            self.counters.declined += 1
            log.info("declined: nothing relevant enough (hits=%d)", len(hits))
            decline = say("decline", question)
            yield SourcesEvent([])
            yield TextDelta(decline)
            clock.mark("total_ms")
            self._remember(principal, conversation_id, question, decline)
            yield DoneEvent(
                Answer(
                    decline,
                    [],
                    Usage(),
                    dict(clock.marks),
                    declined=True,
                    top_score=_best_score(hits),
                )
            )
            return
        request_id = uuid.uuid4().hex
        packed, request = await asyncio.to_thread(
            self.pack, question, hits, principal, turns, request_id, options
        )
        if packed.mode == "whole_kb":
            self.counters.whole_kb += 1
        clock.mark("packing_ms")
        sources = packed.sources
        yield SourcesEvent([to_citation(s) for s in sources])
        parts: list[str] = []
        usage = Usage()
        # What is shown, per answer.mode: rag/answering/verify.py.
        verifier = Verifier(self._settings, question, query, sources)
        engine = self._engine.stream(request, turns) if verifier.generates else _nothing()
        try:
            async with contextlib.aclosing(engine) as events:
                async for event in events:
                    if isinstance(event, TextDelta):
                        if not parts:
                            clock.mark("first_token_ms")
                        parts.append(event.text)
                        shown = verifier.feed(event.text)
                        if shown:
                            yield TextDelta(shown)
                    elif isinstance(event, Finished):
                        usage = event.usage
        except (asyncio.CancelledError, GeneratorExit, BadRequestError):
            raise  # the caller left, or asked for too much: not the engine's fault
        except RagError as exc:
            self._engine_failed(exc)
            raise
        except Exception as exc:
            error = EngineError(
                f"The engine failed while answering ({type(exc).__name__}). Retry; if it "
                "keeps failing, check /readyz and the service log."
            )
            self._engine_failed(error)
            raise error from exc
        self.engine_health.succeeded()
        outcome = await asyncio.to_thread(verifier.finish, "".join(parts))
        for piece in outcome.pieces:
            if "first_token_ms" not in clock.marks:
                clock.mark("first_token_ms")
            yield TextDelta(piece)
        text, grounded = outcome.text, outcome.grounded
        if outcome.quoted:
            self.counters.quoted += 1
        if outcome.declined:
            self.counters.declined += 1
        unsupported = grounded.unsupported
        self.counters.unsupported_sentences += len(unsupported)
        clock.mark("total_ms")
        log.info(
            "answered: sources=%d mode=%s context_tokens=%d sentences=%d unsupported=%d "
            "quoted=%s declined=%s withheld=%s",
            len(sources),
            packed.mode,
            packed.tokens,
            len(grounded.sentences),
            len(unsupported),
            outcome.quoted,
            outcome.declined,
            bool(outcome.withheld),
        )
        self._remember(principal, conversation_id, question, text)
        answer = Answer(
            text,
            grounded.citations,
            usage,
            dict(clock.marks),
            declined=outcome.declined,
            unsupported=unsupported,
            top_score=_best_score(hits),
            quoted=outcome.quoted,
        )
        yield DoneEvent(answer, grounded.sentences, list(sources), outcome.withheld)

    def _engine_failed(self, error: RagError) -> None:
        self.engine_health.failed(error.message)
        log.warning(
            "engine request failed (%s); %d failure(s) since start",
            error.code,
            self.engine_health.failures,
        )

    def _remember(
        self, principal: Principal, conversation_id: str | None, question: str, answer: str
    ) -> None:
        if conversation_id:
            self._conversations.append(principal.subject, conversation_id, question, answer)

    async def ask(
        self,
        question: str,
        principal: Principal,
        history: Sequence[HistoryTurn] = (),
        *,
        conversation_id: str | None = None,
        options: AnswerOptions | None = None,
    ) -> Answer:
        done = await self.ask_full(
            question, principal, history, conversation_id=conversation_id, options=options
        )
        return done.answer

    async def ask_full(
        self,
        question: str,
        principal: Principal,
        history: Sequence[HistoryTurn] = (),
        *,
        conversation_id: str | None = None,
        options: AnswerOptions | None = None,
    ) -> DoneEvent:
        stream = self.stream(
            question, principal, history, conversation_id=conversation_id, options=options
        )
        async with contextlib.aclosing(stream) as events:
            async for event in events:
                if isinstance(event, DoneEvent):
                    return event
        raise RuntimeError("answer stream ended without a result")  # pragma: no cover


async def _nothing() -> AsyncGenerator[TextDelta | Finished, None]:
    """No engine events (extractive mode asks no model)."""
    return
    yield


def _best_score(hits: Sequence[Hit]) -> float | None:
    return max((h.dense_score for h in hits if h.dense_score is not None), default=None)
