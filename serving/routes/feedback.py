"""``POST /v1/feedback``: thumbs up/down (and a comment) on an answer the caller received;
``GET /v1/analytics``: the helpdesk report."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from serving.apidocs import route_error
from serving.deps import Admin, Feedback, Reader, ServicesDep
from serving.schemas.feedback import AnalyticsReport, FeedbackRequest, FeedbackResponse

router = APIRouter(tags=["feedback"])


@router.post(
    "/v1/feedback",
    summary="Rate an answer (by its answer_id); a second rating replaces the first.",
    response_model=FeedbackResponse,
    response_description="The rating was stored.",
    responses={
        404: route_error(
            404,
            "not_found",
            "No answer with this answer_id was given to you. Send feedback with the "
            "answer_id of an answer you received.",
            "No answer with this id was given to this caller.",
        )
    },
)
async def feedback(body: FeedbackRequest, caller: Reader, store: Feedback) -> FeedbackResponse:
    """Thumbs up or down, with an optional comment, on an answer this caller received
    (from /v1/ask, the widget, or /v1/chat/completions: each answer carries an
    `answer_id`). An unknown answer_id, or another caller's, is a 404."""
    comment = body.comment.strip() if body.comment else None
    await asyncio.to_thread(store.add, body.answer_id, caller.owner, body.rating, comment)
    return FeedbackResponse()


@router.get(
    "/v1/analytics",
    summary="Helpdesk report (admin scope): answer rate per day, unanswered questions "
    "clustered, thumbs-down by cited document, latency.",
    response_model=AnalyticsReport,
    response_description="The report as JSON, or with `format=html` a self-contained page "
    "with a chart of questions and answer rate per day (no scripts, nothing fetched).",
    responses={200: {"content": {"text/html": {"example": "<!doctype html><html>...</html>"}}}},
)
async def analytics(
    _: Admin,
    store: Feedback,
    services: ServicesDep,
    days: Annotated[int, Query(ge=1, le=3650, description="The period, in days.")] = 30,
    format: Annotated[
        Literal["json", "html"], Query(description="json, or html for a page with a chart.")
    ] = "json",
) -> Any:
    """The same report as `rag-ingest report`. Needs a key with the `admin` scope.
    Question text appears only when `feedback.store_questions` is on."""
    from rag.state.analytics import build_report, render_html

    kb = services.kb
    embed = kb.embedder.embed_documents if kb is not None else None
    curated = services.curated

    def covered(question: str) -> str | None:
        entry = curated.covering(question) if curated is not None else None
        return entry.curated_id if entry is not None else None

    report = await asyncio.to_thread(
        build_report,
        store,
        days=days,
        embed=embed,
        handoffs=services.outbox.store,
        covered=covered,
    )
    if format == "html":
        return HTMLResponse(render_html(report), headers={"Cache-Control": "no-store"})
    return AnalyticsReport.model_validate(report.to_json())
