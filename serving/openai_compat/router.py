"""The OpenAI-compatible routes: ``GET /v1/models`` and ``POST /v1/chat/completions``."""

from __future__ import annotations

import time
import uuid
from functools import partial
from typing import Any

from fastapi import APIRouter, Request

from rag.answering.answer import AnswerOptions
from rag.config import Settings
from rag.errors import NotFoundError
from rag.seams import Engine
from serving.apidocs import route_error
from serving.deps import (
    AnswerLogDep,
    Answers,
    Asker,
    HttpDep,
    ServicesDep,
    SettingsDep,
    checked_length,
)
from serving.openai_compat.chat import Completion, split_messages
from serving.openai_compat.protocol import (
    STREAM_EXAMPLE,
    ChatCompletion,
    ChatRequest,
    ModelCard,
    ModelList,
)
from serving.streaming import answer_events, event_stream, until_disconnected

router = APIRouter(tags=["openai"])


def served_model(requested: str, settings: Settings, engine: Engine | None) -> str:
    """The model the request names: the knowledge base's id (or the engine's own name)."""
    known = {settings.server.model_name}
    if engine is not None:
        known.add(engine.name)
    if requested not in known:
        raise NotFoundError(
            f"The model {requested!r} does not exist here; use "
            f"{settings.server.model_name!r} (see GET /v1/models)."
        )
    return requested


@router.get(
    "/v1/models",
    summary="The model id to use with /v1/chat/completions.",
    response_description="One model: the knowledge base (server.model_name).",
)
async def models(settings: SettingsDep, http: HttpDep) -> ModelList:
    """OpenAI's model list, for clients that pick a model from it. No key needed."""
    return ModelList(data=[ModelCard(id=settings.server.model_name, created=http.started)])


@router.post(
    "/v1/chat/completions",
    summary="OpenAI-compatible chat: the last user message is answered from the knowledge "
    "base, with citations in extension fields.",
    response_model=ChatCompletion,
    response_description="A `chat.completion`, or with `stream: true` Server-Sent "
    "Events of `chat.completion.chunk` objects ending with `data: [DONE]`. The last "
    "content chunk carries the extension fields `answer_id`, `citations` and `declined`; "
    'an error mid-stream is a `data: {"error": ...}` line, then `[DONE]`. `finish_reason` '
    "is `length` when the answer stopped at the token cap.",
    responses={
        200: {"content": {"text/event-stream": {"example": STREAM_EXAMPLE}}},
        404: route_error(
            404,
            "not_found",
            "The model 'gpt-4o' does not exist here; use 'knowledge-base' (see GET /v1/models).",
            "The model named is not this service's (see GET /v1/models).",
        ),
    },
)
async def chat(
    body: ChatRequest,
    request: Request,
    caller: Asker,
    service: Answers,
    services: ServicesDep,
    settings: SettingsDep,
    http: HttpDep,
    answer_log: AnswerLogDep,
) -> Any:
    """Point any OpenAI client (the official SDKs, LangChain's ChatOpenAI, Open WebUI)
    at this service. The last message must be the user's question; earlier user and
    assistant messages are the conversation history (a follow-up is rewritten into a
    standalone search). System messages are ignored: the service's own rules apply.
    Same keys, scopes (`ask`), access groups and rate limits as /v1/ask."""
    model = served_model(body.model, settings, services.engine)
    question, history = split_messages(body.messages)
    checked_length(question, settings)
    options = AnswerOptions(
        reasoning_effort=body.reasoning_effort,
        max_tokens=body.max_completion_tokens or body.max_tokens,
    )
    answer_id = uuid.uuid4().hex
    completion = Completion(f"chatcmpl-{answer_id}", int(time.time()), model, answer_id)
    record = partial(answer_log.record, answer_id, question, caller)
    if not body.stream:
        with http.slots:
            answer = await until_disconnected(
                request, service.ask(question, caller, history, options=options)
            )
        await record(answer)
        return completion.whole(answer)
    events = answer_events(http.slots, service.stream(question, caller, history, options=options))
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return event_stream(
        completion.chunks(events, record, include_usage), settings.server.sse_keepalive_s
    )
