"""Wire models of ``/v1/handoff`` (a caller asks for a person) and ``/v1/handoffs`` (admin)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rag.state.feedback import MAX_COMMENT_CHARS
from rag.state.handoff import Handoff

HANDOFF_EXAMPLE: dict[str, Any] = {
    "handoff_id": "H-3F2A9C0E5B7D",
    "status": "delivered",
    "ticket_id": "HD-1042",
    "reason": "declined",
    "created_at": "2026-12-06T11:20:31+00:00",
    "channels": [
        {"channel": "email", "status": "delivered", "attempts": 1, "last_error": None},
        {"channel": "webhook", "status": "delivered", "attempts": 1, "last_error": None},
    ],
    "message": "Sent to the helpdesk: ticket HD-1042.",
}


class HandoffRequest(BaseModel):
    """Ask a person: the answer (or question) to hand to the helpdesk, and why."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "answer_id": "3f2a9c0e5b7d4e1f",
                    "reason": "declined",
                    "conversation_id": "dGhpcy1pcy1hLWNvbnZlcnNhdGlvbg",
                    "comment": "I need this before Friday's trip.",
                    "contact": "alice@example.com",
                },
                {"question": "Who approves a second monitor?", "reason": "other"},
            ],
            # One of the two is required (checked again by the route, with what to send).
            "anyOf": [
                {"required": ["answer_id"], "properties": {"answer_id": {"type": "string"}}},
                {"required": ["question"], "properties": {"question": {"type": "string"}}},
            ],
        },
    )

    answer_id: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="The answer this is about (its question and cited documents go along). "
        "One hand-off per answer: asking again returns the first.",
    )
    question: str | None = Field(
        None,
        max_length=8000,
        json_schema_extra={"pattern": r"\S"},
        description="The question, when there is no answer_id (or its question was not kept).",
    )
    conversation_id: str | None = Field(
        None, max_length=200, description="The conversation: its turns go along as transcript."
    )
    reason: Literal["declined", "unsupported", "thumbs_down", "other"] = Field(
        "other",
        description="Why: the answer was declined, marked unsupported, thumbed down, or other.",
    )
    comment: str | None = Field(
        None, max_length=MAX_COMMENT_CHARS, description="A note for the person (optional)."
    )
    contact: str | None = Field(
        None, max_length=320, description="How to reach the caller (an e-mail address, a phone)."
    )


class ChannelOut(BaseModel):
    """One channel's delivery of a hand-off."""

    model_config = ConfigDict(json_schema_extra={"examples": [HANDOFF_EXAMPLE["channels"][1]]})

    channel: Literal["webhook", "email"] | str = Field(..., description="webhook or email.")
    status: Literal["pending", "delivered", "failed"] = Field(
        ..., description="pending (queued or retrying), delivered, or failed (gave up)."
    )
    attempts: int = Field(..., description="Tries so far.")
    last_error: str | None = Field(None, description="Why the last try failed.")


class HandoffResponse(BaseModel):
    """A hand-off and where it stands."""

    model_config = ConfigDict(json_schema_extra={"examples": [HANDOFF_EXAMPLE]})

    handoff_id: str = Field(..., description="Our reference for it (GET /v1/handoff/{id}).")
    status: Literal["pending", "delivered", "failed"] = Field(
        ...,
        description="delivered once any channel delivered it; pending while queued or "
        "retrying (the receiver is down: it is kept and retried); failed when every channel "
        "gave up.",
    )
    ticket_id: str | None = Field(
        None, description="The helpdesk's ticket id, when its webhook replied with one."
    )
    reason: str = Field(..., description="Why the caller asked for a person.")
    created_at: str = Field(..., description="When it was made (ISO 8601, UTC).")
    channels: list[ChannelOut] = Field(..., description="Each channel's delivery.")
    message: str = Field(..., description="What happened, to show the caller.")

    @classmethod
    def of(cls, handoff: Handoff) -> HandoffResponse:
        return cls(
            handoff_id=handoff.handoff_id,
            status=handoff.status,
            ticket_id=handoff.ticket_id,
            reason=handoff.reason,
            created_at=dt.datetime.fromtimestamp(handoff.created_at, dt.UTC).isoformat(),
            channels=[
                ChannelOut(
                    channel=d.channel,
                    status=d.status,
                    attempts=d.attempts,
                    last_error=d.last_error,
                )
                for d in handoff.deliveries
            ],
            message=_message(handoff),
        )


def _message(handoff: Handoff) -> str:
    if handoff.status == "delivered":
        ticket = handoff.ticket_id
        return (
            f"Sent to the helpdesk: ticket {ticket}."
            if ticket
            else f"Sent to the helpdesk (reference {handoff.handoff_id})."
        )
    if handoff.status == "failed":
        return (
            f"The helpdesk could not be reached; an admin can send it again (reference "
            f"{handoff.handoff_id})."
        )
    return (
        "Queued: the helpdesk gets it as soon as it can be reached (reference "
        f"{handoff.handoff_id})."
    )


class HandoffList(BaseModel):
    """Hand-offs, newest first (admin)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"handoffs": [HANDOFF_EXAMPLE]}]})

    handoffs: list[HandoffResponse] = Field(..., description="Newest first.")


class HandoffAvailability(BaseModel):
    """Whether hand-offs can be made on this service."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"available": True}]})

    available: bool = Field(
        ..., description="A channel is configured (handoff.webhook.url or handoff.email.to)."
    )
