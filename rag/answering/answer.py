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
import secrets
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from rag.answering import prompt, tokens
from rag.answering.budget import checked_budget
from rag.answering.cache import AnswerCache, pieces_of
from rag.answering.citations import to_citation
from rag.answering.context import Packed, Packer, readable_by
from rag.answering.conversation import standalone_query, trim_history
from rag.answering.curated import CuratedAnswers
from rag.answering.grounding import Grounded, Sentence
from rag.answering.health import EngineHealth
from rag.answering.verify import Verifier
from rag.answering.wording import say
from rag.config import Settings
from rag.errors import BadRequestError, EngineError, RagError
from rag.index.store import acl_where
from rag.retrieval.hybrid import Retriever
from rag.seams import Engine, PromptRenderer
from rag.state.conversations import Conversations, ConversationStore
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
class _Generated:
    """What the engine produced for one answer."""

    parts: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    finish: str = "stop"


@dataclass(frozen=True, slots=True)
class _Ready:
    """An answer given without retrieval or the engine (curated, or from the cache): what
    the stream shows."""

    answer: Answer
    sources: list[Citation]
    pieces: list[str]
    sentences: list[Sentence] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Final:
    """The grounded answer: its text, the checked citations, the text still to stream
    after what the model's stream showed, and what the model wrote that was not shown."""

    text: str
    grounded: Grounded
    pieces: list[str]
    quoted: bool = False
    declined: bool = False
    withheld: str = ""


