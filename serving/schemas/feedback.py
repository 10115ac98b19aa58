"""Wire models of ``/v1/feedback`` and ``/v1/analytics``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rag.state.feedback import MAX_COMMENT_CHARS


class FeedbackRequest(BaseModel):
    """A thumbs up or down on an answer the caller received."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"answer_id": "3f2a9c0e5b7d4e1f", "rating": "down", "comment": "Outdated"},
                {"answer_id": "3f2a9c0e5b7d4e1f", "rating": "up"},
            ]
        },
    )

    answer_id: str = Field(
        ..., min_length=1, max_length=64, description="The answer_id the answer carried."
    )
    rating: Literal["up", "down"] = Field(..., description="Thumbs up or down.")
    comment: str | None = Field(
        None, max_length=MAX_COMMENT_CHARS, description="Why (optional; kept with the rating)."
    )


class FeedbackResponse(BaseModel):
    """The rating was stored."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "stored"}]})

    status: Literal["stored"] = Field("stored", description="Always stored.")


class DayOut(BaseModel):
    """Questions on one day (UTC)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"day": "2026-11-27", "questions": 21, "declined": 2, "answer_rate": 0.9048}
            ]
        }
    )

    day: str = Field(..., description="The day, YYYY-MM-DD.")
    questions: int = Field(..., description="Questions asked.")
    declined: int = Field(..., description="Questions the knowledge base had no answer for.")
    answer_rate: float = Field(..., description="Share answered, 0..1.")


class ClusterOut(BaseModel):
    """Unanswered questions that mean the same thing (by embedding similarity)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "example": "How do I book the large meeting room?",
                    "count": 2,
                    "questions": [
                        "How do I book the large meeting room?",
                        "booking the big meeting room",
                    ],
                }
            ]
        }
    )

    example: str = Field(..., description="A representative question.")
    count: int = Field(..., description="How often it (or a close paraphrase) was asked.")
    questions: list[str] = Field(..., description="The questions in the cluster.")
    curated: str | None = Field(
        None,
        description="The id of the curated answer that now answers it (null: none yet; "
        "write one with POST /v1/curated).",
    )


class DocVotesOut(BaseModel):
    """Ratings of answers that cited one document."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"doc_id": "9c1e2a7b40d3f815", "down": 3, "up": 1, "comments": ["Outdated"]}
            ]
        }
    )

    doc_id: str = Field(..., description="The cited document.")
    down: int = Field(..., description="Thumbs down on answers citing it.")
    up: int = Field(..., description="Thumbs up on answers citing it.")
    comments: list[str] = Field(..., description="Comments left with thumbs down.")


class AnalyticsReport(BaseModel):
    """The helpdesk report over the last `days` days."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "days": 30,
                    "questions": 412,
                    "declined": 37,
                    "up": 58,
                    "down": 9,
                    "latency_p50_ms": 1840.2,
                    "latency_p95_ms": 5210.7,
                    "answer_rate": 0.9102,
                    "per_day": [
                        {"day": "2026-11-27", "questions": 21, "declined": 2, "answer_rate": 0.9048}
                    ],
                    "unanswered": [
                        {
                            "example": "How do I book the large meeting room?",
                            "count": 5,
                            "questions": [
                                "How do I book the large meeting room?",
                                "booking the big meeting room",
                            ],
                        }
                    ],
                    "downvoted_docs": [
                        {
                            "doc_id": "9c1e2a7b40d3f815",
                            "down": 3,
                            "up": 1,
                            "comments": ["Outdated"],
                        }
                    ],
                    "origins": {"sources": 301, "cache": 62, "curated": 12},
                    "handoffs": {"declined": 14, "thumbs_down": 5},
                    "handoff_status": {"delivered": 18, "pending": 1},
                }
            ]
        }
    )

    days: int = Field(..., description="The period covered, in days up to today.")
    questions: int = Field(..., description="Questions asked in the period.")
    declined: int = Field(..., description="Of which the knowledge base had no answer.")
    up: int = Field(..., description="Thumbs up.")
    down: int = Field(..., description="Thumbs down.")
    latency_p50_ms: float | None = Field(..., description="Median answer time (ms).")
    latency_p95_ms: float | None = Field(..., description="95th percentile answer time (ms).")
    answer_rate: float = Field(..., description="Share answered, 0..1.")
    per_day: list[DayOut] = Field(..., description="Questions per day.")
    unanswered: list[ClusterOut] = Field(
        ...,
        description="The most frequent unanswered questions, clustered (empty when "
        "question text is not stored: feedback.store_questions).",
    )
    downvoted_docs: list[DocVotesOut] = Field(
        ..., description="Thumbs down grouped by cited document, most first."
    )
    origins: dict[str, int] = Field(
        default_factory=dict,
        description="Answers (not declined) by origin: sources (made from the documents), "
        "cache (a repeated question answered from the answer cache), curated.",
    )
    handoffs: dict[str, int] = Field(
        default_factory=dict,
        description="Hand-offs to a person by reason: declined, unsupported, thumbs_down, other.",
    )
    handoff_status: dict[str, int] = Field(
        default_factory=dict,
        description="The same hand-offs by state: delivered, pending (retrying), failed.",
    )
