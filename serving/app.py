"""The FastAPI app: ``create_app(settings, engine=None)``.

The lifespan opens the knowledge base and starts the engine in a worker thread, so
``/healthz`` answers at once and ``/readyz`` turns 200 only when the engine is ready. A test
may hand in an already-started engine (the real one, shared across tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse

from rag.answering.answer import AnswerService, DoneEvent, SourcesEvent
from rag.config import Settings
from rag.errors import BadRequestError, RagError
from rag.retrieval.hybrid import Filters, Retriever, SearchStats
from rag.seams import Engine, RemoteReachability
from rag.services import Services
from rag.types import Answer, Principal, TextDelta
from serving import apidocs, documents, feedback, openai_compat, widget
from serving import metrics as metrics_mod
from serving.capacity import AnswerSlots
from serving.deps import Answers
from serving.principal import Asker, RateLimitedError, Reader
from serving.schemas import (
    ANSWER_EXAMPLE,
    CITATION_EXAMPLE,
    AskRequest,
    AskResponse,
    CitationOut,
    HealthResponse,
    HitOut,
    ReadyResponse,
    RetrieveRequest,
    RetrieveResponse,
)
from serving.state import HttpState

log = logging.getLogger(__name__)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Any:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


ASK_STREAM_EXAMPLE = "".join(  # documentation only; built from the JSON examples
    [
        _sse("citations", {"citations": [CITATION_EXAMPLE]}),
        _sse("delta", {"text": "The shared print queue is "}),
        _sse("delta", {"text": "called NW-Follow-Me [1]."}),
        _sse("done", ANSWER_EXAMPLE),
    ]
)


def get_retriever(request: Request) -> Retriever:
    """The retriever (ready before the engine is), or a 503 that says why not."""
    services: Services = request.app.state.rag
    return services.part(services.retriever, "knowledge base")


Searcher = Annotated[Retriever, Depends(get_retriever)]


def create_app(
    settings: Settings, *, engine: Engine | None = None, services: Services | None = None
) -> FastAPI:
    state = services or Services(settings, engine=engine)
    http = HttpState(AnswerSlots(settings.server.max_concurrent_answers))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loader = asyncio.create_task(state.open())
        try:
            yield
        finally:
            if not loader.done():
                loader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await loader
            await state.close()

    app = FastAPI(
        title="Private knowledge Q&A",
        version="0.1.0",
        description=(
            "Answers questions from the company's own documents, with citations. "
            'Errors have the shape `{"error": {"code", "message"}}`; the message says '
            "what to do next."
        ),
        lifespan=lifespan,
    )
    app.state.rag = state
    app.state.http = http
    app.include_router(widget.router(settings))
    app.include_router(feedback.router())
    app.include_router(documents.router(settings))
    app.include_router(
        openai_compat.router(
            settings,
            lambda: state.engine.name if state.engine is not None else None,
            lambda answer_id, question, caller, answer: _record(
                state, http, answer_id, question, caller, answer
            ),
            http.slots,
        )
    )

    @app.middleware("http")
    async def request_log(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
        started = time.perf_counter()
        response = await call_next(request)
        response.headers["X-Request-ID"] = rid
        log.info(
            "request id=%s %s %s -> %s %.1f ms",
            rid,
            request.method,
            request.url.path,
            response.status_code,
            (time.perf_counter() - started) * 1000,
        )
        return response

    widget.install_cors(app, settings)
    apidocs.install(app, settings)
    http.metrics = metrics_mod.install(app, state, http)

    @app.middleware("http")
    async def body_limit(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        limit = settings.auth.max_body_kb * 1024
        if request.method == "POST" and request.url.path == "/v1/documents":
            limit = int(settings.ingest.max_file_mb * 1e6) * documents.MAX_FILES_PER_UPLOAD
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            return _error(  # type: ignore[no-any-return]
                413,
                "payload_too_large",
                f"The request body has {int(length)} bytes; the limit is {limit}. Send less.",
            )
        return await call_next(request)

    @app.exception_handler(RagError)
    async def rag_error(_: Request, exc: RagError) -> Any:
        headers: dict[str, str] | None = None
        if isinstance(exc, RateLimitedError):
            headers = {"Retry-After": str(exc.retry_after_s)}
        elif exc.http_status == 503:
            headers = {"Retry-After": "5"}
        elif exc.http_status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        return _error(exc.http_status, exc.code, exc.message, headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> Any:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}"
            for e in exc.errors()
        )
        return _error(422, "bad_request", f"Invalid request: {problems}. Fix it and retry.")

    @app.get(
        "/healthz",
        tags=["ops"],
        summary="Liveness: the process answers.",
        response_description="Always ok while the process runs.",
    )
    async def healthz() -> HealthResponse:
        """For a liveness probe: 200 as soon as the process listens, even while the model
        loads. Use /readyz to know whether questions can be answered."""
        return HealthResponse()

    @app.get(
        "/readyz",
        tags=["ops"],
        summary="Readiness: 200 once the engine is ready (also when degraded), else 503.",
        response_model=ReadyResponse,
        response_description="Ready: questions can be answered (degraded: the last answer "
        "failed in the engine; the service still takes questions).",
        responses={
            503: {
                "model": ReadyResponse,
                "description": "Loading, failed (detail says why and what to do), or the "
                "remote model server is unreachable.",
            }
        },
    )
    async def readyz() -> Any:
        """For a readiness probe and load balancers. No key needed; no private data."""
        if state.status == "ready" and state.engine is not None and not state.engine.healthy:
            state.status, state.detail = "failed", "the engine stopped; restart the service"
        status, detail = state.status, state.detail
        if status == "ready" and isinstance(state.engine, RemoteReachability):
            reason = await state.engine.unreachable_reason()
            if reason is not None:
                status, detail = "unreachable", reason
        health = state.answers.engine_health if state.answers is not None else None
        if status == "ready" and health is not None and health.degraded:
            status, detail = "degraded", health.describe()
        model = state.engine.name if state.engine is not None else None
        body = ReadyResponse(
            status=status,
            model=model,
            detail=detail,
            engine_errors=health.failures if health is not None else 0,
            last_engine_error=health.last_error if health is not None else None,
        )
        code = 200 if status in ("ready", "degraded") else 503
        return JSONResponse(body.model_dump(), status_code=code)

    @app.post(
        "/v1/ask",
        tags=["ask"],
        summary="Answer a question from the knowledge base, with citations.",
        response_model=AskResponse,
        response_description="The answer as JSON, or with `stream: true` Server-Sent "
        "Events: `citations` (the numbered sources), `delta`... (answer text), then `done` "
        "(the whole answer, as the JSON response) or `error` (`code`, `message`).",
        responses={200: {"content": {"text/event-stream": {"example": ASK_STREAM_EXAMPLE}}}},
    )
    async def ask(body: AskRequest, caller: Asker, service: Answers) -> Any:
        """Retrieves what the caller may read (hybrid dense + keyword search within their
        access groups), packs it into the model's context, and answers with `[n]` citations
        checked against the sources. When nothing relevant is found the answer is declined
        (`declined: true`) without calling the model. Needs the `ask` scope; rate limited
        per key or user. Rate the answer with POST /v1/feedback and its `answer_id`."""
        limit = settings.server.max_question_chars
        if len(body.question) > limit:
            raise BadRequestError(
                f"The question has {len(body.question)} characters; the limit is {limit}. "
                "Shorten it."
            )
        if not body.question.strip():
            raise BadRequestError("The question is empty. Type a question and retry.")
        answer_id = uuid.uuid4().hex
        cid = body.conversation_id
        if not body.stream:
            with http.slots:
                done = await service.ask_full(body.question, caller, conversation_id=cid)
            await _record(state, http, answer_id, body.question, caller, done.answer)
            return AskResponse.of(done.answer, answer_id, done.sentences, cid)
        return StreamingResponse(
            _stream_events(state, http, service, body.question, answer_id, caller, cid),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.post(
        "/v1/retrieve",
        tags=["retrieve"],
        summary="Search the knowledge base: ranked chunks the caller may read.",
        response_model=RetrieveResponse,
        response_description="Ranked passages, best first.",
    )
    async def retrieve(body: RetrieveRequest, caller: Reader, retriever: Searcher) -> Any:
        """The retrieval step of /v1/ask on its own: no model call. Only passages in the
        caller's access groups are searched. Works while the model is still loading."""
        limit = settings.server.max_question_chars
        if len(body.query) > limit:
            raise BadRequestError(
                f"The query has {len(body.query)} characters; the limit is {limit}. Shorten it."
            )
        if not body.query.strip():
            raise BadRequestError("The query is empty. Type what to search for and retry.")
        raw = body.filters.model_dump(exclude_none=True) if body.filters else None
        filters = Filters.parse(raw)
        stats = SearchStats()
        started = time.perf_counter()
        hits = await asyncio.to_thread(
            retriever.search,
            body.query,
            caller,
            body.k,
            filters=filters,
            mode=body.mode,
            stats=stats,
        )
        timings = {
            "dense_ms": round(stats.dense_ms, 1),
            "keyword_ms": round(stats.keyword_ms, 1),
            "total_ms": round((time.perf_counter() - started) * 1000, 1),
        }
        return RetrieveResponse(hits=[HitOut.of(h) for h in hits], timings=timings)

    return app


