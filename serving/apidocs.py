"""The OpenAPI document, completed: errors as the service sends them, with examples.

FastAPI describes a route's success response from its model; what it cannot know is which
errors a route can give, because those come from dependencies (who the caller is, the rate
limit, the service's capacity). ``install(app, settings)`` replaces ``app.openapi`` with a
generator that walks each route's dependencies once and adds, with examples:

- the ways to authenticate (security schemes) and 401/403 on routes that identify the caller;
- 429 on rate-limited routes (questions, searches, sources, uploads), and 503 (loading,
  busy, model failed) and 504 on routes that ask the model;
- 413 on routes with a body and 422 on routes with any input, in the service's
  ``{"error": {"code", "message"}}`` shape: FastAPI's default ``HTTPValidationError`` is
  not what a client gets;
- the ``X-Request-ID`` header on every response and ``Retry-After`` where it is sent.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from rag.config import Settings
from serving.deps import get_answers
from serving.principal import asking, get_principal, ingesting
from serving.schemas.ask import ErrorResponse

ERROR_REF = "#/components/schemas/ErrorResponse"
FASTAPI_DEFAULTS = {"Successful Response", "Validation Error", "Additional Response"}

# status -> (description, {example name: (error code, message)})
ERRORS: dict[int, tuple[str, dict[str, tuple[str, str]]]] = {
    401: (
        "No valid API key, widget token or signed identity. Send `Authorization: Bearer "
        "<key>` (keys come from `rag-ingest keys create`).",
        {
            "missing_key": (
                "unauthorized",
                "An API key is required: send `Authorization: Bearer <key>`. An administrator "
                "creates keys with `rag-ingest keys create`.",
            ),
            "revoked_key": (
                "unauthorized",
                "The API key is invalid or revoked. Check the Authorization header, or ask an "
                "administrator for a key (rag-ingest keys create).",
            ),
        },
    ),
    403: (
        "The key lacks the scope this route needs, or the page's origin is not allowed for "
        "the widget token.",
        {
            "scope": (
                "forbidden",
                "This key lacks the 'ask' scope. Use a key with it, or ask an administrator "
                "to create one.",
            ),
        },
    ),
    404: (
        "Not found, or not visible to the caller: a document outside the caller's groups is "
        "never revealed.",
        {
            "not_found": (
                "not_found",
                "No such document, or you may not read it. Check the link, or ask for access.",
            ),
        },
    ),
    409: (
        "The index is being written by another upload (past `server.upload_wait_s`) or by a "
        "`rag-ingest` run; retry.",
        {
            "index_busy": (
                "index_busy",
                "Another rag-ingest is writing to this index. Wait for it to finish (or stop "
                "it), then retry.",
            ),
        },
    ),
    413: (
        "The request body is over the limit (`auth.max_body_kb`; uploads: "
        "`ingest.max_file_mb` per file).",
        {
            "too_large": (
                "payload_too_large",
                "The request body has 2097152 bytes; the limit is 262144. Send less.",
            ),
        },
    ),
    422: (
        "Invalid input: the message names each field that is wrong and how.",
        {
            "missing_field": (
                "bad_request",
                "Invalid request: question: Field required. Fix it and retry.",
            ),
            "too_long": (
                "bad_request",
                "The question has 9000 characters; the limit is 4000. Shorten it.",
            ),
        },
    ),
    429: (
        "Too many requests from this caller; retry after `Retry-After` seconds.",
        {
            "rate_limited": (
                "rate_limited",
                "Too many requests; the limit is 30 per minute. Retry in 2 s.",
            ),
        },
    ),
    503: (
        "Not ready yet, at capacity, or the model failed; retry after `Retry-After` seconds.",
        {
            "loading": (
                "engine_not_ready",
                "The model is still loading. Retry in a few seconds.",
            ),
            "busy": (
                "busy",
                "The service is answering 8 questions already. Retry in a few seconds.",
            ),
            "unreachable": (
                "engine_unavailable",
                "The model server (openai) at http://10.0.0.5:8001/v1 is not reachable "
                "(ConnectError). Start it or fix llm.base_url; the service reconnects by "
                "itself when it answers again.",
            ),
        },
    ),
    504: (
        "The model server (`llm.backend: openai|ollama`) did not answer in time.",
        {
            "timeout": (
                "engine_timeout",
                "The model server at http://10.0.0.5:8001/v1 did not answer within 120 s "
                "(ReadTimeout). It may be overloaded: retry later, or raise llm.timeout_s.",
            ),
        },
    ),
}

REQUEST_ID_HEADER = {
    "X-Request-ID": {
        "description": "The caller's X-Request-ID, or a new id; the service's log line for "
        "this request carries it.",
        "schema": {"type": "string"},
    }
}
RETRY_AFTER_HEADER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer"},
    }
}
WWW_AUTHENTICATE_HEADER = {
    "WWW-Authenticate": {"description": "`Bearer`.", "schema": {"type": "string"}}
}

SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (`kb_...`) from `rag-ingest keys create`, with scopes "
        "(`ask`, `ingest`, `admin`, `metrics`) and access groups.",
    },
    "apiKeyHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "The same API key, in its own header.",
    },
    "widgetToken": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Widget-Token",
        "description": "A widget token (`widget.tokens`): valid only from its allowed "
        "origins; a signed `X-Widget-Identity` (HS256 JWT) adds the user's groups.",
    },
}


def error_response(status: int) -> dict[str, Any]:
    """The documented response for one error status, with examples."""
    description, examples = ERRORS[status]
    return {
        "description": description,
        "content": {
            "application/json": {
                "schema": {"$ref": ERROR_REF},
                "examples": {
                    name: {"value": {"error": {"code": code, "message": message}}}
                    for name, (code, message) in examples.items()
                },
            }
        },
    }


def route_error(status: int, code: str, message: str, description: str) -> dict[str, Any]:
    """A route's own error example and description for ``responses=`` (``install`` keeps
    them instead of the status's generic ones)."""
    return {
        "model": ErrorResponse,
        "description": description,
        "content": {
            "application/json": {
                "examples": {code: {"value": {"error": {"code": code, "message": message}}}}
            }
        },
    }


