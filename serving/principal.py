"""Who is asking: one FastAPI dependency every route that reads the knowledge base uses.

Today a caller is either a widget (``X-Widget-Token`` + the page's ``Origin``, optionally a
signed ``X-Widget-Identity``) or anonymous with the configured default groups. API keys
replace the anonymous case when auth is configured.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from rag.config import Settings
from rag.types import Principal
from serving.widget_auth import widget_principal

TOKEN_HEADER = "x-widget-token"
IDENTITY_HEADER = "x-widget-identity"


def anonymous(settings: Settings) -> Principal:
    return Principal("anonymous", frozenset(settings.ingest.default_groups), anonymous=True)


def page_origin(request: Request) -> str | None:
    """The calling page's origin: browsers omit ``Origin`` on same-origin GETs, but then say
    ``Sec-Fetch-Site: same-origin``, and the page's origin is the service's own."""
    origin = request.headers.get("origin")
    if origin is None and request.headers.get("sec-fetch-site") == "same-origin":
        origin = f"{request.url.scheme}://{request.url.netloc}"
    return origin


def get_principal(request: Request) -> Principal:
    settings: Settings = request.app.state.rag.settings
    token = request.headers.get(TOKEN_HEADER)
    if token is not None:
        return widget_principal(
            settings.widget, token, page_origin(request), request.headers.get(IDENTITY_HEADER)
        )
    return anonymous(settings)


Caller = Annotated[Principal, Depends(get_principal)]


def can_read(principal: Principal, groups: tuple[str, ...]) -> bool:
    return bool(principal.groups.intersection(groups))