async def _record(
    state: Services,
    http: HttpState,
    answer_id: str,
    question: str,
    caller: Principal,
    answer: Answer,
) -> None:
    """Count the answer and remember it (not its text) for feedback; never fail the answer."""
    if http.metrics is not None:
        http.metrics.observe_answer(answer)
    if state.feedback is None:
        return
    try:
        await asyncio.to_thread(
            state.feedback.record_answer,
            answer_id,
            caller.subject,
            declined=answer.declined,
            doc_ids=sorted({c.doc_id for c in answer.citations}),
            latency_ms=answer.timings.get("total_ms", 0.0),
            question=question,
            top_score=answer.top_score,
        )
    except Exception:
        log.exception("recording answer %s failed", answer_id)


async def _stream_events(
    state: Services,
    http: HttpState,
    service: AnswerService,
    question: str,
    answer_id: str,
    caller: Principal,
    conversation_id: str | None,
) -> AsyncIterator[str]:
    try:
        with http.slots:
            stream = service.stream(question, caller, conversation_id=conversation_id)
            async with contextlib.aclosing(stream) as events:
                async for event in events:
                    if isinstance(event, SourcesEvent):
                        cites = [CitationOut.of(c).model_dump() for c in event.sources]
                        yield _sse("citations", {"citations": cites})
                    elif isinstance(event, TextDelta):
                        yield _sse("delta", {"text": event.text})
                    elif isinstance(event, DoneEvent):
                        await _record(state, http, answer_id, question, caller, event.answer)
                        body = AskResponse.of(
                            event.answer, answer_id, event.sentences, conversation_id
                        )
                        yield _sse("done", body.model_dump())
    except RagError as exc:
        yield _sse("error", {"code": exc.code, "message": exc.message})
    except Exception:
        log.exception("answer stream failed")
        yield _sse(
            "error",
            {"code": "internal_error", "message": "The answer failed. Retry in a moment."},
        )
