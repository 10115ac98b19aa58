"""The middleware every request passes, outermost first: the body-size limit, the metrics
count, widget CORS, and the request id with one log line (sizes and timings, never text)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response

from rag.config import Settings
from serving import metrics, widget
from serving.errors import error_response
from serving.uploads import MAX_FILES_PER_UPLOAD

log = logging.getLogger(__name__)
Next = Callable[[Request], Awaitable[Response]]
UPLOAD_PATH = "/v1/documents"


async def request_log(request: Request, call_next: Next) -> Response:
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


async def body_limit(request: Request, call_next: Next) -> Response:
    settings: Settings = request.app.state.rag.settings
    limit = settings.auth.max_body_kb * 1024
    if request.method == "POST" and request.url.path == UPLOAD_PATH:
        limit = int(settings.ingest.max_file_mb * 1e6) * MAX_FILES_PER_UPLOAD
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        return error_response(
            413,
            "payload_too_large",
            f"The request body has {int(length)} bytes; the limit is {limit}. Send less.",
        )
    return await call_next(request)


def install(app: FastAPI, settings: Settings) -> None:
    # Starlette runs the middleware added last outermost.
    app.middleware("http")(request_log)
    widget.install_cors(app, settings)
    app.middleware("http")(metrics.count_requests)
    app.middleware("http")(body_limit)
