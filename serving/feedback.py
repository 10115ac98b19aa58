"""``POST /v1/feedback``: thumbs up/down (and a comment) on an answer the caller received."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from rag.errors import EngineNotReadyError
from rag.feedback import MAX_COMMENT_CHARS, FeedbackStore
from rag.types import Principal
from serving.principal import Reader, require
from serving.schemas import ErrorResponse


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"answer_id": "3f2a9c0e5b7d4e1f", "rating": "down", "comment": "Outdated"}]
        },
    )

    answer_id: str = Field(..., min_length=1, max_length=64, description="From the answer.")
    rating: Literal["up", "down"]
    comment: str | None = Field(None, max_length=MAX_COMMENT_CHARS)


class FeedbackResponse(BaseModel):
    status: Literal["stored"] = "stored"


def get_feedback_store(request: Request) -> FeedbackStore:
    store: FeedbackStore | None = request.app.state.rag.feedback
    if store is None:
        raise EngineNotReadyError("The service is still starting. Retry in a few seconds.")
    return store


Feedback = Annotated[FeedbackStore, Depends(get_feedback_store)]


def router() -> APIRouter:
    api = APIRouter(tags=["feedback"])

    @api.post(
        "/v1/feedback",
        summary="Rate an answer (by its answer_id); a second rating replaces the first.",
        response_model=FeedbackResponse,
        responses={404: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
    )
    async def feedback(body: FeedbackRequest, caller: Reader, store: Feedback) -> FeedbackResponse:
        comment = body.comment.strip() if body.comment else None
        await asyncio.to_thread(store.add, body.answer_id, caller.subject, body.rating, comment)
        return FeedbackResponse()

    @api.get(
        "/v1/analytics",
        summary="Helpdesk report (admin scope): answer rate per day, unanswered questions "
        "clustered, thumbs-down by cited document, latency.",
        responses={403: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
    )
    async def analytics(
        request: Request,
        _: Annotated[Principal, Depends(require("admin"))],
        store: Feedback,
        days: Annotated[int, Query(ge=1, le=3650)] = 30,
    ) -> dict[str, Any]:
        from rag.analytics import build_report

        kb = request.app.state.rag.kb
        embed = kb.embedder.embed_documents if kb is not None else None
        report = await asyncio.to_thread(build_report, store, days=days, embed=embed)
        return report.to_json()

    return api
