"""Hybrid retrieval: dense (Chroma) + keyword (BM25) fused, with access control inside both
searches.

Fusion (``retrieval.fusion``): ``convex`` (the default) adds each ranker's scores after
normalising them over that ranker's own candidates (``fusion_scale``: ``max`` divides by the
best score, ``minmax`` maps best..worst to 1..0), weighted by
``dense_weight``/``keyword_weight``; ``rrf`` adds ``weight / (rrf_k + rank)``. Tuned on
SciFact's train split, the convex combination beat the best RRF by ~0.01 nDCG@10 at
document level (``bench/fusion.py``): it keeps how far apart two candidates are, which RRF
throws away; ``max`` scaling beat min-max by another ~0.005 on train.

A question in a language the embedding model does not read (``embedding.languages``, by
:func:`rag.index.lexical.language`) gets ``unread_dense_weight`` (0 by default) for dense
search instead (:func:`weights`): all-MiniLM-L6-v2 reads English only, and its vectors of a
Chinese question made hybrid 0.16 nDCG@10 worse than BM25 alone on cmrc2018-trial.

``language_weights`` sets the weights per question language, with ``translated`` and
``cross``: BM25 cannot match a candidate in the other language, so the question translated
word by word (:mod:`rag.index.dictionary`) is searched too, and its score stands in for that
candidate's BM25 score; its cosine counts ``cross`` times (:func:`fuse_hybrid`). Each chunk's
language comes from the BM25 index (:meth:`rag.index.keyword.KeywordIndex.languages`).

Access control: a chunk is readable by a caller when the chunk's groups and the caller's
groups share one. Both rankers only ever rank readable chunks:

- BM25 zeroes the scores of unreadable chunks before taking its top candidates
  (:meth:`rag.index.keyword.KeywordIndex.search`);
- dense search takes one of three paths, all giving the ranking of a search among the
  readable chunks only:

  - ``overfetch``: the caller may read a large share of the collection
    (``overfetch_min_share``): unfiltered nearest neighbours are over-fetched and unreadable
    ones dropped (falls back to the filter when too few survive);
  - ``exact``: the caller may read a small share, at most ``exact_max_chunks`` chunks: the
    vectors of exactly those chunks are read from the store once (per group set and
    keyword-index generation, so an ingest refreshes them; a few group sets are kept) and
    searched exhaustively in memory, which is both exact and fast;
  - ``filter``: otherwise (or with ``doc_id``/``source`` filters), Chroma's ``where`` on
    ``acl:<group>`` keys, which costs 70-130 ms at 100K chunks (``bench/retrieval.py``).

Every hit is checked once more against the caller's groups before it leaves this module.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np

from rag.config import RetrievalSettings
from rag.errors import AssetError, BadRequestError
from rag.index.dictionary import Dictionary, dictionary
from rag.index.keyword import KeywordIndex
from rag.index.lexical import language
from rag.index.store import ChromaStore, acl_where
from rag.seams import Embedder
from rag.types import Chunk, Hit, Principal

log = logging.getLogger(__name__)

Mode = Literal["hybrid", "dense", "keyword"]
Fusion = Literal["convex", "rrf"]
Scale = Literal["max", "minmax"]
K = TypeVar("K", bound=Hashable)
MAX_OVERFETCH = 2000
EXACT_CACHE_SETS = 8  # group sets whose vectors the exact path keeps in memory


@dataclass(frozen=True, slots=True)
class Filters:
    """Optional restrictions a caller adds to a search (on top of access control)."""

    doc_ids: tuple[str, ...] | None = None
    sources: tuple[str, ...] | None = None

    @classmethod
    def parse(cls, raw: dict[str, Any] | None) -> Filters:
        """From the API's ``filters`` object: ``doc_id`` / ``source``, a string or a list."""
        if not raw:
            return cls()
        unknown = set(raw) - {"doc_id", "source"}
        if unknown:
            raise BadRequestError(
                f"Unknown filter(s) {', '.join(sorted(unknown))}; the filters are doc_id "
                "and source (a string or a list of strings)."
            )
        values: dict[str, tuple[str, ...]] = {}
        for key in ("doc_id", "source"):
            value = raw.get(key)
            if value is None:
                continue
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
                raise BadRequestError(f"Filter {key} must be a string or a list of strings.")
            values[key] = tuple(items)
        return cls(doc_ids=values.get("doc_id"), sources=values.get("source"))

    @property
    def empty(self) -> bool:
        return self.doc_ids is None and self.sources is None

    def allows(self, chunk: Chunk) -> bool:
        if self.doc_ids is not None and chunk.doc_id not in self.doc_ids:
            return False
        return self.sources is None or chunk.source in self.sources

    def where(self) -> list[dict[str, Any]]:
        clauses: list[dict[str, Any]] = []
        if self.doc_ids is not None:
            clauses.append({"doc_id": {"$in": list(self.doc_ids)}})
        if self.sources is not None:
            clauses.append({"source": {"$in": list(self.sources)}})
        return clauses


