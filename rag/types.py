"""Plain data passed between the layers: frozen dataclasses, no behaviour."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True, slots=True)
class Chunk:
    """One stored piece of a document, with everything a citation needs."""

    chunk_id: str
    doc_id: str
    text: str
    source: str
    title: str
    section: str = ""
    page: int | None = None
    index: int = 0
    groups: tuple[str, ...] = ("everyone",)
    content_hash: str = ""
    language: str = ""
    """``en``, ``zh`` or ``und`` (undetermined), guessed from the chunk's text."""
    ingested_at: str = ""
    """ISO-8601 UTC time the document version was ingested."""
    url: str = ""
    """Where a reader can open the original (from a ``.meta.json`` sidecar), if known."""
    sheet: str = ""
    """Spreadsheet sheet name (XLSX); ``page`` holds the PDF page or the slide number."""
    parent: str = ""
    """For an e-mail attachment: the doc id of the message it came with ("" otherwise)."""
    ocr_confidence: float | None = None
    """Set when the text was read from a scan or an image by OCR: Tesseract's mean word
    confidence on its page(s), 0-100 (the lowest, when a chunk spans pages)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: the access groups a caller may read. Auth (API keys, widget tokens)
    produces one; without auth the caller is anonymous with the configured default groups."""

    subject: str
    groups: frozenset[str]
    anonymous: bool = True
    scopes: frozenset[str] = frozenset({"ask"})
    credential: str = ""
    """What vouched for the caller: ``key:<id>``, ``widget:<token name>`` or ``anonymous``."""

    @property
    def owner(self) -> str:
        """Whose conversations, answers and ratings these are: the subject, the credential
        it came with and its groups. The same user through another site's widget token, or
        with fewer groups, is another owner (issue 19: a partner site's signed ``alice``
        continued the intranet's ``alice`` conversation)."""
        digest = hashlib.sha256("|".join(sorted(self.groups)).encode("utf-8")).hexdigest()
        return f"{self.subject} via {self.credential or '-'} groups:{digest[:12]}"


@dataclass(frozen=True, slots=True)
class Hit:
    """A chunk found for a query, with its similarity (higher is better).

    ``score`` is what ranked it (in hybrid search the fused score: by default the convex
    combination of each ranker's scaled scores, ``retrieval.fusion``); ``dense_score`` is the
    cosine similarity when dense search saw it, ``keyword_score`` the BM25 score when keyword
    search did.
    """

    chunk: Chunk
    score: float
    dense_score: float | None = None
    keyword_score: float | None = None


@dataclass(frozen=True, slots=True)
class Source:
    """A numbered source given to the model; ``n`` is what ``[n]`` refers to."""

    n: int
    hit: Hit


@dataclass(frozen=True, slots=True)
class Citation:
    n: int
    doc_id: str
    title: str
    source: str
    page: int | None
    snippet: str
    section: str = ""
    chunk_id: str = ""
    url: str = ""
    """Where a reader opens the original (a crawled page's address, a sidecar's link)."""
    curated_by: str = ""
    """A curated answer (``doc_id`` ``curated:<id>``): its owner; "" for a document."""
    curated_on: str = ""
    """A curated answer: the day it was written or last edited (YYYY-MM-DD)."""
    review_by: str = ""
    """A curated answer: the day it is due for review (YYYY-MM-DD)."""
    stale: bool = False
    """A curated answer past its review date (still served, shown as stale)."""


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens served from the engine's prefix cache, if reported


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """What an engine is asked: rules, numbered context and the question, kept apart."""

    request_id: str
    instructions: str
    context: str
    question: str
    max_tokens: int
    temperature: float
    reasoning_effort: Literal["low", "medium", "high"] = "low"
    prompt_ids: tuple[int, ...] = ()
    """The prompt as the engine's own ``render`` made it (history included), when the answer
    service rendered it already to count it; empty: the engine renders it."""


@dataclass(frozen=True, slots=True)
class HistoryTurn:
    """An earlier turn of the conversation."""

    role: Literal["user", "assistant"]
    text: str


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the user-visible answer."""

    text: str


@dataclass(frozen=True, slots=True)
class Finished:
    """The end of a generation."""

    usage: Usage
    finish_reason: str = "stop"


EngineEvent = TextDelta | Finished


@dataclass(frozen=True, slots=True)
class Answer:
    answer: str
    citations: list[Citation]
    usage: Usage
    timings: dict[str, float] = field(default_factory=dict)
    declined: bool = False
    unsupported: list[str] = field(default_factory=list)
    """Answer sentences no given source supports (see rag/answering/grounding.py)."""
    top_score: float | None = None
    """The best retrieval similarity (dense cosine), kept with the feedback record."""
    quoted: bool = False
    """The answer quotes the sources (extractive, or no model sentence was verified)."""
    finish_reason: str = "stop"
    """Why the engine stopped: ``stop``, or ``length`` at the token cap."""
    origin: Literal["sources", "cache", "curated"] = "sources"
    """Where the answer came from: made from the sources for this question, an earlier
    answer to the same question (the answer cache), or an answer an admin wrote (curated)."""
