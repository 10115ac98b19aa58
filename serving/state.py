"""What the HTTP layer adds to the service's parts (:class:`rag.services.Services`, in
``app.state.rag``): admission control, metrics, the upload queue (``app.state.http``), and
the record every answer leaves."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from rag.services import Services
from rag.state.feedback import FeedbackStore
from rag.types import Answer, Principal
from serving import audit
from serving.capacity import AnswerSlots
from serving.metrics import Metrics
from serving.oidc import OidcVerifier, build_verifier
from serving.uploads import Uploads

log = logging.getLogger(__name__)
Record = Callable[[Answer], Awaitable[None]]
"""Records one answer (its id, question and caller already bound)."""


@dataclass(eq=False)
class HttpState:
    slots: AnswerSlots
    metrics: Metrics
    uploads: Uploads
    oidc: OidcVerifier | None = None
    """Bearer tokens from the identity provider (``auth.oidc``), when one is configured."""
    started: int = field(default_factory=lambda: int(time.time()))
    """Unix time the app was built (the OpenAI model card's ``created``)."""

    @classmethod
    def of(cls, services: Services) -> HttpState:
        settings = services.settings
        slots = AnswerSlots(settings.server.max_concurrent_answers)
        oidc = build_verifier(settings.auth.oidc)
        return cls(slots, Metrics(services), Uploads(services), oidc)

    async def close(self) -> None:
        await self.uploads.close()


@dataclass(frozen=True, slots=True)
class AnswerLog:
    """Counts every answer and records it (never its text) for feedback."""

    metrics: Metrics
    feedback: FeedbackStore | None

    async def record(
        self, answer_id: str, question: str, caller: Principal, answer: Answer
    ) -> None:
        """Never fails the answer: a recording error is logged."""
        self.metrics.observe_answer(answer)
        current = audit.note()
        if current is not None:  # the request's audit record: what it cited, and asked
            current.touched(c.doc_id for c in answer.citations)
            current.text = question
        if self.feedback is None:
            return
        try:
            await asyncio.to_thread(
                self.feedback.record_answer,
                answer_id,
                caller.owner,
                declined=answer.declined,
                doc_ids=sorted({c.doc_id for c in answer.citations}),
                latency_ms=answer.timings.get("total_ms", 0.0),
                question=question,
                top_score=answer.top_score,
                origin=answer.origin,
            )
        except Exception:
            log.exception("recording answer %s failed", answer_id)