def readable(chunk: Chunk, groups: Collection[str] | None) -> bool:
    """Whether a caller with ``groups`` may read ``chunk`` (None: no restriction)."""
    return groups is None or any(g in groups for g in chunk.groups)


def rrf(rankings: Iterable[tuple[float, Sequence[K]]], k: float) -> dict[K, float]:
    """Reciprocal rank fusion: ``sum(weight / (k + rank))`` over rankings, rank from 1."""
    fused: dict[K, float] = {}
    for weight, ranking in rankings:
        if weight <= 0:
            continue
        for rank, key in enumerate(ranking, start=1):
            fused[key] = fused.get(key, 0.0) + weight / (k + rank)
    return fused


def normalise(
    ranking: Sequence[tuple[K, float]], scale: Scale, depth: int | None
) -> tuple[dict[K, float], float]:
    """One ranking's scores normalised as :func:`convex` does, and the score a key it did
    not return gets (its floor)."""
    scores = [s for _, s in ranking]
    lo, hi = min(scores), max(scores)
    span = hi - lo
    if scale == "max" and hi > 0:
        norm = {key: max(score, 0.0) / hi for key, score in ranking}
    else:
        norm = {key: (score - lo) / span if span > 0 else 1.0 for key, score in ranking}
    cut_short = depth is None or len(ranking) >= depth
    floor = min(norm.values()) if scale == "max" and cut_short else 0.0
    return norm, floor


def convex(
    rankings: Iterable[tuple[float, Sequence[tuple[K, float]]]],
    scale: Scale = "minmax",
    depth: int | None = None,
) -> dict[K, float]:
    """Convex combination of normalised scores.

    Each ranking is ``(weight, [(key, score), ...])``; its scores are normalised over its own
    candidates, then ``sum(weight * normalised) / sum(weights)``. ``scale``:

    - ``minmax``: best -> 1, worst -> 0 (all equal -> 1);
    - ``max``: ``score / best`` (scores below 0 count as 0; min-max when no score is
      positive), which keeps how far the whole list sits below its best hit: a ranker whose
      candidates all score alike moves the fusion less.

    A key a ranking did not return gets 0 from it under ``minmax``. Under ``max`` it gets
    the ranking's lowest normalised score (it ranked somewhere below all of them), unless the
    ranking is shorter than ``depth`` (the number of candidates asked for): then the ranker
    returned everything that matched, and the key gets 0. Rankings with weight <= 0 are
    ignored.
    """
    parts = [(w, list(r)) for w, r in rankings if w > 0]
    total = sum(w for w, _ in parts)
    normalised = [
        (weight / total, *normalise(ranking, scale, depth)) for weight, ranking in parts if ranking
    ]
    keys = {key for _, norm, _ in normalised for key in norm}
    fused: dict[K, float] = dict.fromkeys(keys, 0.0)
    for share, norm, floor in normalised:
        for key in keys:
            fused[key] += share * norm.get(key, floor)
    return fused


def fuse(
    rankings: Sequence[tuple[float, Sequence[tuple[K, float]]]],
    method: Fusion,
    rrf_k: float,
    scale: Scale = "minmax",
    depth: int | None = None,
) -> dict[K, float]:
    """Fused scores of scored rankings (best first) by ``method``: see the module docstring
    and :func:`convex`."""
    if method == "rrf":
        return rrf(((w, [key for key, _ in r]) for w, r in rankings), rrf_k)
    return convex(rankings, scale, depth)


