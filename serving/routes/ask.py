"""``POST /v1/ask`` (an answer with citations, as JSON or Server-Sent Events) and
``POST /v1/retrieve`` (the retrieval step alone)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncGenerator
from functools import partial
from typing import Any

from fastapi import APIRouter, Request

from rag.answering.answer import AnswerEvent, DoneEvent, SourcesEvent
from rag.errors import BadRequestError, RagError
from rag.retrieval.hybrid import Filters, SearchStats
from rag.types import TextDelta
from serving import audit
from serving.deps import (
    AnswerLogDep,
    Answers,
    Asker,
    HttpDep,
    Searcher,
    ServicesDep,
    SettingsDep,
    checked_length,
)
from serving.schemas.ask import (
    ANSWER_EXAMPLE,
    CITATION_EXAMPLE,
    AskRequest,
    AskResponse,
    CitationOut,
    HitOut,
    RetrieveRequest,
    RetrieveResponse,
)
from serving.state import Record
from serving.streaming import (
    answer_events,
    event_stream,
    sse,
    until_disconnected,
)

router = APIRouter()

ASK_STREAM_EXAMPLE = "".join(  # documentation only; built from the JSON examples
    [
        sse("citations", {"citations": [CITATION_EXAMPLE]}),
        sse("delta", {"text": "The shared print queue is "}),
        sse("delta", {"text": "called NW-Follow-Me [1]."}),
        sse("done", ANSWER_EXAMPLE),
    ]
)


@router.post(
    "/v1/ask",
    tags=["ask"],
    summary="Answer a question from the knowledge base, with citations.",
    response_model=AskResponse,
    response_description="The answer as JSON, or with `stream: true` Server-Sent "
    "Events: `citations` (the numbered sources), `delta`... (answer text), then `done` "
    "(the whole answer, as the JSON response) or `error` (`code`, `message`). Comment "
    "lines (`: keep-alive`) keep a silent connection open.",
    responses={200: {"content": {"text/event-stream": {"example": ASK_STREAM_EXAMPLE}}}},
)
async def ask(
    body: AskRequest,
    request: Request,
    caller: Asker,
    service: Answers,
    settings: SettingsDep,
    http: HttpDep,
    answer_log: AnswerLogDep,
) -> Any:
    """Retrieves what the caller may read (hybrid dense + keyword search within their
    access groups), packs it into the model's context, and answers with `[n]` citations
    checked against the sources. When nothing relevant is found the answer is declined
    (`declined: true`) without calling the model. Needs the `ask` scope; rate limited
    per key or user. Rate the answer with POST /v1/feedback and its `answer_id`."""
    question = checked_length(body.question, settings)
    if not question.strip():
        raise BadRequestError("The question is empty. Type a question and retry.")
    answer_id = uuid.uuid4().hex
    cid = await service.conversation_id(caller, body.conversation_id)
    http.slots.check()  # after every check of the request: an invalid one holds no place
    if not body.stream:
        with http.slots:
            done = await until_disconnected(
                request, service.ask_full(question, caller, conversation_id=cid)
            )
        await answer_log.record(answer_id, question, caller, done.answer)
        return AskResponse.of(done.answer, answer_id, done.sentences, cid)
    events = answer_events(http.slots, service.stream(question, caller, conversation_id=cid))
    record = partial(answer_log.record, answer_id, question, caller)
    return event_stream(
        _sse_events(events, record, answer_id, cid), settings.server.sse_keepalive_s
    )


async def _sse_events(
    events: AsyncGenerator[AnswerEvent | RagError, None],
    record: Record,
    answer_id: str,
    conversation_id: str | None,
) -> AsyncGenerator[str, None]:
    async for event in events:
        if isinstance(event, SourcesEvent):
            cites = [CitationOut.of(c).model_dump() for c in event.sources]
            yield sse("citations", {"citations": cites})
        elif isinstance(event, TextDelta):
            yield sse("delta", {"text": event.text})
        elif isinstance(event, DoneEvent):
            await record(event.answer)
            body = AskResponse.of(event.answer, answer_id, event.sentences, conversation_id)
            yield sse("done", body.model_dump())
        elif isinstance(event, RagError):
            yield sse("error", {"code": event.code, "message": event.message})


@router.post(
    "/v1/retrieve",
    tags=["retrieve"],
    summary="Search the knowledge base: ranked chunks the caller may read.",
    response_model=RetrieveResponse,
    response_description="Ranked passages, best first.",
)
async def retrieve(
    body: RetrieveRequest,
    caller: Asker,
    retriever: Searcher,
    settings: SettingsDep,
    services: ServicesDep,
) -> Any:
    """The retrieval step of /v1/ask on its own: no model call. Only passages in the
    caller's access groups are searched. Works while the model is still loading. A curated
    answer the caller may be given whose question means the same as the query comes first
    (`curated: true`; not with `filters`), within the `k` hits."""
    query = checked_length(body.query, settings, "query")
    if not query.strip():
        raise BadRequestError("The query is empty. Type what to search for and retry.")
    raw = body.filters.model_dump(exclude_none=True) if body.filters else None
    filters = Filters.parse(raw)
    stats = SearchStats()
    started = time.perf_counter()
    hits = await asyncio.to_thread(
        retriever.search, query, caller, body.k, filters=filters, mode=body.mode, stats=stats
    )
    curated = None
    if services.curated is not None and not raw:
        curated = await asyncio.to_thread(services.curated.match, query, caller)
        if curated is not None:
            hits = [curated.hit(), *hits][: body.k or settings.retrieval.top_k]
    current = audit.note()
    if current is not None:
        current.touched(h.chunk.doc_id for h in hits)
        current.text = query
    timings = {
        "dense_ms": round(stats.dense_ms, 1),
        "keyword_ms": round(stats.keyword_ms, 1),
        "total_ms": round((time.perf_counter() - started) * 1000, 1),
    }
    out = [HitOut.of(h, curated=curated is not None and i == 0) for i, h in enumerate(hits)]
    return RetrieveResponse(hits=out, timings=timings)
