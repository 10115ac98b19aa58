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

from rag.answering.answer import AnswerOptions, DoneEvent
from rag.config import Settings
from rag.errors import BadRequestError, NotFoundError, RagError
from rag.types import Answer, HistoryTurn, Principal, TextDelta
from serving.apidocs import route_error
from serving.capacity import AnswerSlots
from serving.deps import Answers
from serving.principal import Asker
from serving.schemas import CITATION_EXAMPLE, CitationOut

log = logging.getLogger(__name__)

Recorder = Callable[[str, str, Principal, Answer], Awaitable[None]]


class ContentPart(BaseModel):
    """A part of a message's content; only text parts are read."""

    model_config = ConfigDict(
        extra="allow", json_schema_extra={"examples": [{"type": "text", "text": "Where?"}]}
    )

    type: str = Field(..., description="text (other part types are ignored).")
    text: str | None = Field(None, description="The text of a text part.")


class ChatMessage(BaseModel):
    """One message of the conversation, in OpenAI's format."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"examples": [{"role": "user", "content": "Where do I print?"}]},
    )

    role: Literal["system", "developer", "user", "assistant", "tool", "function"] = Field(
        ...,
        description="user and assistant turns are the history; system and developer messages "
        "are ignored (the service's own rules apply).",
    )
    content: str | list[ContentPart] | None = Field(
        None, description="Text, or a list of parts of which the text parts are read."
    )


class StreamOptions(BaseModel):
    """OpenAI's stream options."""

    model_config = ConfigDict(
        extra="allow", json_schema_extra={"examples": [{"include_usage": True}]}
    )

    include_usage: bool = Field(
        False, description="Send a last chunk with `usage` and no choices before [DONE]."
    )


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

    model: str = Field(..., description="The id from GET /v1/models.")
    messages: list[ChatMessage] = Field(
        ..., min_length=1, description="The conversation; the last one is the user's question."
    )
    stream: bool = Field(False, description="Stream `chat.completion.chunk` events.")
    stream_options: StreamOptions | None = Field(None, description="OpenAI's stream options.")
    max_tokens: int | None = Field(None, ge=1, description="Cap on the answer's tokens.")
    max_completion_tokens: int | None = Field(
        None, ge=1, description="Cap on the answer's tokens (newer name; wins over max_tokens)."
    )
    temperature: float | None = Field(
        None, ge=0, le=2, description="Accepted; the service's configured sampling applies."
    )
    reasoning_effort: Literal["low", "medium", "high"] | None = Field(
        None, description="gpt-oss reasoning effort for this answer (default: llm config)."
    )
    n: int = Field(1, ge=1, le=1, description="Only one choice is supported.")


class ChatChoiceMessage(BaseModel):
    """The assistant's answer."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "role": "assistant",
                    "content": "The shared print queue is called NW-Follow-Me [1].",
                }
            ]
        }
    )

    role: Literal["assistant"] = Field("assistant", description="Always assistant.")
    content: str = Field(..., description="The answer, with [n] citation markers.")


class ChatChoice(BaseModel):
    """The one choice."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "It is NW-Follow-Me [1]."},
                    "finish_reason": "stop",
                }
            ]
        }
    )

    index: int = Field(0, description="Always 0.")
    message: ChatChoiceMessage = Field(..., description="The answer.")
    finish_reason: Literal["stop", "length"] = Field(
        "stop", description="length when the answer hit the token cap."
    )


class ChatUsage(BaseModel):
    """Token counts, as OpenAI reports them."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"prompt_tokens": 1830, "completion_tokens": 42, "total_tokens": 1872}]
        }
    )

    prompt_tokens: int = Field(..., description="Tokens in the prompt, sources included.")
    completion_tokens: int = Field(..., description="Tokens generated.")
    total_tokens: int = Field(..., description="The sum.")


class ChatCompletion(BaseModel):
    """OpenAI's chat completion, plus citation extension fields standard clients ignore."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "chatcmpl-3f2a9c0e5b7d4e1f",
                    "object": "chat.completion",
                    "created": 1795862400,
                    "model": "knowledge-base",
                    "choices": [
                        {
                            "index": 0,
                            "message": {
                                "role": "assistant",
                                "content": "The shared print queue is called NW-Follow-Me [1].",
                            },
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 1830, "completion_tokens": 42, "total_tokens": 1872},
                    "answer_id": "3f2a9c0e5b7d4e1f8a6b2c9d0e1f2a3b",
                    "citations": [CITATION_EXAMPLE],
                    "declined": False,
                }
            ]
        }
    )

    id: str = Field(..., description="chatcmpl-... (one per completion).")
    object: Literal["chat.completion"] = Field("chat.completion", description="Fixed.")
    created: int = Field(..., description="Unix time.")
    model: str = Field(..., description="The model id the request named.")
    choices: list[ChatChoice] = Field(..., description="Exactly one.")
    usage: ChatUsage = Field(..., description="Token counts.")
    answer_id: str = Field(..., description="Extension: refer to it in POST /v1/feedback.")
    citations: list[CitationOut] = Field(
        ..., description="Extension: the sources the answer is supported by ([n] markers)."
    )
    declined: bool = Field(False, description="Extension: the knowledge base had no answer.")


