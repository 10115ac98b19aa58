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
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse

from rag.answer import AnswerService, DoneEvent, SourcesEvent
from rag.config import Settings
from rag.errors import BadRequestError, EngineNotReadyError, RagError
from rag.retrieval import Filters, Retriever, SearchStats
from rag.seams import Engine
from rag.types import Principal, TextDelta
from serving.schemas import (
    AskRequest,
    AskResponse,
    CitationOut,
    ErrorResponse,
    HitOut,
    ReadyResponse,
    RetrieveRequest,
    RetrieveResponse,
)

log = logging.getLogger(__name__)


@dataclass
class AppState:
    settings: Settings
    engine: Engine | None = None
    answers: AnswerService | None = None
    retriever: Retriever | None = None
    status: str = "loading"
    detail: str | None = None
    owns_engine: bool = True
    loader: asyncio.Task[None] | None = field(default=None, repr=False)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Any:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _load(state: AppState) -> None:
    from rag.engines import start_engine
    from rag.services import build_knowledge_base, build_retriever

    try:
        kb = await asyncio.to_thread(build_knowledge_base, state.settings)
        state.retriever = await asyncio.to_thread(build_retriever, state.settings, kb)
        if state.engine is None:
            state.engine = await asyncio.to_thread(start_engine, state.settings)
        state.answers = AnswerService(state.settings, state.retriever, state.engine)
        state.status = "ready"
        log.info("service ready")
    except RagError as exc:
        state.status, state.detail = "failed", exc.message
        log.error("start-up failed: %s", exc.message)
    except Exception as exc:
        state.status, state.detail = "failed", f"{type(exc).__name__}: {exc}"
        log.exception("start-up failed")


def get_answers(request: Request) -> AnswerService:
    """The answer service, or a 503 that says why it is not there yet."""
    state: AppState = request.app.state.rag
    if state.answers is None:
        if state.status == "failed":
            raise EngineNotReadyError(
                f"The service failed to start: {state.detail}. Fix the cause and restart."
            )
        raise EngineNotReadyError("The model is still loading. Retry in a few seconds.")
    return state.answers


def get_retriever(request: Request) -> Retriever:
    """The retriever (ready before the engine is), or a 503 that says why not."""
    state: AppState = request.app.state.rag
    if state.retriever is None:
        if state.status == "failed":
            raise EngineNotReadyError(
                f"The service failed to start: {state.detail}. Fix the cause and restart."
            )
        raise EngineNotReadyError("The knowledge base is still opening. Retry in a moment.")
    return state.retriever


def get_principal(request: Request) -> Principal:
    """Who is calling. Until authentication exists every caller is anonymous, with the
    groups of ``retrieval.anonymous_groups``; the auth layer replaces this dependency."""
    state: AppState = request.app.state.rag
    groups = frozenset(state.settings.retrieval.anonymous_groups)
    return Principal(subject="anonymous", groups=groups, anonymous=True)


Answers = Annotated[AnswerService, Depends(get_answers)]
Searcher = Annotated[Retriever, Depends(get_retriever)]
Caller = Annotated[Principal, Depends(get_principal)]


def create_app(settings: Settings, *, engine: Engine | None = None) -> FastAPI:
    state = AppState(settings, engine=engine, owns_engine=engine is None)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.loader = asyncio.create_task(_load(state))
        try:
            yield
        finally:
            if state.loader is not None and not state.loader.done():
                state.loader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await state.loader
            if state.owns_engine and state.engine is not None:
                await state.engine.close()

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

    @app.exception_handler(RagError)
    async def rag_error(_: Request, exc: RagError) -> Any:
        headers = {"Retry-After": "5"} if exc.http_status == 503 else None
        return _error(exc.http_status, exc.code, exc.message, headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> Any:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}"
            for e in exc.errors()
        )
        return _error(422, "bad_request", f"Invalid request: {problems}. Fix it and retry.")

    errors: dict[int | str, dict[str, Any]] = {
        413: {"model": ErrorResponse},
        422: {"model": ErrorResponse, "description": "Invalid request."},
        503: {"model": ErrorResponse, "description": "Not ready, or the engine failed."},
    }

    @app.get("/healthz", tags=["ops"], summary="Liveness: the process answers.")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["ops"],
        summary="Readiness: 200 once the engine is ready, else 503.",
        response_model=ReadyResponse,
        responses={503: {"model": ReadyResponse}},
    )
    async def readyz() -> Any:
        model = state.engine.name if state.engine is not None else None
        if state.status == "ready" and state.engine is not None and not state.engine.healthy:
            state.status, state.detail = "failed", "the engine stopped; restart the service"
        body = ReadyResponse(status=state.status, model=model, detail=state.detail)
        code = 200 if state.status == "ready" else 503
        return JSONResponse(body.model_dump(), status_code=code)

    @app.post(
        "/v1/ask",
        tags=["ask"],
        summary="Answer a question from the knowledge base, with citations.",
        response_model=AskResponse,
        responses={
            200: {
                "description": "The answer as JSON, or with `stream: true` Server-Sent "
                "Events: `citations`, `delta`..., then `done` (or `error`).",
                "content": {"text/event-stream": {}},
            },
            **errors,
        },
    )
    async def ask(body: AskRequest, service: Answers, caller: Caller) -> Any:
        limit = settings.server.max_question_chars
        if len(body.question) > limit:
            raise BadRequestError(
                f"The question has {len(body.question)} characters; the limit is {limit}. "
                "Shorten it."
            )
        if not body.question.strip():
            raise BadRequestError("The question is empty. Type a question and retry.")
        cid = body.conversation_id
        if not body.stream:
            done = await service.ask_full(body.question, caller, conversation_id=cid)
            return AskResponse.of(done.answer, done.sentences, cid)
        return StreamingResponse(
            _stream_events(service, body.question, caller, cid),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.post(
        "/v1/retrieve",
        tags=["retrieve"],
        summary="Search the knowledge base: ranked chunks the caller may read.",
        response_model=RetrieveResponse,
        responses=errors,
    )
    async def retrieve(body: RetrieveRequest, retriever: Searcher, caller: Caller) -> Any:
        limit = settings.server.max_question_chars
        if len(body.query) > limit:
            raise BadRequestError(
                f"The query has {len(body.query)} characters; the limit is {limit}. Shorten it."
            )
        if not body.query.strip():
            raise BadRequestError("The query is empty. Type what to search for and retry.")
        filters = Filters.parse(body.filters)
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


async def _stream_events(
    service: AnswerService, question: str, caller: Principal, conversation_id: str | None
) -> AsyncIterator[str]:
    try:
        stream = service.stream(question, caller, conversation_id=conversation_id)
        async with contextlib.aclosing(stream) as events:
            async for event in events:
                if isinstance(event, SourcesEvent):
                    cites = [CitationOut.of(c).model_dump() for c in event.sources]
                    yield _sse("citations", {"citations": cites})
                elif isinstance(event, TextDelta):
                    yield _sse("delta", {"text": event.text})
                elif isinstance(event, DoneEvent):
                    body = AskResponse.of(event.answer, event.sentences, conversation_id)
                    yield _sse("done", body.model_dump())
    except RagError as exc:
        yield _sse("error", {"code": exc.code, "message": exc.message})
    except Exception:
        log.exception("answer stream failed")
        yield _sse(
            "error",
            {"code": "internal_error", "message": "The answer failed. Retry in a moment."},
        )
