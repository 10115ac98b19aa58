"""The OpenAI wire format (``/v1/chat/completions``, ``/v1/models``): models only.

Citations travel in extension fields that standard clients ignore: ``citations``,
``answer_id``, ``declined`` and ``cached`` on the completion (and on the last chunk of a
stream).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from serving.schemas.ask import CITATION_EXAMPLE, CitationOut


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
    cached: bool = Field(
        False,
        description="Extension: served from the answer cache (an earlier answer to the same "
        "question for the same access groups; docs/API.md).",
    )


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
