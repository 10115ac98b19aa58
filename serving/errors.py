"""Errors as HTTP responses, in one place: every :class:`rag.errors.RagError` becomes its
``http_status`` with ``{"error": {"code", "message"}}`` (and ``Retry-After`` or
``WWW-Authenticate`` where they apply); invalid input becomes a 422 naming each field."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from rag.errors import RagError
from serving import audit
from serving.principal import RateLimitedError


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


async def rag_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RagError)
    current = audit.note()
    if current is not None:
        current.reason = exc.code  # the request's audit record says why it failed
    headers: dict[str, str] | None = None
    if isinstance(exc, RateLimitedError):
        headers = {"Retry-After": str(exc.retry_after_s)}
    elif exc.http_status == 503:
        headers = {"Retry-After": "5"}
    elif exc.http_status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return error_response(exc.http_status, exc.code, exc.message, headers)


async def invalid_request(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    current = audit.note()
    if current is not None:
        current.reason = "bad_request"
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}"
        for e in exc.errors()
    )
    return error_response(422, "bad_request", f"Invalid request: {problems}. Fix it and retry.")


def install(app: FastAPI) -> None:
    app.add_exception_handler(RagError, rag_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
