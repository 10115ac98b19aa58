"""Request and response models of the public API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from rag.types import Answer, Citation


class AskRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"question": "What is the guest Wi-Fi password?"}]},
    )

    question: str = Field(..., min_length=1, description="The question, in any language.")
    stream: bool = Field(False, description="Stream Server-Sent Events instead of one JSON.")


class CitationOut(BaseModel):
    n: int = Field(..., description="The number used as [n] in the answer.")
    doc_id: str
    title: str
    source: str = Field(..., description="Where the document came from (path or URL).")
    page: int | None = Field(None, description="Page or slide, when the format has them.")
    section: str = Field("", description="The heading the cited passage is under.")
    chunk_id: str = Field("", description="The cited passage (see /v1/documents/{id}/source).")
    snippet: str = Field(..., description="The start of the cited passage.")

    @classmethod
    def of(cls, c: Citation) -> CitationOut:
        return cls(
            n=c.n,
            doc_id=c.doc_id,
            title=c.title,
            source=c.source,
            page=c.page,
            section=c.section,
            chunk_id=c.chunk_id,
            snippet=c.snippet,
        )


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class AskResponse(BaseModel):
    answer_id: str = Field(..., description="Refer to this answer in POST /v1/feedback.")
    answer: str
    citations: list[CitationOut]
    usage: UsageOut
    timings: dict[str, float] = Field(..., description="Milliseconds per stage.")
    declined: bool = Field(False, description="True when the knowledge base had no answer.")

    @classmethod
    def of(cls, a: Answer, answer_id: str) -> AskResponse:
        return cls(
            answer_id=answer_id,
            answer=a.answer,
            citations=[CitationOut.of(c) for c in a.citations],
            usage=UsageOut(
                prompt_tokens=a.usage.prompt_tokens,
                completion_tokens=a.usage.completion_tokens,
            ),
            timings=a.timings,
            declined=a.declined,
        )


class ErrorBody(BaseModel):
    code: str
    message: str = Field(..., description="What went wrong and what to do next.")


class ErrorResponse(BaseModel):
    error: ErrorBody


class ReadyResponse(BaseModel):
    status: str = Field(
        ..., description="ready, loading, failed, or unreachable (a remote model server)"
    )
    model: str | None = None
    detail: str | None = None
