"""Request and response models of the public API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rag.answering.grounding import Sentence
from rag.types import Answer, Citation, Hit

CITATION_EXAMPLE: dict[str, Any] = {
    "n": 1,
    "doc_id": "9c1e2a7b40d3f815",
    "title": "Printing at Northwind",
    "source": "faq-printing.txt",
    "page": None,
    "section": "Printing > Shared queue",
    "chunk_id": "9c1e2a7b40d3f815:5d41402abc4b:3",
    "snippet": "All office printers share one queue, NW-Follow-Me: print, then badge in...",
}
CURATED_CITATION_EXAMPLE: dict[str, Any] = {
    "n": 1,
    "doc_id": "curated:4be8c21f0a",
    "title": "How do I book the large meeting room?",
    "source": "curated by facilities@example.com, 2026-11-02",
    "page": None,
    "section": "",
    "chunk_id": "curated:4be8c21f0a",
    "snippet": "Book the large meeting room (Atlas, 3rd floor) in the Rooms calendar...",
    "url": "",
    "curated_by": "facilities@example.com",
    "curated_on": "2026-11-02",
    "review_by": "2027-05-01",
    "stale": False,
}
HIT_EXAMPLE: dict[str, Any] = {
    "text": "All office printers share one queue, NW-Follow-Me: print, then badge in at any "
    "printer to release the job.",
    "score": 0.0328,
    "dense_score": 0.71,
    "keyword_score": 7.42,
    "chunk_id": "9c1e2a7b40d3f815:5d41402abc4b:3",
    "doc_id": "9c1e2a7b40d3f815",
    "title": "Printing at Northwind",
    "source": "faq-printing.txt",
    "page": None,
    "section": "Printing > Shared queue",
    "index": 3,
}
SENTENCE_EXAMPLE: dict[str, Any] = {
    "text": "The shared print queue is called NW-Follow-Me.",
    "citations": [1],
    "supported": True,
}
ANSWER_EXAMPLE: dict[str, Any] = {
    "answer_id": "3f2a9c0e5b7d4e1f8a6b2c9d0e1f2a3b",
    "answer": "The shared print queue is called NW-Follow-Me [1].",
    "citations": [CITATION_EXAMPLE],
    "usage": {"prompt_tokens": 1830, "completion_tokens": 42},
    "timings": {
        "retrieval_ms": 14.2,
        "packing_ms": 3.1,
        "first_token_ms": 380.5,
        "total_ms": 1210.9,
    },
    "declined": False,
    "sentences": [SENTENCE_EXAMPLE],
    "unsupported": [],
    "conversation_id": None,
    "cached": False,
    "origin": "sources",
}
CACHED_EXAMPLE: dict[str, Any] = {
    **ANSWER_EXAMPLE,
    "answer_id": "5d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a",
    "usage": {"prompt_tokens": 0, "completion_tokens": 0},
    "timings": {"cache_ms": 9.4, "first_token_ms": 9.4, "total_ms": 9.4},
    "cached": True,
    "origin": "cache",
}
DECLINED_EXAMPLE: dict[str, Any] = {
    "answer_id": "b71c0d2e3f4a5b6c7d8e9f0a1b2c3d4e",
    "answer": "I could not find this in the knowledge base. Try rephrasing the question, or "
    "ask the helpdesk team to add a document that covers it.",
    "citations": [],
    "usage": {"prompt_tokens": 0, "completion_tokens": 0},
    "timings": {"retrieval_ms": 12.0, "total_ms": 12.6},
    "declined": True,
    "sentences": [],
    "unsupported": [],
    "conversation_id": None,
}
ERROR_EXAMPLE: dict[str, Any] = {
    "error": {
        "code": "bad_request",
        "message": "Invalid request: question: Field required. Fix it and retry.",
    }
}


class AskRequest(BaseModel):
    """A question for the knowledge base."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"question": "What is the guest Wi-Fi password?"},
                {"question": "年假可以结转吗？", "stream": True},
                {"question": "And for contractors?", "conversation_id": "c-2f6e0b"},
            ]
        },
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
    """Restrict a search to some documents (within what the caller may read)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"doc_id": ["9c1e2a7b40d3f815"]}, {"source": "hr.md"}]},
    )

    doc_id: str | list[str] | None = Field(None, description="Only these documents.")
    source: str | list[str] | None = Field(None, description="Only these source paths.")


class RetrieveRequest(BaseModel):
    """A search over the knowledge base, without asking the model."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"query": "guest Wi-Fi password", "k": 5},
                {"query": "VPN", "k": 3, "mode": "keyword", "filters": {"source": "it.md"}},
            ]
        },
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
    """One retrieved passage (chunk) and where it comes from."""

    model_config = ConfigDict(json_schema_extra={"examples": [HIT_EXAMPLE]})

    text: str = Field(..., description="The passage's text, as indexed.")
    score: float = Field(
        ..., description="Ranking score (hybrid: the fused score, see retrieval.fusion)."
    )
    dense_score: float | None = Field(None, description="Cosine similarity, if dense saw it.")
    keyword_score: float | None = Field(None, description="BM25 score, if keyword saw it.")
    chunk_id: str = Field(..., description="The passage's id (stable while the file is).")
    doc_id: str = Field(..., description="The document's id (see /v1/documents/{doc_id}).")
    title: str = Field(..., description="The document's title.")
    source: str = Field(..., description="Where the document came from (path or URL).")
    page: int | None = Field(None, description="Page, slide or sheet, when the format has them.")
    section: str = Field("", description="The heading path the passage is under.")
    index: int = Field(0, description="Position of the chunk in its document.")
    url: str = Field(
        "", description="Where to open the original: a crawled page's address, a sidecar link."
    )
    ocr_confidence: float | None = Field(
        None,
        description="Set when the passage was read from a scan or an image by OCR: "
        "Tesseract's mean word confidence (0-100).",
    )
    curated: bool = Field(
        False,
        description="A curated answer (text: the answer; title: its question; doc_id "
        "curated:<id>): ranked first when the query means the same as its question.",
    )

    @classmethod
    def of(cls, h: Hit, *, curated: bool = False) -> HitOut:
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
            url=c.url,
            ocr_confidence=c.ocr_confidence,
            curated=curated,
        )


