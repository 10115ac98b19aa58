"""The middleware every request passes, outermost first: the body-size limit (on the bytes
received), the metrics count, widget CORS, and the request id with one log line (sizes and
timings, never text)."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request, Response

from rag.config import Settings
from serving import metrics, widget
from serving.audit import AuditTrail
from serving.errors import error_response
from serving.uploads import MAX_FILES_PER_UPLOAD

log = logging.getLogger(__name__)
Next = Callable[[Request], Awaitable[Response]]
# The ASGI types (as Starlette spells them; FastAPI does not re-export them).
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
UPLOAD_PATH = "/v1/documents"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


async def request_log(request: Request, call_next: Next) -> Response:
    sent = request.headers.get("x-request-id", "")
    # A client's id is echoed and logged only when it is short and plain (issue 19: 200 KB
    # ids and escape characters reached the log); otherwise the service makes one.
    rid = sent if _REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex[:16]
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


def body_limit_for(settings: Settings, method: str, path: str) -> int:
    if method == "POST" and path == UPLOAD_PATH:
        return int(settings.ingest.max_file_mb * 1e6) * MAX_FILES_PER_UPLOAD
    return settings.auth.max_body_kb * 1024


class BodyLimit:
    """The body-size limit on the bytes actually received (issue 19: it read only
    ``Content-Length``, so a 150 MB chunked body with no key was read and parsed before the
    401). A declared length over the limit is refused before anything is read; otherwise
    every ``http.request`` message is counted as it arrives, and the first byte over the limit
    ends the request with a 413 before the rest is read, parsed, or any auth work is done
    (FastAPI reads the body before it resolves the route's dependencies)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings: Settings = scope["app"].state.rag.settings
        limit = body_limit_for(settings, scope["method"], scope["path"])
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await error_response(
                413,
                "payload_too_large",
                f"The request body has {int(declared)} bytes; the limit is {limit}. Send less.",
            )(scope, receive, send)
            return
        received = 0
        over = started = replaced = False

        async def counted() -> Message:
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # The app sees a client that left (it stops reading and answers); that
                    # answer is replaced by the 413 below. Raising here instead would reach
                    # FastAPI wrapped in an exception group, as a 400.
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def watched(message: Message) -> None:
            nonlocal started, replaced
            if replaced:
                return  # the rest of the app's answer, replaced by the 413
            if message["type"] == "http.response.start":
                if over and not started:
                    replaced = started = True
                    await too_large(limit)(scope, receive, send)
                    return
                started = True
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except Exception:
            if not over:
                raise
        if over and not started:
            await too_large(limit)(scope, receive, send)


def too_large(limit: int) -> Response:
    return error_response(
        413,
        "payload_too_large",
        f"The request body is over the limit of {limit} bytes. Send less.",
        {"Connection": "close"},
    )


def install(app: FastAPI, settings: Settings) -> None:
    # Starlette runs the middleware added last outermost.
    app.middleware("http")(request_log)
    widget.install_cors(app, settings)
    app.middleware("http")(metrics.count_requests)
    app.add_middleware(BodyLimit)
    app.add_middleware(AuditTrail)  # outermost: records once the response is complete
