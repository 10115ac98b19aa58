"""``POST /v1/handoff``: ask a person (the widget's "Ask a person"); ``GET /v1/handoff/{id}``:
where it stands; ``GET /v1/handoffs`` and ``POST /v1/handoffs/{id}/retry``: the admin's view.

A hand-off is queued in the durable outbox (:mod:`rag.handoff.outbox`) and the request waits
up to ``handoff.wait_s`` for the first delivery, so the reply usually carries the helpdesk's
ticket id; when the receiver is down it says the hand-off is queued, and it is retried.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Path, Query

from rag.errors import BadRequestError, NotFoundError, RagError
from rag.handoff.ticket import CitedDocument, ticket_payload
from rag.index.manifest import shown_source
from rag.services import Services
from rag.state.handoff import Handoff
from rag.types import HistoryTurn, Principal
from serving.apidocs import route_error
from serving.deps import Admin, Asker, HttpDep, Reader, ServicesDep, SettingsDep
from serving.schemas.handoff import (
    HandoffAvailability,
    HandoffList,
    HandoffRequest,
    HandoffResponse,
)

router = APIRouter(tags=["handoff"])
NOT_FOUND = (
    "No hand-off with this id was made by you. Use the handoff_id POST /v1/handoff returned."
)


class HandoffUnavailableError(RagError):
    exit_code = 2
    http_status = 503
    code = "handoff_unavailable"


def _outbox_of(services: Services) -> None:
    if not services.outbox.available:
        raise HandoffUnavailableError(
            "Handing a question to a person is not set up on this service. An administrator "
            "sets handoff.webhook.url or handoff.email.to (docs/API.md, 'Hand-off to a person')."
        )


def _documents(services: Services, doc_ids: tuple[str, ...]) -> list[CitedDocument]:
    if not doc_ids:
        return []
    manifest = services.manifest()
    if manifest is None:
        return [CitedDocument(d, "") for d in doc_ids]
    with manifest:
        collection = manifest.active(services.settings.store.collection)
        found = []
        for doc_id in doc_ids:
            record = manifest.document(collection, doc_id)
            if record is None:
                found.append(CitedDocument(doc_id, "(no longer indexed)"))
            else:
                found.append(
                    CitedDocument(doc_id, record.title, shown_source(record.path, record.root))
                )
        return found


def _gather(
    services: Services, body: HandoffRequest, caller: Principal
) -> tuple[str, list[HistoryTurn], list[CitedDocument]]:
    """The question, transcript and cited documents (blocking: the state database)."""
    question = (body.question or "").strip()
    doc_ids: tuple[str, ...] = ()
    if body.answer_id:
        feedback = services.part(services.feedback, "feedback store")
        record = feedback.answer(body.answer_id)
        if record is None or record.subject != caller.owner:
            raise NotFoundError(
                "No answer with this answer_id was given to you. Send the answer_id of an "
                "answer you received, or only the question."
            )
        question = question or (record.question or "")
        doc_ids = record.doc_ids
    if not question:
        raise BadRequestError(
            "Say what the person should look at: send the answer_id of the answer, or the question."
        )
    transcript: list[HistoryTurn] = []
    if body.conversation_id:
        turns = services.conversations.history(caller.owner, body.conversation_id)
        keep = services.settings.handoff.transcript_turns
        transcript = turns[-keep:] if keep else []
    return question, transcript, _documents(services, doc_ids)


@router.get(
    "/v1/handoff",
    summary="Whether 'Ask a person' is offered here (a hand-off channel is configured).",
    response_model=HandoffAvailability,
    response_description="available: true when a hand-off can be made.",
)
async def handoff_available(_: Reader, services: ServicesDep) -> HandoffAvailability:
    """The widget asks once, before it offers "Ask a person"."""
    return HandoffAvailability(available=services.outbox.available)


@router.post(
    "/v1/handoff",
    summary="Ask a person: hand the question and its transcript to the helpdesk.",
    response_model=HandoffResponse,
    response_description="The hand-off: delivered (with the helpdesk's ticket id when its "
    "webhook gave one), or queued and retried while the helpdesk cannot be reached.",
    responses={
        404: route_error(
            404,
            "not_found",
            "No answer with this answer_id was given to you. Send the answer_id of an answer "
            "you received, or only the question.",
            "The answer_id is unknown, or another caller's.",
        ),
        503: route_error(
            503,
            "handoff_unavailable",
            "Handing a question to a person is not set up on this service. ...",
            "No channel is configured (handoff.webhook.url, handoff.email.to).",
        ),
    },
)
async def handoff(
    body: HandoffRequest,
    caller: Asker,
    services: ServicesDep,
    settings: SettingsDep,
    http: HttpDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=200,
            description="Repeat a request safely: the same key (per caller) returns the first "
            "hand-off. Defaults to the answer_id.",
        ),
    ] = None,
) -> HandoffResponse:
    """Sends the question, the conversation's transcript, the cited documents and who asked to
    the helpdesk (a signed webhook and/or e-mail, handoff.* settings). Offered by the widget
    when an answer is declined, unsupported or thumbed down. The hand-off is kept in a durable
    outbox: a helpdesk that is down gets it when it is back. Needs the `ask` scope."""
    _outbox_of(services)
    outbox = services.outbox
    question, transcript, documents = await asyncio.to_thread(_gather, services, body, caller)
    key = idempotency_key or (f"answer:{body.answer_id}" if body.answer_id else uuid.uuid4().hex)

    def build(handoff_id: str, created_at: float) -> dict[str, object]:
        return ticket_payload(
            handoff_id=handoff_id,
            created_at=created_at,
            reason=body.reason,
            question=question,
            caller=caller,
            transcript=transcript,
            documents=documents,
            comment=(body.comment or "").strip() or None,
            contact=(body.contact or "").strip() or None,
            answer_id=body.answer_id,
            conversation_id=body.conversation_id,
        )

    made, new = await asyncio.to_thread(outbox.submit, caller.owner, key, body.reason, build)
    if new:
        http.metrics.observe_handoff(body.reason)
        outbox.wake()
    settled = await outbox.settled(made.handoff_id, settings.handoff.wait_s)
    return HandoffResponse.of(settled)


async def _owned(services: Services, handoff_id: str, caller: Principal) -> Handoff:
    try:
        found = await asyncio.to_thread(services.outbox.store.get, handoff_id)
    except NotFoundError:
        raise NotFoundError(NOT_FOUND) from None
    if found.owner != caller.owner:
        raise NotFoundError(NOT_FOUND)
    return found


HandoffId = Annotated[str, Path(max_length=40, description="The handoff_id.")]


@router.get(
    "/v1/handoff/{handoff_id}",
    summary="Where a hand-off stands (the caller's own).",
    response_model=HandoffResponse,
    response_description="The hand-off, its deliveries and the ticket id once delivered.",
    responses={404: route_error(404, "not_found", NOT_FOUND, "Unknown, or another caller's.")},
)
async def handoff_status(
    handoff_id: HandoffId, caller: Asker, services: ServicesDep
) -> HandoffResponse:
    """Delivered (and the ticket id), still queued, or failed. Only the caller who made it
    sees it."""
    return HandoffResponse.of(await _owned(services, handoff_id, caller))


@router.get(
    "/v1/handoffs",
    summary="Hand-offs, newest first (admin scope).",
    response_model=HandoffList,
    response_description="Hand-offs with each channel's delivery and last error.",
)
async def handoffs(
    _: Admin,
    services: ServicesDep,
    status: Annotated[
        Literal["pending", "delivered", "failed"] | None,
        Query(description="Only hand-offs in this state."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many.")] = 100,
) -> HandoffList:
    """Every hand-off with its deliveries: failed ones need a look (the channel's last error
    says why) and can be sent again."""
    found = await asyncio.to_thread(services.outbox.store.recent, status=status, limit=limit)
    return HandoffList(handoffs=[HandoffResponse.of(h) for h in found])


@router.post(
    "/v1/handoffs/{handoff_id}/retry",
    summary="Send a failed hand-off again (admin scope).",
    response_model=HandoffResponse,
    response_description="The hand-off after its first new try.",
    responses={
        404: route_error(
            404,
            "not_found",
            "No hand-off 'H-...'. Use the handoff_id that POST /v1/handoff returned.",
            "No such hand-off.",
        )
    },
)
async def retry_handoff(
    handoff_id: HandoffId, _: Admin, services: ServicesDep, settings: SettingsDep
) -> HandoffResponse:
    """Its failed deliveries start again from the first try (after fixing the channel)."""
    _outbox_of(services)
    await asyncio.to_thread(services.outbox.store.requeue, handoff_id)
    services.outbox.wake()
    return HandoffResponse.of(await services.outbox.settled(handoff_id, settings.handoff.wait_s))