class RetrieveResponse(BaseModel):
    """Search results."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "hits": [HIT_EXAMPLE],
                    "timings": {"dense_ms": 4.1, "keyword_ms": 1.2, "total_ms": 11.8},
                }
            ]
        }
    )

    hits: list[HitOut] = Field(..., description="Best first; only what the caller may read.")
    timings: dict[str, float] = Field(
        default_factory=dict, description="Milliseconds: dense_ms, keyword_ms, total_ms."
    )


class CitationOut(BaseModel):
    """A source the answer cites as [n]."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [CITATION_EXAMPLE, CURATED_CITATION_EXAMPLE]}
    )

    n: int = Field(..., description="The number used as [n] in the answer.")
    doc_id: str = Field(..., description="The document's id (see /v1/documents/{doc_id}).")
    title: str = Field(..., description="The document's title.")
    source: str = Field(..., description="Where the document came from (path or URL).")
    page: int | None = Field(None, description="Page or slide, when the format has them.")
    section: str = Field("", description="The heading the cited passage is under.")
    chunk_id: str = Field("", description="The cited passage (see /v1/documents/{id}/source).")
    snippet: str = Field(..., description="The start of the cited passage.")
    url: str = Field(
        "", description="Where to open the original: a crawled page's address, a sidecar link."
    )
    curated_by: str = Field(
        "",
        description='A curated answer (doc_id curated:<id>, source "curated by <owner>, '
        '<date>"): its owner; empty for a document.',
    )
    curated_on: str = Field(
        "", description="A curated answer: the day it was written or last edited (YYYY-MM-DD)."
    )
    review_by: str = Field(
        "", description="A curated answer: the day it is due for review (YYYY-MM-DD)."
    )
    stale: bool = Field(
        False,
        description="A curated answer past its review date: still the admins' answer, but "
        "show it as possibly out of date.",
    )

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
            url=c.url,
            curated_by=c.curated_by,
            curated_on=c.curated_on,
            review_by=c.review_by,
            stale=c.stale,
        )


