"""The audit trail of the HTTP API (issue 22): one :class:`rag.state.audit.AuditLog` record per
question, search, upload and delete, and per refused sign-in (401) or refusal (403).

:class:`AuditTrail` is pure ASGI middleware (not ``BaseHTTPMiddleware``): it records when the
response is complete, so a streamed answer is recorded with the documents it cited. What the
route knows and the middleware does not (who the caller turned out to be, which documents,
the question) is noted on the request's :class:`AuditNote` (:func:`note`, a context variable
the middleware sets; the route, its dependencies and the answer log fill it in). The record
is written in a worker thread after the last byte is sent; a failure to write it is logged
and counted (``kb_audit_failures_total``), never turned into a failed request.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from rag.types import Principal

log = logging.getLogger(__name__)
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_ROUTES = [
    ("POST", re.compile(r"/v1/ask"), "ask", "/v1/ask"),
    ("POST", re.compile(r"/v1/chat/completions"), "ask", "/v1/chat/completions"),
    ("POST", re.compile(r"/v1/retrieve"), "retrieve", "/v1/retrieve"),
    ("POST", re.compile(r"/v1/documents"), "upload", "/v1/documents"),
    ("DELETE", re.compile(r"/v1/documents/[^/]+"), "delete", "/v1/documents/{doc_id}"),
]
_KEY_ID = re.compile(r"kb_([A-Za-z0-9]{1,32})_")


@dataclass
class AuditNote:
    """What a request's handling learned, for its audit record."""

    caller: str = ""
    groups: tuple[str, ...] = ()
    doc_ids: set[str] = field(default_factory=set)
    text: str | None = None
    reason: str = ""

    def identify(self, principal: Principal) -> None:
        """The caller as records name it: a key (``key:abc123``), or a user and what vouched
        for them (``alice via widget:intranet``, ``anonymous via widget:intranet``)."""
        who, via = principal.subject, principal.credential
        self.caller = who if not via or via == who else f"{who} via {via}"
        self.groups = tuple(sorted(principal.groups))

    def touched(self, doc_ids: Iterable[str]) -> None:
        self.doc_ids.update(doc_ids)


_current: contextvars.ContextVar[AuditNote | None] = contextvars.ContextVar(
    "audit_note", default=None
)


def note() -> AuditNote | None:
    """The current request's note (None outside a request the trail records)."""
    return _current.get()


def action_of(method: str, path: str, status: int) -> tuple[str, str] | None:
    """``(action, route template)`` for a request the trail records, else None."""
    route = next(
        (
            (action, template)
            for m, rx, action, template in _ROUTES
            if m == method and rx.fullmatch(path)
        ),
        None,
    )
    if status == 401:
        return "login_failure", route[1] if route else _template(path)
    if status == 403:
        return "denied", route[1] if route else _template(path)
    return route


def _template(path: str) -> str:
    """A path as a short label: ids replaced (never what a caller typed, whole)."""
    parts = path.split("/")[:4]
    return "/".join(
        p
        if p
        in {
            "",
            "v1",
            "documents",
            "feedback",
            "analytics",
            "metrics",
            "models",
            "retrieve",
            "ask",
            "chat",
            "completions",
        }
        else "*"
        for p in parts
    )


def presented(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """Which credential a refused request presented, named without its secret: an API key's
    id (``key:abc123``, unverified), ``widget token``, ``bearer token`` or ``none``."""
    found = dict(headers)
    auth = found.get(b"authorization", b"").decode("latin-1")
    key = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    key = key or found.get(b"x-api-key", b"").decode("latin-1")
    if key:
        match = _KEY_ID.match(key)
        return f"key:{match.group(1)} (unverified)" if match else "bearer token"
    if b"x-widget-token" in found:
        return "widget token"
    return "none"


class AuditTrail:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        services = scope["app"].state.rag
        audit = services.audit
        if audit is None:
            await self.app(scope, receive, send)
            return
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        current = AuditNote()
        token = _current.set(current)
        try:
            await self.app(scope, receive, sending)
        finally:
            _current.reset(token)
            what = action_of(scope["method"], scope["path"], status)
            if what is not None:
                await self._record(scope, audit, what, status, current)

    async def _record(
        self, scope: Scope, audit: Any, what: tuple[str, str], status: int, current: AuditNote
    ) -> None:
        action, route = what
        caller = current.caller
        if not caller or action == "login_failure":
            caller = presented(scope["headers"])
        try:
            await asyncio.to_thread(
                audit.append,
                action,
                caller=caller,
                groups=current.groups,
                route=f"{scope['method']} {route}",
                status=status,
                doc_ids=sorted(current.doc_ids),
                reason=current.reason,
                text=current.text,
            )
            scope["app"].state.http.metrics.audit_records.labels(action).inc()
        except Exception as exc:
            scope["app"].state.http.metrics.audit_failures.inc()
            log.error("audit record for %s %s failed: %s", action, route, type(exc).__name__)
