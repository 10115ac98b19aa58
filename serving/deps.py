"""Everything a route can ask for, as typed ``Annotated`` dependencies (the way FastAPI's
full-stack template declares ``SessionDep`` and ``CurrentUser``), so a route's signature reads
as what it uses.

The parts come from :class:`rag.services.Services` (``app.state.rag``) and
:class:`serving.state.HttpState` (``app.state.http``); a part that is not there yet becomes a
503 in one place, :meth:`Services.part`. Who is asking: :mod:`serving.principal`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from rag.answering.answer import AnswerService
from rag.config import Settings
from rag.errors import BadRequestError, EngineUnavailableError
from rag.retrieval.hybrid import Retriever
from rag.seams import RemoteReachability
from rag.services import KnowledgeBase, Services
from rag.state.feedback import FeedbackStore
from rag.types import Principal
from serving.principal import asking, ingesting, require
from serving.state import AnswerLog, HttpState
from serving.uploads import Uploads


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.rag
    return services


async def get_http(request: Request) -> HttpState:
    http: HttpState = request.app.state.http
    return http


ServicesDep = Annotated[Services, Depends(get_services)]
HttpDep = Annotated[HttpState, Depends(get_http)]


async def get_settings(services: ServicesDep) -> Settings:
    return services.settings


async def get_answers(services: ServicesDep) -> AnswerService:
    """The answer service, or a 503 that says why it is not there (yet)."""
    answers = services.part(services.answers, "model")
    if isinstance(services.engine, RemoteReachability):
        # A model server that went away: fail fast and clearly; recovers when it is back.
        reason = await services.engine.unreachable_reason()
        if reason is not None:
            raise EngineUnavailableError(reason)
    return answers


async def get_retriever(services: ServicesDep) -> Retriever:
    """The retriever (ready before the engine is)."""
    return services.part(services.retriever, "knowledge base")


async def get_knowledge_base(services: ServicesDep) -> KnowledgeBase:
    return services.part(services.kb, "knowledge base")


async def get_feedback_store(services: ServicesDep) -> FeedbackStore:
    return services.part(services.feedback, "feedback store")


async def get_uploads(http: HttpDep) -> Uploads:
    return http.uploads


async def get_answer_log(http: HttpDep, services: ServicesDep) -> AnswerLog:
    return AnswerLog(http.metrics, services.feedback)


SettingsDep = Annotated[Settings, Depends(get_settings)]
Answers = Annotated[AnswerService, Depends(get_answers)]
Searcher = Annotated[Retriever, Depends(get_retriever)]
KnowledgeBaseDep = Annotated[KnowledgeBase, Depends(get_knowledge_base)]
Feedback = Annotated[FeedbackStore, Depends(get_feedback_store)]
UploadsDep = Annotated[Uploads, Depends(get_uploads)]
AnswerLogDep = Annotated[AnswerLog, Depends(get_answer_log)]

Asker = Annotated[Principal, Depends(asking)]
"""Scope ``ask``, within its rate limit (questions, ``/v1/retrieve``, a document's source;
a question's route then validates, then takes a place: ``http.slots.check()``)."""
Reader = Annotated[Principal, Depends(require("ask"))]
Ingester = Annotated[Principal, Depends(require("ingest"))]
Uploader = Annotated[Principal, Depends(ingesting)]
"""Scope ``ingest``, within the same rate limit (uploads)."""
Admin = Annotated[Principal, Depends(require("admin"))]


def checked_length(text: str, settings: Settings, noun: str = "question") -> str:
    """``text`` within ``server.max_question_chars``, else a 422 that says so."""
    limit = settings.server.max_question_chars
    if len(text) > limit:
        raise BadRequestError(
            f"The {noun} has {len(text)} characters; the limit is {limit}. Shorten it."
        )
    return text
