"""OpenAI-compatible routes: ``POST /v1/chat/completions`` and ``GET /v1/models``.

The last user message is answered from the knowledge base (retrieval, citations, the same
access groups as ``/v1/ask``); earlier user and assistant messages are the conversation
history; system messages from the client are ignored (the service's own rules apply).
Citations travel in extension fields that standard clients ignore: ``citations`` and
``answer_id`` on the completion (and on the last chunk of a stream).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from rag.answer import AnswerOptions, DoneEvent
from rag.config import Settings
from rag.errors import BadRequestError, NotFoundError, RagError
from rag.types import Answer, HistoryTurn, Principal, TextDelta
from serving.capacity import AnswerSlots
from serving.deps import Answers
from serving.principal import Asker
from serving.schemas import CitationOut, ErrorResponse

log = logging.getLogger(__name__)

Recorder = Callable[[str, str, Principal, Answer], Awaitable[None]]


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatRequest(BaseModel):
    """OpenAI's chat completion request; unknown sampling fields are accepted and ignored."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "model": "knowledge-base",
                    "messages": [{"role": "user", "content": "Where do I print?"}],
                    "stream": False,
                }
            ]
        },
    )

    model: str
    messages: list[ChatMessage] = Field(..., min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    reasoning_effort: Literal["low", "medium", "high"] | None = None
    n: int = Field(1, ge=1, le=1, description="Only one choice is supported.")


class ChatChoiceMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: ChatChoiceMessage
    finish_reason: Literal["stop", "length"] = "stop"


class ChatUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: ChatUsage
    answer_id: str = Field(..., description="Extension: refer to it in POST /v1/feedback.")
    citations: list[CitationOut] = Field(
        ..., description="Extension: the sources the answer is supported by ([n] markers)."
    )
    declined: bool = Field(False, description="Extension: the knowledge base had no answer.")


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "local"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def _text(content: str | list[ContentPart] | None) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for part in content:
        if part.type != "text" or part.text is None:
            raise BadRequestError(
                f"Message content of type {part.type!r} is not supported; send text only."
            )
        texts.append(part.text)
    return "\n".join(texts)


def split_messages(messages: list[ChatMessage]) -> tuple[str, list[HistoryTurn]]:
    """The question (the last message, which must be the user's) and the earlier turns."""
    last = messages[-1]
    if last.role != "user":
        raise BadRequestError("The last message must be the user's question (role: user).")
    question = _text(last.content).strip()
    if not question:
        raise BadRequestError("The last user message is empty. Send a question.")
    history = [
        HistoryTurn("user" if m.role == "user" else "assistant", _text(m.content))
        for m in messages[:-1]
        if m.role in ("user", "assistant") and _text(m.content).strip()
    ]
    return question, history


def _usage(answer: Answer) -> ChatUsage:
    u = answer.usage
    return ChatUsage(
        prompt_tokens=u.prompt_tokens,
        completion_tokens=u.completion_tokens,
        total_tokens=u.prompt_tokens + u.completion_tokens,
    )


def _chunk(cid: str, created: int, model: str, **fields: Any) -> str:
    body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}
    body.update(fields)
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


def router(
    settings: Settings,
    engine_name: Callable[[], str | None],
    record: Recorder,
    slots: AnswerSlots,
) -> APIRouter:
    api = APIRouter(tags=["openai"])
    started = int(time.time())

    def served_model(requested: str) -> str:
        known = {settings.server.model_name}
        name = engine_name()
        if name:
            known.add(name)
        if requested not in known:
            raise NotFoundError(
                f"The model {requested!r} does not exist here; use "
                f"{settings.server.model_name!r} (see GET /v1/models)."
            )
        return requested

    @api.get("/v1/models", summary="The model id to use with /v1/chat/completions.")
    async def models() -> ModelList:
        return ModelList(data=[ModelCard(id=settings.server.model_name, created=started)])

    @api.post(
        "/v1/chat/completions",
        summary="OpenAI-compatible chat: the last user message is answered from the knowledge "
        "base, with citations in extension fields.",
        response_model=ChatCompletion,
        responses={
            200: {"content": {"text/event-stream": {}}},
            404: {"model": ErrorResponse},
            422: {"model": ErrorResponse},
            503: {"model": ErrorResponse},
        },
    )
    async def chat(body: ChatRequest, caller: Asker, service: Answers) -> Any:
        model = served_model(body.model)
        question, history = split_messages(body.messages)
        limit = settings.server.max_question_chars
        if len(question) > limit:
            raise BadRequestError(
                f"The question has {len(question)} characters; the limit is {limit}. Shorten it."
            )
        options = AnswerOptions(
            reasoning_effort=body.reasoning_effort,
            max_tokens=body.max_completion_tokens or body.max_tokens,
        )
        answer_id = uuid.uuid4().hex
        cid, created = f"chatcmpl-{answer_id}", int(time.time())
        if not body.stream:
            with slots:
                answer = await service.ask(question, caller, history, options=options)
            await record(answer_id, question, caller, answer)
            return ChatCompletion(
                id=cid,
                created=created,
                model=model,
                choices=[ChatChoice(message=ChatChoiceMessage(content=answer.answer))],
                usage=_usage(answer),
                answer_id=answer_id,
                citations=[CitationOut.of(c) for c in answer.citations],
                declined=answer.declined,
            )
        include_usage = bool(body.stream_options and body.stream_options.include_usage)

        async def events() -> AsyncIterator[str]:
            yield _chunk(
                cid, created, model, choices=[_delta({"role": "assistant", "content": ""})]
            )
            try:
                with slots:
                    async with contextlib.aclosing(
                        service.stream(question, caller, history)
                    ) as stream:
                        async for event in stream:
                            if isinstance(event, TextDelta):
                                yield _chunk(
                                    cid, created, model, choices=[_delta({"content": event.text})]
                                )
                            elif isinstance(event, DoneEvent):
                                answer = event.answer
                                await record(answer_id, question, caller, answer)
                                cites = [CitationOut.of(c).model_dump() for c in answer.citations]
                                yield _chunk(
                                    cid,
                                    created,
                                    model,
                                    choices=[_delta({}, "stop")],
                                    answer_id=answer_id,
                                    citations=cites,
                                    declined=answer.declined,
                                )
                                if include_usage:
                                    usage = _usage(answer).model_dump()
                                    yield _chunk(cid, created, model, choices=[], usage=usage)
            except RagError as exc:
                yield f"data: {json.dumps(_error(exc.code, exc.message))}\n\n"
            except Exception:
                log.exception("chat completion stream failed")
                msg = "The answer failed. Retry in a moment."
                yield f"data: {json.dumps(_error('internal_error', msg))}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return api


def _delta(delta: dict[str, str], finish: str | None = None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "finish_reason": finish}


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "server_error", "code": code}}