def _calls(dependant: Dependant) -> set[Callable[..., Any]]:
    found: set[Callable[..., Any]] = set()
    if dependant.call is not None:
        found.add(dependant.call)
    for sub in dependant.dependencies:
        found |= _calls(sub)
    return found


def _has_input(dependant: Dependant) -> bool:
    if dependant.path_params or dependant.query_params or dependant.body_params:
        return True
    return any(_has_input(sub) for sub in dependant.dependencies)


def _errors_of(route: APIRoute) -> tuple[set[int], bool]:
    """The error statuses a route can give, and whether it identifies the caller."""
    calls = _calls(route.dependant)
    statuses: set[int] = set()
    identifies = get_principal in calls
    if identifies:  # these routes also need the opened knowledge base: 503 until then
        statuses |= {401, 403, 503}
    if asking in calls or ingesting in calls:
        statuses.add(429)
    if get_answers in calls:  # the routes that ask the model
        statuses |= {503, 504}
    if route.body_field is not None:
        statuses.add(413)
    if _has_input(route.dependant):
        statuses.add(422)
    return statuses, identifies


def _complete(op: dict[str, Any], statuses: set[int]) -> None:
    responses: dict[str, Any] = op.setdefault("responses", {})
    for code in list(responses):
        if code.isdigit() and int(code) >= 400:
            statuses.add(int(code))
    for status in sorted(statuses):
        current = responses.get(str(status), {})
        schema = current.get("content", {}).get("application/json", {}).get("schema", {})
        ref = schema.get("$ref", "")
        if ref and not ref.endswith(("/ErrorResponse", "/HTTPValidationError")):
            continue  # a route-specific body (e.g. /readyz's 503): keep it
        merged = error_response(status)
        if current.get("description") not in (None, *FASTAPI_DEFAULTS):
            merged["description"] = current["description"]
        own = current.get("content", {}).get("application/json", {}).get("examples", {})
        if own:  # the route's own examples replace the generic ones
            merged["content"]["application/json"]["examples"] = own
        responses[str(status)] = merged
    for code, response in responses.items():
        headers = response.setdefault("headers", {})
        headers.update(REQUEST_ID_HEADER)
        if code in ("429", "503"):
            headers.update(RETRY_AFTER_HEADER)
        if code == "401":
            headers.update(WWW_AUTHENTICATE_HEADER)


def build_openapi(app: FastAPI, settings: Settings) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    security: list[dict[str, list[str]]] = [{name: []} for name in SECURITY_SCHEMES]
    if not settings.auth.required:
        security.append({})  # this profile lets anonymous callers in
    for route in app.routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        statuses, identifies = _errors_of(route)
        for method in route.methods:
            op = schema["paths"][route.path_format][method.lower()]
            _complete(op, set(statuses))
            if identifies:
                op["security"] = copy.deepcopy(security)
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    models = components.get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        models.pop(unused, None)
    upload = models.get("Body_upload_v1_documents_post")
    if upload is not None:  # FastAPI's generated model for the multipart form
        upload["description"] = (
            "The multipart form of an upload: one `files` part per document (binary, with "
            "its file name), and optionally `groups`, e.g. `finance,hr`."
        )
    return schema


def install(app: FastAPI, settings: Settings) -> None:
    """Serve the completed document at /openapi.json (built once, on first request)."""
    cache: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not cache:
            cache.update(build_openapi(app, settings))
        return cache

    app.openapi = openapi  # type: ignore[method-assign]
