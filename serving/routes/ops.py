"""For probes and load balancers: ``GET /healthz`` (liveness) and ``GET /readyz``
(readiness). No key needed; no private data."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from rag.seams import RemoteReachability
from serving.deps import ServicesDep
from serving.schemas.ask import HealthResponse, ReadyResponse

router = APIRouter(tags=["ops"])


@router.get(
    "/healthz",
    summary="Liveness: the process answers.",
    response_description="Always ok while the process runs.",
)
async def healthz() -> HealthResponse:
    """For a liveness probe: 200 as soon as the process listens, even while the model
    loads. Use /readyz to know whether questions can be answered."""
    return HealthResponse()


@router.get(
    "/readyz",
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
async def readyz(services: ServicesDep) -> Any:
    """For a readiness probe and load balancers. No key needed; no private data."""
    engine = services.engine
    if services.status == "ready" and engine is not None and not engine.healthy:
        services.status = "failed"
        services.detail = "the engine stopped; restart the service"
    status, detail = services.status, services.detail
    if status == "ready" and isinstance(engine, RemoteReachability):
        reason = await engine.unreachable_reason()
        if reason is not None:
            status, detail = "unreachable", reason
    health = services.answers.engine_health if services.answers is not None else None
    if status == "ready" and health is not None and health.degraded:
        status, detail = "degraded", health.describe()
    body = ReadyResponse(
        status=status,
        model=engine.name if engine is not None else None,
        detail=detail,
        engine_errors=health.failures if health is not None else 0,
        last_engine_error=health.last_error if health is not None else None,
    )
    code = 200 if status in ("ready", "degraded") else 503
    return JSONResponse(body.model_dump(), status_code=code)
