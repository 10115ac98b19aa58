"""The FastAPI app: ``create_app(settings, *, engine=None, services=None)``.

``create_app`` lists what the service is made of; the work lives in the modules it names.
The lifespan opens the service's parts (:meth:`rag.services.Services.open`) as a task, so
``/healthz`` answers at once and ``/readyz`` turns 200 only when the engine is ready. A test
may hand in an already-started engine (the real one, shared across tests).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from rag import __version__
from rag.config import Settings
from rag.seams import Engine
from rag.services import Services
from serving import apidocs, docs_ui, errors, metrics, middleware, widget
from serving.openai_compat import router as openai
from serving.routes import ask, curated, documents, feedback, handoff, ops
from serving.state import HttpState

DESCRIPTION = (
    "Answers questions from the company's own documents, with citations. "
    'Errors have the shape `{"error": {"code", "message"}}`; the message says what to do next.'
)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    services: Services = app.state.rag
    http: HttpState = app.state.http
    opening = asyncio.create_task(services.open())
    # The identity provider's keys, fetched meanwhile (a failure is logged; a sign-in that
    # comes first fetches them itself).
    oidc = asyncio.create_task(asyncio.to_thread(http.oidc.start)) if http.oidc else None
    try:
        yield
    finally:
        if oidc is not None:
            with contextlib.suppress(Exception):
                await oidc
        if not opening.done():
            opening.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await opening
        await http.close()
        await services.close()


def create_app(
    settings: Settings, *, engine: Engine | None = None, services: Services | None = None
) -> FastAPI:
    """The service: its parts, the HTTP state, the routes, middleware and error handling."""
    services = services or Services(settings, engine=engine)
    app = FastAPI(
        title="Private knowledge Q&A",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by docs_ui with local assets, not from a CDN
        redoc_url=None,
        openapi_url="/openapi.json" if settings.server.public_docs else None,
    )
    app.state.rag = services  # rag.services: state db, keys, index, retriever, answers, engine
    app.state.http = HttpState.of(services)  # answer slots, metrics, the upload queue
    app.include_router(widget.router)  # /widget.js, /widget/demo
    app.include_router(feedback.router)  # /v1/feedback, /v1/analytics
    app.include_router(handoff.router)  # /v1/handoff, /v1/handoffs (the outbox)
    app.include_router(curated.router)  # /v1/curated... (admin)
    app.include_router(documents.router)  # /v1/documents...
    app.include_router(openai.router)  # /v1/chat/completions, /v1/models
    app.include_router(metrics.router)  # /metrics
    app.include_router(ops.router)  # /healthz, /readyz
    app.include_router(ask.router)  # /v1/ask, /v1/retrieve
    middleware.install(app, settings)  # body limit, metrics, widget CORS, request log
    errors.install(app)  # RagError -> its status and {"error": {code, message}}
    apidocs.install(app, settings)  # the OpenAPI document with every error a route gives
    if settings.server.public_docs:
        docs_ui.install(app)  # /docs and its assets, served here (no CDN)
    return app
