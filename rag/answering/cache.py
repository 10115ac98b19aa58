"""The answer cache: a repeated question, or a close paraphrase, answered at once.

An earlier answer serves a new question when all of these hold:

- **the same readers**: the caller's exact group set (and the store collection, the model
  and the answer mode) gives the scope (:func:`rag.state.answer_cache.scope_of`); only
  entries of that scope are compared, so an answer never reaches a caller with other groups,
  not even a subset or a superset of them;
- **the same question**: the same normalized text, or an embedding at or above
  ``cache.threshold`` (cosine, the knowledge base's own embedder) with nothing that says the
  two ask different things (:func:`rag.answering.matching.conflicts`: numbers, negation,
  language, and words found in one question only that are rare in the caller's BM25 passages
  or unknown to them: ``cache.distinctive_share``);
- **the same documents**: every chunk the answer cited is still in the store with the same
  version (chunk ids carry the document's version; the content hash and ingest time are
  compared too) and still readable by the caller. A changed or deleted cited document makes
  the entry stale: it is dropped and the question answered afresh. Nothing is needed from
  ``rag-ingest``: the check is made on every hit.

Only answers made from sources (``origin`` ``sources``) with at least one citation, neither
declined nor cut off at the token cap, are kept, and only for questions asked without
conversation history (a follow-up's meaning depends on the turns before it). Every method
blocks (embedding, the state database, the store): the answer service calls them in worker
threads.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rag.answering.grounding import Sentence
from rag.answering.matching import best_match, normalize
from rag.config import CacheSettings
from rag.errors import RagError
from rag.index.keyword import KeywordIndex
from rag.index.lexical import has_han, in_dictionary, language
from rag.index.store import ChromaStore
from rag.seams import Embedder
from rag.state.answer_cache import AnswerCacheStore, CacheEntry, scope_of
from rag.types import Answer, Chunk, Citation, Principal, Usage

log = logging.getLogger(__name__)

_PIECE = re.compile(r"(?<=[.!?。！？；;\n])")
_VECTORS_KEPT = 64


@dataclass(frozen=True, slots=True)
class Cached:
    """A cached answer ready to serve: the answer (``origin`` ``cache``), its sentences with
    their grounding, the cited sources (for the ``citations`` event) and the text in pieces
    as a stream would give them."""

    entry_id: str
    score: float
    answer: Answer
    sentences: list[Sentence]
    sources: list[Citation]
    pieces: list[str]


def pieces_of(text: str) -> list[str]:
    """``text`` in stream-like pieces (sentence by sentence); they join to ``text``."""
    return [p for p in _PIECE.split(text) if p]


def _version(chunk: Chunk) -> str:
    return f"{chunk.content_hash}@{chunk.ingested_at}"


def cacheable(answer: Answer) -> bool:
    """Whether an answer may be kept: made from sources, cited, not declined, not cut off."""
    return (
        answer.origin == "sources"
        and not answer.declined
        and answer.finish_reason != "length"
        and bool(answer.citations)
        and all(c.chunk_id for c in answer.citations)
    )


class AnswerCache:
    """Lookups and stores for :class:`rag.answering.answer.AnswerService` (module docstring).

    ``lookups`` counts results since start (``hit``, ``miss``, ``stale``) for ``/metrics``."""

    def __init__(
        self,
        settings: CacheSettings,
        store: AnswerCacheStore,
        embedder: Embedder,
        chunks: ChromaStore,
        keyword: KeywordIndex | None = None,
        *,
        generation: str = "",
    ) -> None:
        """``chunks``: the store the answers cite (read for versions and access groups);
        ``keyword``: the BM25 index whose passages tell which words are rare (None: every
        word found in one question only makes two questions differ); ``generation``: what
        else an answer depends on (the model, the answer mode), part of the scope."""
        self.settings = settings
        self.store = store
        self._embedder = embedder
        self._chunks = chunks
        self._keyword = keyword
        self._generation = generation
        self.lookups: Counter[str] = Counter()
        self._vectors: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()
        self._purged_at = 0.0

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    def scope(self, groups: Collection[str]) -> str:
        return scope_of(groups, self._chunks.name, self._generation)

    def _vector(self, question: str, given: Sequence[float] | None = None) -> list[float]:
        """The question's embedding (``given``: computed by the caller already), kept a
        while: a miss is stored after it is answered."""
        key = normalize(question)
        with self._lock:
            found = self._vectors.get(key)
            if found is not None:
                self._vectors.move_to_end(key)
                return found
        vector = list(given) if given is not None else list(self._embedder.embed_query(question))
        with self._lock:
            self._vectors[key] = vector
            while len(self._vectors) > _VECTORS_KEPT:
                self._vectors.popitem(last=False)
        return vector

    def distinctive(self, groups: Collection[str]) -> Callable[[str], bool]:
        """:func:`distinctive_for` this knowledge base and a caller with ``groups``."""
        return distinctive_for(self._keyword, groups, self.settings.distinctive_share)

    def _purge(self, now: float) -> None:
        """Delete expired entries, at most once a minute per process."""
        if now - self._purged_at < 60:
            return
        self._purged_at = now
        self.store.purge(now - self.settings.ttl_hours * 3600)

    def lookup(
        self, question: str, principal: Principal, vector: Sequence[float] | None = None
    ) -> Cached | None:
        """The cached answer for ``question`` from ``principal``, or None (a miss, or a
        stale entry, which is dropped). A failing state database is a miss (logged).
        ``vector``: the question's embedding, when the caller has it already."""
        if not self.enabled:
            return None
        started = time.perf_counter()
        try:
            found = self._lookup(question, principal, vector)
        except RagError as exc:
            log.warning("answer cache lookup failed (answering afresh): %s", exc.message)
            found = None
            self.lookups["error"] += 1
        if found is not None:
            ms = round((time.perf_counter() - started) * 1000, 1)
            timings = {"cache_ms": ms, "first_token_ms": ms, "total_ms": ms}
            answer = found.answer
            found = Cached(
                found.entry_id,
                found.score,
                Answer(
                    answer.answer,
                    answer.citations,
                    answer.usage,
                    timings,
                    unsupported=answer.unsupported,
                    top_score=answer.top_score,
                    quoted=answer.quoted,
                    origin="cache",
                ),
                found.sentences,
                found.sources,
                found.pieces,
            )
        return found

    def _lookup(
        self, question: str, principal: Principal, given: Sequence[float] | None
    ) -> Cached | None:
        now = time.time()
        self._purge(now)
        scope = self.scope(principal.groups)
        lang = language(question)
        candidates = [
            c
            for c in self.store.candidates(
                scope,
                self.settings.max_entries_per_scope,
                since=now - self.settings.ttl_hours * 3600,
            )
            if c.lang == lang
        ]
        if not candidates:
            self.lookups["miss"] += 1
            return None
        vector = self._vector(question, given)
        best = best_match(
            question,
            vector,
            [(c.question, c.vector) for c in candidates],
            threshold=self.settings.threshold,
            distinctive=self.distinctive(principal.groups),
        )
        if best is None:
            self.lookups["miss"] += 1
            return None
        index, match = best
        entry = candidates[index]
        if not self._current(entry, principal.groups):
            self.store.drop(entry.id)
            self.lookups["stale"] += 1
            log.info("answer cache: a cited document changed, entry dropped")
            return None
        self.store.hit(entry.id, now)
        self.lookups["hit"] += 1
        log.info("answer cache hit (score %.3f, %d hits before)", match.score, entry.hits)
        return _cached(entry, match.score)

    def _current(self, entry: CacheEntry, groups: Collection[str]) -> bool:
        """Every cited chunk is still stored, at the same version, readable by ``groups``."""
        ids = list(entry.versions)
        chunks = {c.chunk_id: c for c in self._chunks.get_chunks(ids, text=False)}
        readers = set(groups)
        for chunk_id, version in entry.versions.items():
            chunk = chunks.get(chunk_id)
            if chunk is None or _version(chunk) != version:
                return False
            if not readers.intersection(chunk.groups):
                return False
        return True

    def remember(
        self,
        question: str,
        principal: Principal,
        answer: Answer,
        sentences: Sequence[Sentence],
        vector: Sequence[float] | None = None,
    ) -> bool:
        """Keep ``answer`` to ``question`` for callers with ``principal``'s groups, when it
        may be kept (:func:`cacheable`) and every chunk it cites is still stored. Whether
        it was kept; a failing state database is logged, never raised."""
        if not self.enabled or not cacheable(answer):
            return False
        try:
            return self._remember(question, principal, answer, sentences, vector)
        except RagError as exc:
            log.warning("keeping the answer in the cache failed: %s", exc.message)
            return False

    def _remember(
        self,
        question: str,
        principal: Principal,
        answer: Answer,
        sentences: Sequence[Sentence],
        given: Sequence[float] | None,
    ) -> bool:
        ids = list(dict.fromkeys(c.chunk_id for c in answer.citations))
        chunks = {c.chunk_id: c for c in self._chunks.get_chunks(ids, text=False)}
        if len(chunks) != len(ids):
            return False  # a cited document changed while the answer was made
        entry = CacheEntry(
            scope=self.scope(principal.groups),
            question=normalize(question),
            lang=language(question),
            vector=tuple(self._vector(question, given)),
            answer=_answer_json(answer, sentences),
            versions={i: _version(chunks[i]) for i in ids},
        )
        self.store.put(entry, max_entries=self.settings.max_entries_per_scope)
        return True


