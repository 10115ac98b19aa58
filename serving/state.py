"""What the HTTP layer adds to the service's parts (:class:`rag.services.Services`, in
``app.state.rag``): admission control, metrics and the upload queue (``app.state.http``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from serving.capacity import AnswerSlots

if TYPE_CHECKING:
    from serving.metrics import Metrics


@dataclass(eq=False)
class HttpState:
    slots: AnswerSlots
    metrics: Metrics | None = None