class UsageOut(BaseModel):
    """Tokens the model read and wrote for this answer (0 when it was not asked)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"prompt_tokens": 1830, "completion_tokens": 42}]}
    )

    prompt_tokens: int = Field(..., description="Tokens in the prompt, sources included.")
    completion_tokens: int = Field(..., description="Tokens the model generated.")


class SentenceOut(BaseModel):
    """One sentence of the answer and the sources that support it."""

    model_config = ConfigDict(json_schema_extra={"examples": [SENTENCE_EXAMPLE]})

    text: str = Field(..., description="One answer sentence, without [n] markers.")
    citations: list[int] = Field(..., description="Sources that support it (checked).")
    supported: bool = Field(..., description="False when no given source supports it.")


class AskResponse(BaseModel):
    """An answer with its citations (also the data of the SSE `done` event)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [ANSWER_EXAMPLE, CACHED_EXAMPLE, DECLINED_EXAMPLE]}
    )

    answer_id: str = Field(..., description="Refer to this answer in POST /v1/feedback.")
    answer: str = Field(..., description="The answer text, with [n] citation markers.")
    citations: list[CitationOut] = Field(..., description="The sources cited, by [n].")
    usage: UsageOut = Field(..., description="Token counts.")
    timings: dict[str, float] = Field(..., description="Milliseconds per stage.")
    declined: bool = Field(False, description="True when the knowledge base had no answer.")
    sentences: list[SentenceOut] = Field(
        default_factory=list, description="The answer sentence by sentence, with grounding."
    )
    unsupported: list[str] = Field(
        default_factory=list, description="Sentences no source supports: treat with care."
    )
    quoted: bool = Field(
        False,
        description="True when the answer quotes the sources instead of model text: always "
        "in extractive mode (answer.mode); in generative mode when no sentence of the model's "
        "text could be verified, so the service shows the passage that best answers the "
        "question, cited, under a 'could not verify' notice (the model's text is not shown).",
    )
    conversation_id: str | None = Field(
        None, description="The conversation this answer belongs to, if one was given."
    )
    cached: bool = Field(
        False,
        description="True when the answer was served from the answer cache: an earlier answer "
        "to the same question (or a close paraphrase) asked by a caller with the same access "
        "groups, while every document it cites is unchanged (cache.enabled). Same text, "
        "citations and sentences; usage is 0.",
    )
    origin: Literal["sources", "cache", "curated"] = Field(
        "sources",
        description="Where the answer came from: sources (made for this question from the "
        "knowledge base), cache (the answer cache, as cached: true) or curated (an answer "
        "an admin wrote).",
    )

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
            quoted=a.quoted,
            cached=a.origin == "cache",
            origin=a.origin,
        )


class ErrorBody(BaseModel):
    """What went wrong."""

    model_config = ConfigDict(json_schema_extra={"examples": [ERROR_EXAMPLE["error"]]})

    code: str = Field(
        ..., description="Stable, for programs: e.g. unauthorized, rate_limited, busy."
    )
    message: str = Field(..., description="What went wrong and what to do next.")


class ErrorResponse(BaseModel):
    """Every error the service sends has this shape."""

    model_config = ConfigDict(json_schema_extra={"examples": [ERROR_EXAMPLE]})

    error: ErrorBody = Field(..., description="The error.")


class ReadyResponse(BaseModel):
    """Whether the service can answer questions now."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"status": "ready", "model": "gpt-oss-20b", "detail": None},
                {"status": "loading", "model": None, "detail": None},
                {
                    "status": "degraded",
                    "model": "gpt-oss-20b",
                    "detail": "The last 1 answer(s) failed in the engine: The engine failed "
                    "while answering (RuntimeError). Retry; if it keeps failing, check the "
                    "service log and /readyz. The service keeps taking questions and recovers "
                    "by itself on the next answer that completes; if failures continue, check "
                    "the service log and restart it.",
                    "engine_errors": 1,
                    "last_engine_error": "The engine failed while answering (RuntimeError). "
                    "Retry; if it keeps failing, check the service log and /readyz.",
                },
                {
                    "status": "unreachable",
                    "model": "openai:gpt-oss-120b",
                    "detail": "The model server (openai) at http://10.0.0.5:8001/v1 is not "
                    "reachable (ConnectError). Start it or fix llm.base_url.",
                },
            ]
        }
    )

    status: str = Field(
        ...,
        description="ready, degraded (200: the last answer failed in the engine; clears on "
        "the next one that completes), loading, failed, or unreachable (a remote model server)",
    )
    model: str | None = Field(None, description="The model, once it is known.")
    detail: str | None = Field(None, description="Why it is not ready, and what to do.")
    engine_errors: int = Field(0, description="Answers that failed in the engine since start.")
    last_engine_error: str | None = Field(None, description="The last such failure, if any.")


class HealthResponse(BaseModel):
    """The process is alive (it may still be loading: see /readyz)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: Literal["ok"] = Field("ok", description="Always ok when the process answers.")
