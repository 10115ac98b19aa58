"""Curated answers at answer time: which one (if any) answers a caller's question.

:class:`CuratedAnswers` keeps the active entries of :class:`rag.state.curated.CuratedStore`
and the embeddings of their questions in memory. It asks the store for its ``version()`` at
most every ``check_every_s`` seconds and reloads when it moved, so an answer added, edited or
retired on one replica is served (or no longer served) by every replica within about a
second; :meth:`CuratedAnswers.changed` makes this process reload at its next question.

A question gets a curated answer when the caller is in one of the entry's access groups
(the rule documents follow: :func:`rag.answering.context.readable_by`, and
:func:`rag.index.store.acl_where`) and the questions mean
the same: :func:`rag.answering.matching.best_match` with ``curated.threshold`` and its
conflict guards (numbers, negation, language, distinctive terms), so "the Madrid office" is
never given the answer written for "the Porto office".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from rag.answering.matching import Match, best_match
from rag.errors import RagError
from rag.seams import Embedder
from rag.state.curated import CuratedEntry, CuratedStore
from rag.types import Chunk, Citation, Hit, Principal

log = logging.getLogger(__name__)
SNIPPET_CHARS = 300
DOC_PREFIX = "curated:"


@dataclass(frozen=True, slots=True)
class CuratedHit:
    """A curated answer for a question, its similarity, and whether it is past its review."""

    entry: CuratedEntry
    match: Match
    stale: bool

    @property
    def doc_id(self) -> str:
        return f"{DOC_PREFIX}{self.entry.curated_id}"

    def citation(self, n: int = 1) -> Citation:
        """Cited as "curated by <owner>, <YYYY-MM-DD>" (the day it was written or edited)."""
        entry = self.entry
        on = entry.updated_on.isoformat()
        return Citation(
            n=n,
            doc_id=self.doc_id,
            title=entry.question,
            source=f"curated by {entry.owner}, {on}",
            page=None,
            snippet=entry.answer[:SNIPPET_CHARS],
            chunk_id=self.doc_id,
            curated_by=entry.owner,
            curated_on=on,
            review_by=entry.review_by.isoformat(),
            stale=self.stale,
        )

    def hit(self) -> Hit:
        """As a retrieval hit (``/v1/retrieve``): the answer is the passage."""
        entry = self.entry
        chunk = Chunk(
            chunk_id=self.doc_id,
            doc_id=self.doc_id,
            text=entry.answer,
            source=f"curated by {entry.owner}, {entry.updated_on.isoformat()}",
            title=entry.question,
            groups=entry.groups,
            language=entry.language,
        )
        return Hit(chunk, self.match.score, dense_score=self.match.score)


@dataclass(frozen=True, slots=True)
class _Loaded:
    entries: tuple[CuratedEntry, ...]
    vectors: tuple[Sequence[float], ...]


class CuratedAnswers:
    """The active curated answers of ``store``, matched against questions (blocking: the
    answer service calls it from a worker thread). ``distinctive(groups)``: whether a word
    found in one question only makes two questions differ, judged on what ``groups`` may
    read (:func:`rag.answering.cache.distinctive_for`); None: every such word does."""

    def __init__(
        self,
        store: CuratedStore,
        embedder: Embedder,
        *,
        threshold: float,
        distinctive: Callable[[Collection[str]], Callable[[str], bool]] | None = None,
        check_every_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self._embedder = embedder
        self._threshold = threshold
        self._distinctive = distinctive
        self._check_every = check_every_s
        self._clock = clock
        self._lock = threading.Lock()
        self._loaded = _Loaded((), ())
        self._version: tuple[int, float] | None = None
        self._checked = float("-inf")
        self._vectors: dict[str, Sequence[float]] = {}  # question -> embedding
        self._failing = False

    def changed(self) -> None:
        """This process changed the store: check its version at the next question."""
        with self._lock:
            self._checked = float("-inf")

    def _current(self) -> _Loaded:
        """The active entries, reloaded when the store's version moved. A store that cannot
        be read keeps the last ones (logged once): documents still answer."""
        with self._lock:
            now = self._clock()
            if now - self._checked < self._check_every:
                return self._loaded
            self._checked = now
            try:
                version = self.store.version()
                if version != self._version:
                    self._loaded = self._load()
                    self._version = version
                if self._failing:
                    log.warning("reading curated answers works again")
                self._failing = False
            except RagError as exc:
                if not self._failing:
                    log.warning("reading curated answers failed (keeping the last): %s", exc)
                self._failing = True
            return self._loaded

    def _load(self) -> _Loaded:
        entries = tuple(self.store.list(status="active"))
        vectors = {q: self._vectors.get(q) for q in {e.question for e in entries}}
        for question, vector in vectors.items():
            if vector is None:
                vectors[question] = self._embedder.embed_query(question)
        self._vectors = {q: v for q, v in vectors.items() if v is not None}
        log.info("curated answers loaded: %d active", len(entries))
        return _Loaded(entries, tuple(self._vectors[e.question] for e in entries))

    def _best(
        self,
        question: str,
        loaded: _Loaded,
        allowed: Callable[[CuratedEntry], bool],
        groups: Collection[str] | None,
        vector: Sequence[float] | None = None,
    ) -> CuratedHit | None:
        picked = [i for i, e in enumerate(loaded.entries) if allowed(e)]
        if not picked:
            return None
        if vector is None:
            vector = self._embedder.embed_query(question)
        candidates = [(loaded.entries[i].question, loaded.vectors[i]) for i in picked]
        if groups is None:  # the report: over what the candidates' readers may read
            groups = {g for i in picked for g in loaded.entries[i].groups}
        found = best_match(
            question,
            vector,
            candidates,
            threshold=self._threshold,
            distinctive=None if self._distinctive is None else self._distinctive(groups),
        )
        if found is None:
            return None
        index, match = found
        entry = loaded.entries[picked[index]]
        return CuratedHit(entry, match, entry.stale(self.store.today()))

    def match(
        self, question: str, principal: Principal, vector: Sequence[float] | None = None
    ) -> CuratedHit | None:
        """The curated answer for ``question`` that ``principal`` may be given, if any;
        ``vector``: the question's embedding, when the caller has it already."""
        groups = principal.groups  # as for documents: any one of the entry's groups
        hit = self._best(
            question, self._current(), lambda e: not groups.isdisjoint(e.groups), groups, vector
        )
        if hit is not None:
            log.info(
                "curated answer %s matches (score %.3f, stale %s)",
                hit.entry.curated_id,
                hit.match.score,
                hit.stale,
            )
        return hit

    def covering(self, question: str) -> CuratedEntry | None:
        """The active curated answer that answers ``question`` for someone, whatever the
        groups (the helpdesk report: which unanswered questions now have one)."""
        hit = self._best(question, self._current(), lambda e: True, None)
        return hit.entry if hit is not None else None
