"""Who is asking: one FastAPI dependency every route that reads the knowledge base uses.

A caller is, in order: an API key (``Authorization: Bearer kb_...`` or ``X-API-Key``), a
widget (``X-Widget-Token`` + the page's ``Origin``, optionally a signed
``X-Widget-Identity``), or, only when ``auth.required`` is off (``auth.allow_keyless``),
anonymous with ``retrieval.anonymous_groups``. ``require(scope)`` adds the scope check;
``asking`` and ``ingesting`` add the rate limit (the capacity check is the route's, after
validation); ``scraper`` guards ``/metrics``. The ``Annotated`` aliases routes use
(``Asker``, ``Reader``, ...) are in :mod:`serving.deps`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from rag.config import Settings
from rag.errors import AuthError, ForbiddenError, RagError, how_to_run
from rag.state.apikeys import PREFIX as KEY_PREFIX
from rag.state.apikeys import SCOPES, KeyStore
from rag.state.ratelimit import RateLimits, retry_after
from rag.types import Principal
from serving import audit
from serving.oidc import OidcVerifier, looks_like_jwt
from serving.widget_auth import widget_principal

TOKEN_HEADER = "x-widget-token"
IDENTITY_HEADER = "x-widget-identity"


class RateLimitedError(RagError):
    exit_code = 2
    http_status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def anonymous(settings: Settings) -> Principal:
    return Principal(
        "anonymous",
        frozenset(settings.retrieval.anonymous_groups),
        anonymous=True,
        scopes=frozenset(SCOPES),
        credential="anonymous",
    )


def page_origin(request: Request) -> str | None:
    """The calling page's origin: browsers omit ``Origin`` on same-origin GETs, but then say
    ``Sec-Fetch-Site: same-origin``, and the page's origin is the service's own."""
    origin = request.headers.get("origin")
    if origin is None and request.headers.get("sec-fetch-site") == "same-origin":
        origin = f"{request.url.scheme}://{request.url.netloc}"
    return origin


def _api_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("x-api-key")


def get_principal(request: Request) -> Principal:
    """Runs in FastAPI's threadpool: an API key is looked up in the state database. The
    caller is noted for the request's audit record."""
    principal = _resolve(request)
    current = audit.note()
    if current is not None:
        current.identify(principal)
    return principal


def _resolve(request: Request) -> Principal:
    state = request.app.state.rag
    settings: Settings = state.settings
    keys: KeyStore = state.keys
    presented = _api_key(request)
    oidc: OidcVerifier | None = request.app.state.http.oidc
    if presented and oidc is not None and looks_like_jwt(presented):
        return oidc.principal(presented)  # a sign-in token from the identity provider
    if presented and not settings.auth.required and not presented.startswith(KEY_PREFIX):
        presented = None  # auth off (dev): OpenAI clients must send *some* key; ignore it
    if presented:
        key = keys.verify(presented)
        if key is None:
            raise AuthError(
                "The API key is invalid or revoked. Check the Authorization header, or ask an "
                f"administrator for a key ({how_to_run('rag-ingest keys create')})."
            )
        return Principal(
            f"key:{key.key_id}",
            frozenset(key.groups),
            anonymous=False,
            scopes=frozenset(key.scopes),
            credential=f"key:{key.key_id}",
        )
    token = request.headers.get(TOKEN_HEADER)
    if token is not None:
        return widget_principal(
            settings.widget,
            token,
            page_origin(request),
            request.headers.get(IDENTITY_HEADER),
            oidc=oidc,
        )
    if settings.auth.required:
        raise AuthError(
            "An API key is required: send `Authorization: Bearer <key>`. An administrator "
            f"creates keys with `{how_to_run('rag-ingest keys create')}`."
        )
    return anonymous(settings)


Caller = Annotated[Principal, Depends(get_principal)]


def require(scope: str) -> Callable[[Principal], Principal]:
    def check(caller: Caller) -> Principal:
        if scope not in caller.scopes:
            raise ForbiddenError(
                f"This key lacks the {scope!r} scope. Use a key with it, or ask an "
                "administrator to create one."
            )
        return caller

    return check


async def spend(request: Request, caller: Principal) -> None:
    """One request from ``caller``'s budget (``auth.rate_per_minute``), else a 429.

    Anonymous widget visitors share a subject and are told apart by the client address,
    which is the TCP peer unless ``server.forwarded_allow_ips`` names a trusted proxy (then
    uvicorn takes it from ``X-Forwarded-For``; issue 19: a rotating header was a fresh
    budget per request)."""
    limiter: RateLimits = request.app.state.rag.limiter
    who = caller.subject
    if caller.anonymous:
        who += "|" + (request.client.host if request.client else "?")
    wait = await limiter.take(who)
    if wait > 0:
        seconds = retry_after(wait)
        raise RateLimitedError(
            f"Too many requests; the limit is {limiter.rate * 60:g} per minute. Retry in "
            f"{seconds} s.",
            seconds,
        )


async def asking(
    request: Request, caller: Annotated[Principal, Depends(require("ask"))]
) -> Principal:
    """The ``ask`` scope and the per-caller rate limit (questions, searches, the sources a
    citation opens). The service's capacity is not taken here: a route takes its place
    (``http.slots.check()``) after it has validated the request, so an invalid request
    never holds a place (issue 19: eight requests naming an unknown model held every slot).
    Async on purpose: the in-memory rate limiter and the answer slots are used on the event
    loop only, so they need no lock (the shared limiter runs its statement in a thread)."""
    await spend(request, caller)
    return caller


async def ingesting(
    request: Request, caller: Annotated[Principal, Depends(require("ingest"))]
) -> Principal:
    """The ``ingest`` scope and the same per-caller rate limit: an upload is parsed,
    embedded and indexed, so it is no cheaper than a question (issue 19: uploads were not
    limited)."""
    await spend(request, caller)
    return caller


def scraper(request: Request) -> None:
    """Who may read ``/metrics``: anyone when ``server.public_metrics`` is on or auth is off;
    else a key with the ``metrics`` (or ``admin``) scope. Its counts (documents, chunks,
    uploads) cover every group's documents, so they are not for every caller (issue 19)."""
    settings: Settings = request.app.state.rag.settings
    if settings.server.public_metrics or not settings.auth.required:
        return
    caller = get_principal(request)
    if not caller.scopes & {"metrics", "admin"}:
        raise ForbiddenError(
            "/metrics needs a key with the 'metrics' (or 'admin') scope. Create one with "
            "`rag-ingest keys create --scope metrics`, or set server.public_metrics: true."
        )


def can_read(principal: Principal, groups: tuple[str, ...]) -> bool:
    return bool(principal.groups.intersection(groups))
