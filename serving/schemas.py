"""Request and response models of the public API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rag.grounding import Sentence
from rag.types import Answer, Citation, Hit


class AskRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"question": "What is the guest Wi-Fi password?"}]},
    )

    question: str = Field(..., min_length=1, description="The question, in any language.")
    stream: bool = Field(False, description="Stream Server-Sent Events instead of one JSON.")
    conversation_id: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="Continue a conversation: earlier turns with this id (yours only) are "
        "used for follow-up questions.",
    )


class RetrieveFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    doc_id: str | list[str] | None = Field(None, description="Only these documents.")
    source: str | list[str] | None = Field(None, description="Only these source paths.")


class RetrieveRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"query": "guest Wi-Fi password", "k": 5}]},
    )

    query: str = Field(..., min_length=1, description="What to search for, in any language.")
    k: int | None = Field(None, ge=1, le=100, description="How many hits (default top_k).")
    filters: RetrieveFilters | None = Field(
        None,
        description='Restrict to documents: {"doc_id": id or [ids], "source": path or [paths]}.',
    )
    mode: Literal["hybrid", "dense", "keyword"] | None = Field(
        None, description="Search mode (default: retrieval.mode)."
    )


class HitOut(BaseModel):
    text: str
    score: float = Field(..., description="Ranking score (RRF in hybrid mode).")
    dense_score: float | None = Field(None, description="Cosine similarity, if dense saw it.")
    keyword_score: float | None = Field(None, description="BM25 score, if keyword saw it.")
    chunk_id: str
    doc_id: str
    title: str
    source: str
    page: int | None = None
    section: str = ""
    index: int = Field(0, description="Position of the chunk in its document.")

    @classmethod
    def of(cls, h: Hit) -> HitOut:
        c = h.chunk
        return cls(
            text=c.text,
            score=h.score,
            dense_score=h.dense_score,
            keyword_score=h.keyword_score,
            chunk_id=c.chunk_id,
            doc_id=c.doc_id,
            title=c.title,
            source=c.source,
            page=c.page,
            section=c.section,
            index=c.index,
        )


class RetrieveResponse(BaseModel):
    hits: list[HitOut] = Field(..., description="Best first; only what the caller may read.")
    timings: dict[str, float] = Field(default_factory=dict, description="Milliseconds.")


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


class SentenceOut(BaseModel):
    text: str = Field(..., description="One answer sentence, without [n] markers.")
    citations: list[int] = Field(..., description="Sources that support it (checked).")
    supported: bool = Field(..., description="False when no given source supports it.")


class AskResponse(BaseModel):
    answer_id: str = Field(..., description="Refer to this answer in POST /v1/feedback.")
    answer: str
    citations: list[CitationOut]
    usage: UsageOut
    timings: dict[str, float] = Field(..., description="Milliseconds per stage.")
    declined: bool = Field(False, description="True when the knowledge base had no answer.")
    sentences: list[SentenceOut] = Field(
        default_factory=list, description="The answer sentence by sentence, with grounding."
    )
    unsupported: list[str] = Field(
        default_factory=list, description="Sentences no source supports: treat with care."
    )
    conversation_id: str | None = None

    @classmethod
    def of(
        cls,
        a: Answer,
        answer_id: str,
        sentences: list[Sentence] | None = None,
        conversation_id: str | None = None,
    ) -> AskResponse:
        return cls(
            answer_id=answer_id,
            sentences=[
                SentenceOut(text=s.text, citations=list(s.citations), supported=s.supported)
                for s in sentences or []
            ],
            unsupported=list(a.unsupported),
            conversation_id=conversation_id,
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
        ...,
        description="ready, degraded (200: the last answer failed in the engine; clears on "
        "the next one that completes), loading, failed, or unreachable (a remote model server)",
    )
    model: str | None = None
    detail: str | None = None
    engine_errors: int = Field(0, description="Answers that failed in the engine since start.")
    last_engine_error: str | None = Field(None, description="The last such failure, if any.")