@dataclass(frozen=True, slots=True)
class Weights:
    """How one question's rankings are fused (:func:`weights`)."""

    dense: float
    keyword: float
    cross: float = 1.0
    """Factor on the cosine of a candidate in another language the model reads (1: none)."""
    language: str = "en"
    """The question's language."""
    reads: frozenset[str] = frozenset()
    """The languages the embedding model reads."""
    translated: float = 0.0
    """Factor on the BM25 score of the translated question for a candidate in the other
    language (0: no translation)."""

    @property
    def bilingual(self) -> bool:
        """Whether candidates' languages change how they are fused."""
        return self.cross != 1.0 or self.translated > 0


def weights(cfg: RetrievalSettings, query: str, languages: Collection[str]) -> Weights:
    """The fusion weights for ``query``: ``language_weights`` of its language (tuned for a
    model that reads both languages), else ``dense_weight``/``keyword_weight`` (tuned with the
    English-only MiniLM; also for a model that reads one language) with nothing by language
    but the translation; ``unread_dense_weight`` for dense when the embedding model does not
    read the question's language."""
    lang = language(query)
    reads = frozenset(languages)
    own = cfg.language_weights.get(lang)
    translated = 0.0 if own is None else own.translated
    if lang not in reads:
        keyword = cfg.keyword_weight if own is None else own.keyword
        return Weights(cfg.unread_dense_weight, keyword, 1.0, lang, reads, translated)
    if own is None or len(reads) < 2:
        return Weights(cfg.dense_weight, cfg.keyword_weight, 1.0, lang, reads, translated)
    return Weights(own.dense, own.keyword, own.cross, lang, reads, translated)


def language_aware(cfg: RetrievalSettings, plan: Weights) -> bool:
    """Whether candidates' languages change how :func:`fuse_hybrid` fuses them: only under
    convex fusion (RRF sees ranks alone)."""
    return cfg.fusion == "convex" and plan.bilingual


def translates(cfg: RetrievalSettings, plan: Weights) -> bool:
    """Whether :func:`fuse_hybrid` reads the translated question's BM25 (else it is not
    worth computing)."""
    return language_aware(cfg, plan) and plan.translated > 0


def fuse_hybrid(
    dense: Sequence[tuple[K, float]],
    keyword: Sequence[tuple[K, float]],
    plan: Weights,
    cfg: RetrievalSettings,
    depth: int | None,
    languages: Mapping[K, str],
    translated: Sequence[tuple[K, float]] = (),
) -> dict[K, float]:
    """Dense and BM25 fused for one question (:func:`fuse`); language-aware under convex
    fusion (``languages``: each candidate's, by key).

    BM25 cannot match a candidate in the other language, so fusing every candidate alike
    holds it below each same-language one BM25 found. Two things lift it:

    - on the keyword side, ``translated`` (BM25 of the question translated word by word,
      :mod:`rag.index.dictionary`) times ``plan.translated`` stands in for BM25, when higher;
      the two share one normalisation, so the stronger lexical evidence of the two languages
      wins;
    - on the dense side, its cosine counts ``plan.cross`` times (a translation scores lower
      than a paraphrase in the same language), when the model reads its language.

    Same-language candidates are fused as without languages.
    """
    kw: Sequence[tuple[K, float]] = keyword
    if language_aware(cfg, plan) and languages:

        def other(key: K) -> bool:
            lang = languages.get(key)
            return lang is not None and lang != plan.language

        if plan.cross != 1.0:
            lifted = [
                (key, score * plan.cross if other(key) and languages[key] in plan.reads else score)
                for key, score in dense
            ]
            dense = sorted(lifted, key=lambda ks: -ks[1])
        if plan.translated > 0 and translated:
            merged = dict(keyword)
            for key, score in translated:
                if other(key):
                    merged[key] = max(merged.get(key, 0.0), plan.translated * score)
            kw = sorted(merged.items(), key=lambda ks: -ks[1])
    pair = [(plan.dense, dense), (plan.keyword, kw)]
    return fuse(pair, cfg.fusion, cfg.rrf_k, cfg.fusion_scale, depth)