def distinctive_for(
    keyword: KeywordIndex | None, groups: Collection[str], share: float
) -> Callable[[str], bool]:
    """Whether a word found in one question only makes two questions differ, for a caller
    with ``groups``: a word fewer than ``share`` of their BM25 passages hold, a word none of
    them holds (a Latin word, or a Chinese word from jieba's dictionary; not a fragment
    jieba guessed), and every word when there is no BM25 index. Statistics over the
    caller's own passages only: whether a cached answer is served never depends on text
    they may not read."""
    memo: dict[str, bool] = {}

    def judge(term: str) -> bool:
        if keyword is None:
            return True
        if term not in memo:
            found = keyword.term_shares([term], groups).get(term)
            if found is None:
                memo[term] = not has_han(term) or in_dictionary(term)
            else:
                memo[term] = found < share
        return memo[term]

    return judge


def _answer_json(answer: Answer, sentences: Sequence[Sentence]) -> dict[str, Any]:
    return {
        "answer": answer.answer,
        "citations": [asdict(c) for c in answer.citations],
        "sentences": [
            {
                "text": s.text,
                "citations": list(s.citations),
                "supported": s.supported,
                "model_citations": list(s.model_citations),
            }
            for s in sentences
        ],
        "unsupported": list(answer.unsupported),
        "quoted": answer.quoted,
        "top_score": answer.top_score,
    }


def _cached(entry: CacheEntry, score: float) -> Cached:
    data = entry.answer
    citations = [Citation(**c) for c in data["citations"]]
    sentences = [
        Sentence(
            s["text"],
            tuple(s["citations"]),
            bool(s["supported"]),
            tuple(s.get("model_citations", ())),
        )
        for s in data["sentences"]
    ]
    answer = Answer(
        data["answer"],
        citations,
        Usage(),
        unsupported=list(data.get("unsupported", [])),
        top_score=data.get("top_score"),
        quoted=bool(data.get("quoted", False)),
        origin="cache",
    )
    return Cached(entry.id, score, answer, sentences, citations, pieces_of(answer.answer))
