"""The work behind ``/v1/chat/completions``: the request's messages become a question and
its history; an answer becomes a ``chat.completion`` or a stream of chunks.

The last user message is answered from the knowledge base (retrieval, citations, the same
access groups as ``/v1/ask``); earlier user and assistant messages are the conversation
history; system messages from the client are ignored (the service's own rules apply).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Literal

from rag.answering.answer import AnswerEvent, DoneEvent
from rag.errors import BadRequestError, RagError
from rag.types import Answer, HistoryTurn, TextDelta
from serving.openai_compat.protocol import (
    ChatChoice,
    ChatChoiceMessage,
    ChatCompletion,
    ChatMessage,
    ChatUsage,
    ContentPart,
)
from serving.schemas.ask import CitationOut
from serving.state import Record
from serving.streaming import sse_data


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


def finish_reason(answer: Answer) -> Literal["stop", "length"]:
    """``length`` when the engine stopped at the token cap, else ``stop``."""
    return "length" if answer.finish_reason == "length" else "stop"


def usage(answer: Answer) -> ChatUsage:
    u = answer.usage
    return ChatUsage(
        prompt_tokens=u.prompt_tokens,
        completion_tokens=u.completion_tokens,
        total_tokens=u.prompt_tokens + u.completion_tokens,
    )


@dataclass(frozen=True, slots=True)
class Completion:
    """The identity every chunk of one completion carries."""

    id: str
    created: int
    model: str
    answer_id: str

    def whole(self, answer: Answer) -> ChatCompletion:
        return ChatCompletion(
            id=self.id,
            created=self.created,
            model=self.model,
            choices=[
                ChatChoice(
                    message=ChatChoiceMessage(content=answer.answer),
                    finish_reason=finish_reason(answer),
                )
            ],
            usage=usage(answer),
            answer_id=self.answer_id,
            citations=[CitationOut.of(c) for c in answer.citations],
            declined=answer.declined,
            cached=answer.origin == "cache",
        )

    def chunk(self, **fields: Any) -> str:
        body = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
        }
        return sse_data({**body, **fields})

    async def chunks(
        self,
        events: AsyncGenerator[AnswerEvent | RagError, None],
        record: Record,
        include_usage: bool,
    ) -> AsyncGenerator[str, None]:
        """The stream: a role chunk, content chunks, the last chunk with the finish reason
        and the extension fields, optionally a usage chunk, then ``[DONE]``; an error
        mid-stream is an ``{"error": ...}`` line, then ``[DONE]``."""
        yield self.chunk(choices=[_delta({"role": "assistant", "content": ""})])
        async for event in events:
            if isinstance(event, TextDelta):
                yield self.chunk(choices=[_delta({"content": event.text})])
            elif isinstance(event, DoneEvent):
                answer = event.answer
                await record(answer)
                yield self.chunk(
                    choices=[_delta({}, finish_reason(answer))],
                    answer_id=self.answer_id,
                    citations=[CitationOut.of(c).model_dump() for c in answer.citations],
                    declined=answer.declined,
                    cached=answer.origin == "cache",
                )
                if include_usage:
                    yield self.chunk(choices=[], usage=usage(answer).model_dump())
            elif isinstance(event, RagError):
                yield sse_data(
                    {
                        "error": {
                            "message": event.message,
                            "type": "server_error",
                            "code": event.code,
                        }
                    }
                )
        yield sse_data("[DONE]")


def _delta(delta: dict[str, str], finish: str | None = None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "finish_reason": finish}