def ranked(fused: dict[K, float]) -> list[K]:
    """Keys by fused score, best first (ties by key, so the order is stable)."""
    return sorted(fused, key=lambda key: (-fused[key], str(key)))


@dataclass(frozen=True)
class _Subset:
    """Ids and unit vectors (one row each) of the chunks one group set may read."""

    ids: list[str]
    matrix: np.ndarray


@dataclass
class SearchStats:
    """What one search did, for logs and benchmarks (no query text)."""

    dense_ms: float = 0.0
    keyword_ms: float = 0.0
    translated_ms: float = 0.0
    fetch_ms: float = 0.0
    dense_path: str = ""
    counts: dict[str, int] = field(default_factory=dict)


class Retriever:
    """Dense + BM25 search with access control and score fusion."""

    def __init__(
        self,
        settings: RetrievalSettings,
        embedder: Embedder,
        store: ChromaStore,
        keyword: KeywordIndex | None,
        *,
        languages: Collection[str] = ("en",),
        cache: Path | None = None,
    ) -> None:
        """``languages``: those the embedder's vectors read (``embedding.languages``);
        ``cache``: a folder for the parsed dictionary (:func:`rag.index.dictionary.dictionary`)."""
        self.settings = settings
        self._languages = frozenset(languages)
        self._embedder = embedder
        self._store = store
        self._keyword = keyword
        self._subsets: OrderedDict[tuple[frozenset[str], str], _Subset] = OrderedDict()
        self._subsets_lock = threading.Lock()
        self._no_dictionary = False
        self._cache = cache

    @property
    def store(self) -> ChromaStore:
        return self._store

    @property
    def keyword_index(self) -> KeywordIndex | None:
        return self._keyword

    def embed_query(self, query: str) -> list[float]:
        """``query``'s vector as :meth:`search` computes it: a caller that also needs it (the
        answer service's curated and cached answers) computes it once and passes it."""
        return list(self._embedder.embed_query(query))

    def search(
        self,
        query: str,
        principal: Principal | None,
        k: int | None = None,
        *,
        filters: Filters | None = None,
        mode: Mode | None = None,
        vector: Sequence[float] | None = None,
        stats: SearchStats | None = None,
    ) -> list[Hit]:
        """The best ``k`` readable chunks for ``query`` (``principal`` None: no restriction)."""
        cfg = self.settings
        k = k or cfg.top_k
        mode = mode or cfg.mode
        filters = filters or Filters()
        stats = stats if stats is not None else SearchStats()
        groups = None if principal is None else principal.groups
        if groups is not None and not groups:
            return []
        if self._keyword is None and mode != "dense":
            mode = "dense"
        n = max(cfg.candidates, k)
        dense: list[Hit] = []
        if mode in ("hybrid", "dense"):
            started = time.perf_counter()
            if vector is None:
                vector = self._embedder.embed_query(query)
            dense = self.dense(vector, n, groups, filters, stats, text=False)
            stats.dense_ms = (time.perf_counter() - started) * 1000
        keyword: list[tuple[str, float]] = []
        if mode in ("hybrid", "keyword") and self._keyword is not None:
            started = time.perf_counter()
            keyword = self._keyword.search(
                query, n, groups=groups, doc_ids=filters.doc_ids, sources=filters.sources
            )
            stats.keyword_ms = (time.perf_counter() - started) * 1000
        plan = weights(cfg, query, self._languages)
        translated: list[tuple[str, float]] = []
        if (
            mode == "hybrid"
            and translates(cfg, plan)
            and self._keyword is not None
            and self._keyword.holds_other_than(plan.language)
        ):
            started = time.perf_counter()
            book = self._book()
            if book is not None:
                translated = self._keyword.search_translated(
                    query, book, n, groups=groups, doc_ids=filters.doc_ids, sources=filters.sources
                )
            stats.translated_ms = (time.perf_counter() - started) * 1000
        stats.counts = {"dense": len(dense), "keyword": len(keyword), "translated": len(translated)}
        order = self._fuse(dense, keyword, mode, n, plan, translated)
        # Texts are read for the hits returned only; each is checked once more against the
        # store's current metadata.
        started = time.perf_counter()
        hits = self._materialize(order, k, groups, filters)
        stats.fetch_ms = (time.perf_counter() - started) * 1000
        return hits[:k]

    def dense(
        self,
        vector: Sequence[float],
        n: int,
        groups: Collection[str] | None,
        filters: Filters,
        stats: SearchStats | None = None,
        *,
        text: bool = True,
    ) -> list[Hit]:
        """Nearest readable chunks by one of the paths in the module docstring
        (``text=False``: chunk texts left empty)."""
        clauses = filters.where()
        if groups is None:
            where = None if not clauses else clauses[0] if len(clauses) == 1 else {"$and": clauses}
            return self._mark(self._store.query_where(vector, n, where, text=text), stats, "plain")
        share = 0.0
        if self._keyword is not None and filters.empty:
            share = self._keyword.permitted_fraction(groups)
        if share >= self.settings.overfetch_min_share and share > 0:
            fetch = min(MAX_OVERFETCH, max(n + 10, math.ceil(n / share * 1.5)))
            if not text and self._keyword is not None:
                # Ids and scores only; groups from the keyword index (in memory). Ids it does
                # not know yet stay in: they are checked when read (Retriever._materialize).
                scored = self._store.query_ids(vector, fetch)
                known = self._keyword.readable([cid for cid, _ in scored], groups)
                light = [
                    Hit(_placeholder(cid), score)
                    for (cid, score), ok in zip(scored, known, strict=True)
                    if ok is not False
                ]
                if len(light) >= n or len(scored) < fetch:
                    return self._mark(light[:n], stats, "overfetch")
            found = self._store.query_where(vector, fetch, None, text=text)
            kept = [h for h in found if readable(h.chunk, groups)]
            if len(kept) >= n or len(found) < fetch:
                return self._mark(kept[:n], stats, "overfetch")
        elif (
            self._keyword is not None
            and filters.empty
            and share * len(self._keyword) <= self.settings.exact_max_chunks
        ):
            exact = self._exact(vector, n, groups, text=text)
            if exact is not None:
                return self._mark(exact, stats, "exact")
        acl = acl_where(sorted(groups))
        where = acl if not clauses else {"$and": [acl, *clauses]}
        return self._mark(self._store.query_where(vector, n, where, text=text), stats, "filter")

    def _subset(self, groups: Collection[str]) -> _Subset | None:
        """The readable chunks' vectors for ``groups``, cached per index generation."""
        generation = None if self._keyword is None else self._keyword.generation
        if generation is None:
            return None
        key = (frozenset(groups), generation)
        with self._subsets_lock:
            subset = self._subsets.get(key)
            if subset is not None:
                self._subsets.move_to_end(key)
                return subset
        ids, vectors = self._store.vectors_where(acl_where(sorted(groups)))
        # Groups that read nothing get an empty matrix (numpy cannot reshape 0 rows to -1).
        matrix = np.asarray(vectors, dtype=np.float32).reshape(len(ids), -1 if ids else 1)
        # Unit rows: the dot product is then the cosine similarity Chroma reports.
        matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
        subset = _Subset(ids, matrix)
        with self._subsets_lock:
            for old in [k for k in self._subsets if k[1] != generation]:
                del self._subsets[old]
            self._subsets[key] = subset
            while len(self._subsets) > EXACT_CACHE_SETS:
                self._subsets.popitem(last=False)
        return subset

    def _exact(
        self, vector: Sequence[float], n: int, groups: Collection[str], *, text: bool = True
    ) -> list[Hit] | None:
        """Exhaustive search among the chunks ``groups`` may read (None: no index yet)."""
        subset = self._subset(groups)
        if subset is None:
            return None
        if not subset.ids:
            return []
        query = np.asarray(vector, dtype=np.float32)
        sims = subset.matrix @ (query / max(float(np.linalg.norm(query)), 1e-12))
        top = np.argpartition(-sims, n - 1)[:n] if n < len(sims) else np.arange(len(sims))
        top = top[np.argsort(-sims[top], kind="stable")]
        if not text:  # checked against the store when read (Retriever._materialize)
            return [Hit(_placeholder(subset.ids[i]), float(sims[i])) for i in top]
        score = {subset.ids[i]: float(sims[i]) for i in top}
        chunks = self._store.get_chunks([subset.ids[i] for i in top], text=True)
        # Read back from the store: a chunk whose groups changed since the vectors were
        # cached is dropped here, never shown.
        return [Hit(c, score[c.chunk_id]) for c in chunks if readable(c, groups)]

    @staticmethod
    def _mark(hits: list[Hit], stats: SearchStats | None, path: str) -> list[Hit]:
        if stats is not None:
            stats.dense_path = path
        return [replace(h, dense_score=h.score) for h in hits]

    def prepare(self) -> None:
        """Load what the first question would otherwise wait for: the dictionary of
        cross-language keyword search, when the index holds more than one language."""
        if (
            self._keyword is None
            or self.settings.fusion != "convex"
            or not any(w.translated > 0 for w in self.settings.language_weights.values())
        ):
            return
        if self._keyword.holds_other_than("en") and self._keyword.holds_other_than("zh"):
            self._book()

    def _book(self) -> Dictionary | None:
        """The dictionary of cross-language keyword search; None (logged once) when it is
        missing: search goes on without it."""
        if self._no_dictionary:
            return None
        try:
            return dictionary(self._cache)
        except AssetError as exc:
            self._no_dictionary = True
            log.error("cross-language keyword search is off: %s", exc)
            return None

    def _fuse(
        self,
        dense: list[Hit],
        keyword: list[tuple[str, float]],
        mode: Mode,
        depth: int,
        plan: Weights,
        translated: list[tuple[str, float]],
    ) -> list[Hit]:
        """Candidates best first; keyword-only ones as placeholders (read by id later)."""
        if mode == "dense":
            return dense
        by_id = {h.chunk.chunk_id: h for h in dense}
        if mode == "keyword":
            return [Hit(_placeholder(cid), s, keyword_score=s) for cid, s in keyword]
        scored = [(h.chunk.chunk_id, h.score) for h in dense]
        langs: dict[str, str] = {}
        if language_aware(self.settings, plan) and self._keyword is not None:
            langs = self._keyword.languages([cid for cid, _ in (*scored, *keyword, *translated)])
        fused = fuse_hybrid(scored, keyword, plan, self.settings, depth, langs, translated)
        kw_score = dict(keyword)
        out: list[Hit] = []
        for cid in ranked(fused):
            hit = by_id.get(cid)
            if hit is None:
                out.append(Hit(_placeholder(cid), fused[cid], keyword_score=kw_score.get(cid)))
            else:
                out.append(replace(hit, score=fused[cid], keyword_score=kw_score.get(cid)))
        return out

    def _materialize(
        self,
        order: list[Hit],
        want: int,
        groups: Collection[str] | None,
        filters: Filters,
    ) -> list[Hit]:
        """The first ``want`` candidates that are still readable, read whole from the store."""
        out: list[Hit] = []
        start = 0
        while len(out) < want and start < len(order):
            part = order[start : start + max(want - len(out), 1) + 2]
            start += len(part)
            chunks = {
                c.chunk_id: c for c in self._store.get_chunks([h.chunk.chunk_id for h in part])
            }
            for hit in part:
                chunk = chunks.get(hit.chunk.chunk_id)
                if chunk is not None and readable(chunk, groups) and filters.allows(chunk):
                    out.append(replace(hit, chunk=chunk))
        return out[:want]


def _placeholder(chunk_id: str) -> Chunk:
    """A chunk known by id only (read from the store if it is returned). No groups: it is
    readable by nobody, should it ever escape unread."""
    return Chunk(chunk_id=chunk_id, doc_id="", text="", source="", title="", groups=())


def keyword_folder(store_path: Path, collection: str, configured: Path | None) -> Path:
    """Where the BM25 index lives: configured, else ``keyword/<collection>`` beside the store."""
    if configured is not None:
        return configured
    return store_path.parent / "keyword" / collection