STREAM_EXAMPLE = (
    'data: {"id": "chatcmpl-3f2a", "object": "chat.completion.chunk", "created": 1795862400, '
    '"model": "knowledge-base", "choices": [{"index": 0, "delta": {"role": "assistant", '
    '"content": ""}, "finish_reason": null}]}\n\n'
    'data: {"id": "chatcmpl-3f2a", "object": "chat.completion.chunk", "created": 1795862400, '
    '"model": "knowledge-base", "choices": [{"index": 0, "delta": {"content": "It is '
    'NW-Follow-Me [1]."}, "finish_reason": null}]}\n\n'
    'data: {"id": "chatcmpl-3f2a", "object": "chat.completion.chunk", "created": 1795862400, '
    '"model": "knowledge-base", "choices": [{"index": 0, "delta": {}, "finish_reason": '
    '"stop"}], "answer_id": "3f2a9c0e", "citations": [{"n": 1, "doc_id": "9c1e2a7b40d3f815", '
    '"title": "Printing at Northwind", "source": "faq-printing.txt", "page": null, '
    '"section": "", "chunk_id": "9c1e2a7b40d3f815:5d41402abc4b:3", "snippet": "All office '
    'printers share one queue..."}], "declined": false}\n\n'
    "data: [DONE]\n\n"
)
MODEL_EXAMPLE: dict[str, Any] = {
    "id": "knowledge-base",
    "object": "model",
    "created": 1795862400,
    "owned_by": "local",
}


class ModelCard(BaseModel):
    """The knowledge base, as a model OpenAI clients can name."""

    model_config = ConfigDict(json_schema_extra={"examples": [MODEL_EXAMPLE]})

    id: str = Field(..., description="Use it as `model` (server.model_name).")
    object: Literal["model"] = Field("model", description="Fixed.")
    created: int = Field(..., description="Unix time the service started.")
    owned_by: str = Field("local", description="Always local.")


class ModelList(BaseModel):
    """The models this service answers as (one)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"object": "list", "data": [MODEL_EXAMPLE]}]}
    )

    object: Literal["list"] = Field("list", description="Fixed.")
    data: list[ModelCard] = Field(..., description="One entry.")


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

    @api.get(
        "/v1/models",
        summary="The model id to use with /v1/chat/completions.",
        response_description="One model: the knowledge base (server.model_name).",
    )
    async def models() -> ModelList:
        """OpenAI's model list, for clients that pick a model from it. No key needed."""
        return ModelList(data=[ModelCard(id=settings.server.model_name, created=started)])

    @api.post(
        "/v1/chat/completions",
        summary="OpenAI-compatible chat: the last user message is answered from the knowledge "
        "base, with citations in extension fields.",
        response_model=ChatCompletion,
        response_description="A `chat.completion`, or with `stream: true` Server-Sent "
        "Events of `chat.completion.chunk` objects ending with `data: [DONE]`. The last "
        "content chunk carries the extension fields `answer_id`, `citations` and `declined`; "
        'an error mid-stream is a `data: {"error": ...}` line, then `[DONE]`.',
        responses={
            200: {"content": {"text/event-stream": {"example": STREAM_EXAMPLE}}},
            404: route_error(
                404,
                "not_found",
                "The model 'gpt-4o' does not exist here; use 'knowledge-base' (see GET "
                "/v1/models).",
                "The model named is not this service's (see GET /v1/models).",
            ),
        },
    )
    async def chat(body: ChatRequest, caller: Asker, service: Answers) -> Any:
        """Point any OpenAI client (the official SDKs, LangChain's ChatOpenAI, Open WebUI)
        at this service. The last message must be the user's question; earlier user and
        assistant messages are the conversation history (a follow-up is rewritten into a
        standalone search). System messages are ignored: the service's own rules apply.
        Same keys, scopes (`ask`), access groups and rate limits as /v1/ask."""
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
                        service.stream(question, caller, history, options=options)
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
