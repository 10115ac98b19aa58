"""FastAPI dependencies shared by the routers (kept apart from ``app.py`` to avoid cycles)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from rag.answering.answer import AnswerService
from rag.errors import EngineUnavailableError
from rag.seams import RemoteReachability


async def get_answers(request: Request) -> AnswerService:
    """The answer service, or a 503 that says why it is not there (yet)."""
    state = request.app.state.rag
    answers: AnswerService = state.part(state.answers, "model")
    if isinstance(state.engine, RemoteReachability):
        # A model server that went away: fail fast and clearly; recovers when it is back.
        reason = await state.engine.unreachable_reason()
        if reason is not None:
            raise EngineUnavailableError(reason)
    return answers


Answers = Annotated[AnswerService, Depends(get_answers)]