class AnswerService:
    def __init__(
        self,
        settings: Settings,
        retriever: Retriever,
        engine: Engine,
        *,
        conversations: ConversationStore | None = None,
        curated: CuratedAnswers | None = None,
        cache: AnswerCache | None = None,
    ) -> None:
        self._settings = settings
        self._curated = curated
        self._cache = cache if cache is not None and cache.enabled else None
        self._retriever = retriever
        self._engine = engine
        # Only the newest ``history_turns`` turns are ever sent: keep no more than that.
        self._conversations: ConversationStore = conversations or Conversations(
            max_turns=max(2, settings.context.history_turns)
        )
        counter: Callable[[str], int] | None = getattr(engine, "count_text_tokens", None)
        self._count = counter or tokens.count
        self._packer = Packer(settings.context, self._count)
        self._corpus_cache: dict[tuple[frozenset[str], str], list[Chunk]] = {}
        self.engine_health = EngineHealth()

    @property
    def retriever(self) -> Retriever:
        return self._retriever

    def _request(
        self,
        question: str,
        sources: Sequence[Source],
        request_id: str,
        options: AnswerOptions | None = None,
    ) -> GenerationRequest:
        llm = self._settings.llm
        opts = options or AnswerOptions()
        effort = opts.reasoning_effort or llm.reasoning_effort
        budget = self._budget(opts)
        return GenerationRequest(
            request_id=request_id,
            instructions=prompt.instructions_for(self._engine.family),
            context=prompt.render_sources(sources),
            question=question,
            # A caller may ask for a shorter answer, never a longer one: the context budget
            # was computed for the effort's maximum (rag/answering/budget.py).
            max_tokens=min(opts.max_tokens or budget, budget),
            temperature=llm.temperature,
            reasoning_effort=effort,
        )

    def _budget(self, options: AnswerOptions | None) -> int:
        llm = self._settings.llm
        effort = (options and options.reasoning_effort) or llm.reasoning_effort
        return checked_budget(llm, self._engine.family, effort, self._engine.max_model_len)

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
        """Sources for ``hits`` within the exact token budget; the request to send (with
        its token ids, for an engine that takes them)."""
        limit = self._engine.max_model_len - self._budget(options)
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
        size, request = self._measure(
            self._request(question, packed.sources, request_id, options), history
        )
        while packed.sources and size > limit:
            packed = self._packer.trim(packed)
            size, request = self._measure(
                self._request(question, packed.sources, request_id, options), history
            )
        return packed, request

    def _measure(
        self, request: GenerationRequest, history: Sequence[HistoryTurn]
    ) -> tuple[int, GenerationRequest]:
        """The request's exact prompt length. An engine that takes token ids gets them with
        the request (``prompt_ids``), so the prompt is rendered once, here, in a thread."""
        if isinstance(self._engine, PromptRenderer):
            ids = self._engine.render(request, history)
            return len(ids), replace(request, prompt_ids=tuple(ids))
        return self._engine.count_prompt_tokens(request, history), request

    async def conversation_id(self, principal: Principal, requested: str | None) -> str | None:
        """The conversation a question belongs to. A signed-in caller's ids are its own
        (history is kept per :attr:`Principal.owner`). Anonymous callers share an owner
        (every visitor of one widget token), so they only continue a conversation the
        service issued and already holds; any other id, or none, gets a new unguessable
        id, which the answer returns (issue 19: visitors read each other's history)."""
        if not principal.anonymous:
            return requested
        if not requested:
            return secrets.token_urlsafe(24)
        known = await asyncio.to_thread(self._conversations.known, principal.owner, requested)
        return requested if known else secrets.token_urlsafe(24)

    def history_for(
        self, principal: Principal, conversation_id: str | None, history: Sequence[HistoryTurn]
    ) -> list[HistoryTurn]:
        turns = list(history)
        if conversation_id:
            turns = self._conversations.history(principal.owner, conversation_id) + turns
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
        """The answer's events. Everything that costs CPU (history tokens, follow-up
        detection, retrieval, packing and rendering, grounding) runs in worker threads:
        the event loop only waits."""
        clock = _Clock()
        turns, query = await asyncio.to_thread(
            self._prepare, question, principal, conversation_id, history
        )
        vector = await self._question_vector(question, turns)
        ready = await self._curated_answer(question, principal, turns, clock, vector)
        if ready is None:
            ready = await self._cached_answer(question, principal, turns, vector)
        if ready is not None:
            text = ready.answer.answer
            await asyncio.to_thread(self._remember, principal, conversation_id, question, text)
            yield SourcesEvent(ready.sources)
            for piece in ready.pieces:
                yield TextDelta(piece)
            yield DoneEvent(ready.answer, ready.sentences)
            return
        hits = await asyncio.to_thread(self._retriever.search, query, principal, vector=vector)
        clock.mark("retrieval_ms")
        if not self._relevant(hits):
            declined = await asyncio.to_thread(
                self._decline, question, principal, conversation_id, hits, clock
            )
            for event in declined:
                yield event
            return
        packed, request = await asyncio.to_thread(
            self.pack, question, hits, principal, turns, uuid.uuid4().hex, options
        )
        clock.mark("packing_ms")
        sources = packed.sources
        yield SourcesEvent([to_citation(s) for s in sources])
        # What is shown, per answer.mode: rag/answering/verify.py.
        verifier = Verifier(self._settings, question, query, sources)
        out = _Generated()
        if verifier.generates:
            deltas = self._generate(request, turns, clock, out)
            async with contextlib.aclosing(deltas) as pieces:
                async for delta in pieces:
                    shown = verifier.feed(delta.text)
                    if shown:
                        yield TextDelta(shown)
            self.engine_health.succeeded()
        cut = (
            verifier.generates
            and not "".join(out.parts).strip()
            and out.finish == "length"
            and self._engine.family == "gpt-oss"
        )
        final = await asyncio.to_thread(self._ground, verifier, out.parts, cut, request)
        for piece in final.pieces:
            if "first_token_ms" not in clock.marks:
                clock.mark("first_token_ms")
            yield TextDelta(piece)
        grounded = final.grounded
        clock.mark("total_ms")
        log.info(
            "answered: sources=%d mode=%s context_tokens=%d sentences=%d unsupported=%d "
            "quoted=%s declined=%s withheld=%s",
            len(sources),
            packed.mode,
            packed.tokens,
            len(grounded.sentences),
            len(grounded.unsupported),
            final.quoted,
            final.declined,
            bool(final.withheld),
        )
        await asyncio.to_thread(self._remember, principal, conversation_id, question, final.text)
        answer = Answer(
            final.text,
            grounded.citations,
            out.usage,
            dict(clock.marks),
            declined=final.declined,
            unsupported=grounded.unsupported,
            top_score=_best_score(hits),
            quoted=final.quoted,
            finish_reason=out.finish,
        )
        if self._cache is not None and not turns:
            await asyncio.to_thread(
                self._cache.remember, question, principal, answer, grounded.sentences, vector
            )
        yield DoneEvent(answer, grounded.sentences, list(sources), final.withheld)

    def _decline(
        self,
        question: str,
        principal: Principal,
        conversation_id: str | None,
        hits: Sequence[Hit],
        clock: _Clock,
    ) -> list[AnswerEvent]:
        """Nothing relevant enough: say so without calling the model."""
        log.info("declined: nothing relevant enough (hits=%d)", len(hits))
        clock.mark("total_ms")
        decline = say("decline", question)
        self._remember(principal, conversation_id, question, decline)
        declined = Answer(
            decline,
            [],
            Usage(),
            dict(clock.marks),
            declined=True,
            top_score=_best_score(hits),
        )
        return [SourcesEvent([]), TextDelta(decline), DoneEvent(declined)]

    async def _question_vector(
        self, question: str, turns: Sequence[HistoryTurn]
    ) -> list[float] | None:
        """The question's embedding, computed once for the curated match, the cache and
        retrieval. None for a follow-up (neither applies; retrieval embeds its own query),
        without either, or when retrieval reads no vectors (each then embeds if it must)."""
        if turns or (self._curated is None and self._cache is None):
            return None
        if self._settings.retrieval.mode == "keyword":
            return None
        return await asyncio.to_thread(self._retriever.embed_query, question)

    async def _curated_answer(
        self,
        question: str,
        principal: Principal,
        turns: Sequence[HistoryTurn],
        clock: _Clock,
        vector: Sequence[float] | None,
    ) -> _Ready | None:
        """An admin's curated answer, preferred when one matches the question and the caller
        may be given it (rag/answering/curated.py): its citation, the text as a stream, the
        answer (``origin`` curated). Not for a follow-up: its meaning depends on the history.
        None: none matches."""
        if self._curated is None or turns:
            return None
        hit = await asyncio.to_thread(self._curated.match, question, principal, vector)
        clock.mark("curated_ms")
        if hit is None:
            return None
        clock.mark("first_token_ms")
        clock.mark("total_ms")
        text = hit.entry.answer
        answer = Answer(
            text,
            [hit.citation()],
            Usage(),
            dict(clock.marks),
            top_score=hit.match.score,
            origin="curated",
        )
        return _Ready(answer, list(answer.citations), pieces_of(text))

    async def _cached_answer(
        self,
        question: str,
        principal: Principal,
        turns: Sequence[HistoryTurn],
        vector: Sequence[float] | None,
    ) -> _Ready | None:
        """An earlier answer to the same question (or a close paraphrase) for the same
        group set, while the documents it cited are unchanged (rag/answering/cache.py): the
        cited sources, the text in stream-like pieces, the answer (``origin`` cache) with
        the same citations and grounding. Not for a follow-up: its meaning depends on the
        history. None: no usable entry."""
        if self._cache is None or turns:
            return None
        hit = await asyncio.to_thread(self._cache.lookup, question, principal, vector)
        if hit is None:
            return None
        return _Ready(hit.answer, list(hit.sources), hit.pieces, hit.sentences)

    def _prepare(
        self,
        question: str,
        principal: Principal,
        conversation_id: str | None,
        history: Sequence[HistoryTurn],
    ) -> tuple[list[HistoryTurn], str]:
        """The history within its budget, and the query retrieval should use (a follow-up
        is prefixed with the previous question; Chinese needs jieba's dictionary)."""
        turns = self.history_for(principal, conversation_id, history)
        return turns, standalone_query(question, turns)

    async def _generate(
        self,
        request: GenerationRequest,
        turns: Sequence[HistoryTurn],
        clock: _Clock,
        out: _Generated,
    ) -> AsyncGenerator[TextDelta, None]:
        """The engine's text deltas (kept in ``out`` with its usage and finish reason); an
        engine failure is counted in the health record and raised as an EngineError."""
        try:
            async with contextlib.aclosing(self._engine.stream(request, turns)) as events:
                async for event in events:
                    if isinstance(event, TextDelta):
                        if not out.parts:
                            clock.mark("first_token_ms")
                        out.parts.append(event.text)
                        yield event
                    elif isinstance(event, Finished):
                        out.usage, out.finish = event.usage, event.finish_reason
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

    def _ground(
        self,
        verifier: Verifier,
        parts: Sequence[str],
        cut: bool,
        request: GenerationRequest,
    ) -> _Final:
        """What the answer ends as (blocking: run in a worker thread): the model's text
        checked sentence by sentence, or the extractive answer, a "could not verify" quote
        or a decline (rag/answering/verify.py). When gpt-oss spent its whole budget
        reasoning, the service says so and what to change; a quote may follow."""
        outcome = verifier.finish("".join(parts))
        if not cut:
            return _Final(
                outcome.text,
                outcome.grounded,
                outcome.pieces,
                quoted=outcome.quoted,
                declined=outcome.declined,
                withheld=outcome.withheld,
            )
        message = prompt.reasoning_cut_message(request.max_tokens, request.reasoning_effort)
        if outcome.declined:
            return _Final(message, Grounded([]), [message])
        return _Final(
            f"{message}\n\n{outcome.text}",
            outcome.grounded,
            [message, "\n\n", *outcome.pieces],
            quoted=outcome.quoted,
        )

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
        """Keep the turn for follow-ups. The answer is already given: a state database that
        fails here costs this turn's history (logged), never the answer."""
        if not conversation_id:
            return
        try:
            self._conversations.append(principal.owner, conversation_id, question, answer)
        except RagError as exc:
            log.warning("keeping the conversation's turn failed: %s", exc.message)

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


def _best_score(hits: Sequence[Hit]) -> float | None:
    return max((h.dense_score for h in hits if h.dense_score is not None), default=None)
