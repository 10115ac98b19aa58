"""BM25 keyword search over the stored chunks.

The index is kept in two layers in one folder:

- ``terms.sqlite``: one row per chunk (id, document, source, groups, position in its
  document, analysed heading terms, analysed text terms), written at once by
  :meth:`KeywordIndex.on_upsert` / :meth:`KeywordIndex.on_delete` (the ingest pipeline's
  :class:`rag.seams.IndexListener` calls),
- ``index-<generation>/``: the term frequencies by term (``start``/``rows``/``tf``
  ``.npy``, compressed columns), each row's length, ``vocab.json`` and ``meta.json`` (chunk
  ids, documents, sources, groups and languages in index order; a row's language is
  :func:`rag.index.lexical.language` of its terms, for fusion by language), rebuilt from
  the table by :meth:`KeywordIndex.commit` when anything changed, written to a new folder
  and switched to by an atomic rename of the ``CURRENT`` pointer. Readers memory-map it and notice a
  newer generation on their next search, so a server sees what another process ingested
  without restarting.

BM25 reads each chunk as a window: its title and heading, its own text counted twice, and
the text of ``window`` neighbouring chunks of the same document and access groups each side
(the text context packing shows around a hit). A term in the chunk itself outweighs one its
neighbour holds, so the chunk that has the words ranks first, and a term split across a
chunk boundary still matches. Windows are built when the index is rebuilt from the table,
so an update or delete of one chunk changes its neighbours' windows too. Chosen on
SciFact's train queries (docs/BENCHMARKS.md): with 128-token chunks, fused nDCG@10 0.749 against
0.739 for 200-token chunks read alone.

A crash between the store write and the listener call leaves the table behind the store:
:meth:`KeywordIndex.reconcile` (run when the service starts) adds the store's missing chunks,
drops chunks the store no longer has, and rebuilds.

Access control happens before ranking, and inside the scoring itself: the BM25 statistics
(number of chunks, average window length, each term's document frequency) are computed at
query time over the chunks the caller's groups may read, so a score (and so a ranking) never
depends on text the caller may not read (issue 19: with statistics over every group, the
score of a probe word told whether it also occurs in HR's documents). The per-term work is a
slice of the term's postings; the statistics of a group set are cached per index
generation. Unreadable chunks (and chunks outside any ``doc_id``/``source`` filter) score 0
and never compete for the top ``k``. The scores are Lucene's BM25 variant (what bm25s
computed before): ``idf = ln(1 + (N - df + 0.5) / (df + 0.5))`` times
``tf / (tf + k1 (1 - b + b len / avg))``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rag.errors import StoreError
from rag.index.dictionary import Dictionary, translate
from rag.index.lexical import analyze, language
from rag.migrations import Migration, add_columns, migrate_sqlite
from rag.types import Chunk

log = logging.getLogger(__name__)

CURRENT = "CURRENT"
MIGRATIONS = [
    Migration(
        1,
        "chunks (analysed terms), state",
        """
        CREATE TABLE IF NOT EXISTS chunks (
            chunk_id TEXT PRIMARY KEY,
            doc_id   TEXT NOT NULL,
            source   TEXT NOT NULL,
            groups   TEXT NOT NULL,
            terms    TEXT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL)
        """,
    ),
    # Windows: a row from before them keeps position -1 and still works alone; reconcile()
    # re-reads such rows from the store to give them windows.
    Migration(
        2,
        "chunks.position, chunks.head (windows)",
        add_columns(
            "chunks",
            {"position": "INTEGER NOT NULL DEFAULT -1", "head": "TEXT NOT NULL DEFAULT ''"},
        ),
    ),
]
_SEP = "|"
_OWN = 2
"""How many times a window counts the chunk's own text (neighbours count once)."""


def index_head(chunk: Chunk) -> str:
    """The title and heading path BM25 reads with a chunk (titles carry much of a topic)."""
    return chunk.title if not chunk.section else f"{chunk.title}\n{chunk.section}"


def windows(rows: Sequence[tuple[str, int, str, str, str]], window: int) -> list[list[str]]:
    """Per row ``(doc_id, position, groups, head terms, text terms)``: the window's terms,
    i.e. the row's head, its own text twice (so the chunk that holds a term outranks the
    neighbours that merely see it) and the text of the rows ``window`` positions either side
    in its document with the same access groups (a reader's ranking never depends on text
    they may not read). A row at position -1 (a table written before windows) stands alone."""
    text = {(d, p, g): t for d, p, g, _, t in rows if p >= 0}
    out: list[list[str]] = []
    for doc_id, position, groups, head, terms in rows:
        if position < 0 or window == 0:
            out.append(f"{head} {terms}".split())
            continue
        parts = [head]
        for at in range(position - window, position + window + 1):
            if at == position:
                parts += [terms] * _OWN
            elif part := text.get((doc_id, at, groups)):
                parts.append(part)
        out.append(" ".join(parts).split())
    return out


@dataclass
class _Postings:
    """Term frequencies by term (compressed columns): the rows holding term ``t`` are
    ``rows[start[t]:start[t + 1]]`` with counts ``tf[...]``; ``length`` per row."""

    vocab: dict[str, int]
    start: np.ndarray
    rows: np.ndarray
    tf: np.ndarray
    length: np.ndarray


@dataclass
class _Snapshot:
    generation: str
    postings: _Postings | None
    ids: list[str]
    doc_ids: np.ndarray
    sources: np.ndarray
    groups: list[frozenset[str]]
    langs: list[str] | None = None
    """Each row's language (:func:`rag.index.lexical.language` of its terms); None in an
    index published before languages were kept (the next commit adds them)."""
    masks: dict[frozenset[str], np.ndarray] = field(default_factory=dict)
    stats: dict[frozenset[str] | None, tuple[float, float]] = field(default_factory=dict)
    group_rows: dict[str, np.ndarray] | None = None
    row_of: dict[str, int] | None = None
    lang_set: frozenset[str] | None = None

    def languages(self) -> frozenset[str]:
        if self.lang_set is None:
            self.lang_set = frozenset(self.langs or ())
        return self.lang_set

    def rows(self) -> dict[str, int]:
        if self.row_of is None:
            self.row_of = {chunk_id: i for i, chunk_id in enumerate(self.ids)}
        return self.row_of

    def group_mask(self, groups: frozenset[str]) -> np.ndarray:
        cached = self.masks.get(groups)
        if cached is not None:
            return cached
        if self.group_rows is None:
            rows: dict[str, list[int]] = {}
            for i, gs in enumerate(self.groups):
                for g in gs:
                    rows.setdefault(g, []).append(i)
            self.group_rows = {g: np.asarray(r, dtype=np.int64) for g, r in rows.items()}
        mask = np.zeros(len(self.ids), dtype=np.float32)
        for g in groups:
            rows_g = self.group_rows.get(g)
            if rows_g is not None:
                mask[rows_g] = 1.0
        if len(self.masks) > 256:
            self.masks.clear()
        self.masks[groups] = mask
        return mask

    def collection_stats(
        self, groups: frozenset[str] | None, mask: np.ndarray | None
    ) -> tuple[float, float]:
        """``(N, average length)`` over the rows ``groups`` may read (all rows for None)."""
        cached = self.stats.get(groups)
        if cached is not None:
            return cached
        assert self.postings is not None
        length = self.postings.length
        if mask is None:
            n, total = float(len(length)), float(length.sum())
        else:
            n, total = float(mask.sum()), float((length * mask).sum())
        found = (n, total / n if n else 1.0)
        if len(self.stats) > 256:
            self.stats.clear()
        self.stats[groups] = found
        return found


class KeywordIndex:
    """A persistent BM25 index that follows the vector store; see the module docstring."""

    def __init__(
        self,
        folder: Path,
        *,
        k1: float = 1.2,
        b: float = 0.75,
        stemming: bool = True,
        window: int = 1,
        isolate: bool = False,
    ) -> None:
        """``isolate``: rebuild in a worker process (a running service; see
        :func:`build_generation`)."""
        self._folder = folder
        self._isolate = isolate
        self._workers: ProcessPoolExecutor | None = None
        self._k1 = k1
        self._b = b
        self._stemming = stemming
        self._window = window
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._dirty = False
        self._snapshot: _Snapshot | None = None
        self._checked_at = 0.0

    # -- the table (the ingest side) -------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                self._folder.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(
                    self._folder / "terms.sqlite", check_same_thread=False, timeout=30
                )
                migrate_sqlite(db, "keyword", MIGRATIONS)
            except (OSError, sqlite3.Error) as exc:
                raise StoreError(
                    f"Cannot open the keyword index at {self._folder} ({exc}). Check the "
                    "folder is writable, or delete it to have it rebuilt from the store."
                ) from exc
            self._db = db
        return self._db

    def _state(self, key: str) -> str | None:
        row = self._conn().execute("SELECT value FROM state WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_state(self, key: str, value: str) -> None:
        self._conn().execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (key, value))

    def on_upsert(self, chunks: Sequence[Chunk]) -> None:
        if not chunks:
            return
        rows = [
            (
                c.chunk_id,
                c.doc_id,
                c.source,
                _SEP.join(c.groups),
                " ".join(analyze(c.text, stemming=self._stemming)),
                c.index,
                " ".join(analyze(index_head(c), stemming=self._stemming)),
            )
            for c in chunks
        ]
        with self._lock, self._conn() as db:
            db.executemany(
                "INSERT OR REPLACE INTO chunks "
                "(chunk_id, doc_id, source, groups, terms, position, head) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            self._set_state("dirty", "1")
            self._dirty = True

    def on_delete(self, chunk_ids: Sequence[str]) -> None:
        if not chunk_ids:
            return
        with self._lock, self._conn() as db:
            db.executemany("DELETE FROM chunks WHERE chunk_id=?", [(i,) for i in chunk_ids])
            self._set_state("dirty", "1")
            self._dirty = True

    def table_ids(self) -> set[str]:
        with self._lock:
            return {str(r[0]) for r in self._conn().execute("SELECT chunk_id FROM chunks")}

    def commit(self) -> None:
        """Rebuild and publish the index when the table changed."""
        self.publish()

    def publish(self) -> bool:
        """Rebuild and publish the index when the table changed; True when it did."""
        params = json.dumps(
            {
                "k1": self._k1,
                "b": self._b,
                "stemming": self._stemming,
                "window": self._window,
                "own": _OWN,
                "format": "postings",
            }
        )
        with self._lock:
            unchanged = not self._dirty and self._state("dirty") != "1"
            if unchanged and self._current() is not None and self._state("params") == params:
                return False
            self._rebuild()
            with self._conn() as db:
                db.execute("DELETE FROM state WHERE key='dirty'")
                self._set_state("params", params)
                self._set_state("stemming", str(self._stemming))
            self._dirty = False
            return True

    def reconcile(
        self, store_ids: Collection[str], fetch: Callable[[Sequence[str]], Iterable[Chunk]]
    ) -> tuple[int, int]:
        """Heal after a crash: add chunks the store has and the table lacks, drop the rest.

        Returns ``(added, removed)``; rebuilds the index when anything changed.
        """
        with self._lock:
            if self._state("stemming") not in (None, str(self._stemming)) or self.unplaced():
                self._reanalyze()
            have = self.table_ids()
            wanted = set(store_ids)
            missing = sorted(wanted - have)
            extra = sorted(have - wanted)
            for start in range(0, len(missing), 1000):
                self.on_upsert(list(fetch(missing[start : start + 1000])))
            self.on_delete(extra)
            self.commit()
            if missing or extra:
                log.warning(
                    "keyword index reconciled with the store: %d added, %d removed",
                    len(missing),
                    len(extra),
                )
            return len(missing), len(extra)

    def unplaced(self) -> bool:
        """Whether the table holds rows written before windows (no position in a document)."""
        found = self._conn().execute("SELECT 1 FROM chunks WHERE position < 0 LIMIT 1")
        return found.fetchone() is not None

    def _reanalyze(self) -> None:
        """Terms were analysed with other settings (or before windows): analysing needs the
        text, which the table does not keep, so the table is emptied and refilled from the
        store."""
        with self._conn() as db:
            db.execute("DELETE FROM chunks")
        log.warning("keyword analysis settings changed: the index is rebuilt from the store")

    def _rebuild(self) -> None:
        if self._isolate:
            try:
                generation = self._pool().submit(build_generation, self._folder, self._window)
                self._published(generation.result())
                return
            except (BrokenProcessPool, OSError, RuntimeError) as exc:
                # A worker that died (out of memory, killed): build here instead, once.
                log.warning("keyword rebuild worker failed (%s): rebuilding in-process", exc)
                self._stop_pool()
        self._published(build_generation(self._folder, self._window, self._conn()))

    def _published(self, built: tuple[str, int, float]) -> None:
        _, count, seconds = built
        self._snapshot = None
        if self._isolate:
            # Load the new generation here, off the search path (searches keep the old one
            # until it is in).
            self._checked_at = 0.0
            self._load()
        log.info("keyword index rebuilt: %d chunks in %.0f ms", count, seconds * 1000)

    def _pool(self) -> ProcessPoolExecutor:
        if self._workers is None:
            import multiprocessing

            # spawn, not fork: the serving process has threads (and an engine) a fork would copy.
            self._workers = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        return self._workers

    def _stop_pool(self) -> None:
        if self._workers is not None:
            self._workers.shutdown(wait=False, cancel_futures=True)
            self._workers = None

    # -- the read side -----------------------------------------------------------------------

    def _current(self) -> str | None:
        try:
            return (self._folder / CURRENT).read_text(encoding="utf-8").strip() or None
        except OSError:
            return None

    def _load(self) -> _Snapshot | None:
        """The published snapshot, reloaded when another process published a newer one."""
        snap = self._snapshot
        now = time.monotonic()
        if snap is not None and now - self._checked_at < 0.5:
            return snap
        self._checked_at = now
        generation = self._current()
        if generation is None:
            return None
        if snap is not None and snap.generation == generation:
            return snap
        with self._lock:
            if self._snapshot is not None and self._snapshot.generation == generation:
                return self._snapshot
            folder = self._folder / generation
            try:
                meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
                postings = _read_postings(folder) if meta["ids"] else None
            except (OSError, ValueError, KeyError) as exc:
                raise StoreError(
                    f"The keyword index at {folder} is unreadable ({exc}). Delete "
                    f"{self._folder} and restart: it is rebuilt from the store."
                ) from exc
            self._snapshot = _Snapshot(
                generation=generation,
                postings=postings,
                ids=list(meta["ids"]),
                doc_ids=np.asarray(meta["doc_ids"], dtype=object),
                sources=np.asarray(meta["sources"], dtype=object),
                groups=[frozenset(g for g in s.split(_SEP) if g) for s in meta["groups"]],
                langs=meta.get("langs"),
            )
            return self._snapshot

    @property
    def generation(self) -> str | None:
        """The published index version (changes with every rebuild)."""
        snap = self._load()
        return None if snap is None else snap.generation

    def __len__(self) -> int:
        snap = self._load()
        return 0 if snap is None else len(snap.ids)

    def permitted_fraction(self, groups: Collection[str] | None) -> float:
        """Share of indexed chunks the groups may read (1.0 with no restriction)."""
        snap = self._load()
        if snap is None or not snap.ids or groups is None:
            return 1.0
        return float(snap.group_mask(frozenset(groups)).mean())

    def readable(self, chunk_ids: Sequence[str], groups: Collection[str]) -> list[bool | None]:
        """Per id: whether ``groups`` may read it by the published index, None when the index
        does not know the id (newer than the last commit: ask the store)."""
        snap = self._load()
        if snap is None:
            return [None] * len(chunk_ids)
        mask = snap.group_mask(frozenset(groups))
        rows = snap.rows()
        out: list[bool | None] = []
        for chunk_id in chunk_ids:
            row = rows.get(chunk_id)
            out.append(None if row is None else bool(mask[row] > 0))
        return out

    def languages(self, chunk_ids: Iterable[str]) -> dict[str, str]:
        """The language of each known chunk (``"en"``/``"zh"``); unknown ids are left out."""
        snap = self._load()
        if snap is None or snap.langs is None:
            return {}
        rows, langs = snap.rows(), snap.langs
        return {cid: langs[row] for cid in chunk_ids if (row := rows.get(cid)) is not None}

    def holds_other_than(self, lang: str) -> bool:
        """Whether any indexed chunk is in another language than ``lang`` (only then can a
        translated question find anything BM25 did not)."""
        snap = self._load()
        return snap is not None and bool(snap.languages() - {lang})

    def term_shares(
        self, terms: Iterable[str], groups: Collection[str] | None = None
    ) -> dict[str, float]:
        """Per analysed term the index knows: the share of the passages ``groups`` may read
        that hold it (0 to 1; a rare term names a thing). Unknown terms are left out, and
        so is everything when nothing is indexed."""
        snap = self._load()
        if snap is None or snap.postings is None:
            return {}
        post = snap.postings
        readable = None if groups is None else snap.group_mask(frozenset(groups))
        n = len(snap.ids) if readable is None else float(readable.sum())
        out: dict[str, float] = {}
        for term in terms:
            at = post.vocab.get(term)
            if at is None:
                continue
            rows = np.asarray(post.rows[int(post.start[at]) : int(post.start[at + 1])])
            df = len(rows) if readable is None else float((readable[rows] > 0).sum())
            out[term] = df / n if n else 0.0
        return out

    def search(
        self,
        query: str,
        k: int,
        *,
        groups: Collection[str] | None = None,
        doc_ids: Collection[str] | None = None,
        sources: Collection[str] | None = None,
    ) -> list[tuple[str, float]]:
        """Best ``k`` chunk ids with BM25 scores, only among chunks the filters allow."""
        terms: dict[str, float] = {}
        for term in analyze(query, stemming=self._stemming):
            terms[term] = terms.get(term, 0.0) + 1.0
        return self.search_terms(terms, k, groups=groups, doc_ids=doc_ids, sources=sources)

    def knows(self) -> Callable[[str], bool]:
        """Whether a BM25 term occurs in the published index (a query translation keeps
        only those): one snapshot's vocabulary, so take it once per question."""
        snap = self._load()
        if snap is None or snap.postings is None:
            return lambda term: False
        return snap.postings.vocab.__contains__

    def search_terms(
        self,
        terms: Mapping[str, float],
        k: int,
        *,
        groups: Collection[str] | None = None,
        doc_ids: Collection[str] | None = None,
        sources: Collection[str] | None = None,
    ) -> list[tuple[str, float]]:
        """:meth:`search` for analysed terms with weights (a term's BM25 score counts
        ``weight`` times: a query's repeated word counts once per occurrence)."""
        snap = self._load()
        if snap is None or snap.postings is None or k < 1:
            return []
        post = snap.postings
        weighted = [(post.vocab[t], w) for t, w in terms.items() if t in post.vocab and w > 0]
        if not weighted:
            return []
        key = None if groups is None else frozenset(groups)
        readable = None if key is None else snap.group_mask(key)
        mask = readable
        if doc_ids is not None:
            allow = np.isin(snap.doc_ids, list(doc_ids)).astype(np.float32)
            mask = allow if mask is None else mask * allow
        if sources is not None:
            allow = np.isin(snap.sources, list(sources)).astype(np.float32)
            mask = allow if mask is None else mask * allow
        if mask is not None and not mask.any():
            return []
        scores = self._scores(snap, weighted, key, readable)
        if mask is not None:
            scores = scores * mask
        # Top k among the chunks that match at all: bm25s' own top-k partitions the whole
        # array, and with most scores 0 that took ~25 ms at 100K chunks.
        matching = np.flatnonzero(scores > 0)
        if len(matching) > k:
            matching = matching[np.argpartition(-scores[matching], k - 1)[:k]]
        top = matching[np.argsort(-scores[matching], kind="stable")]
        return [(snap.ids[int(i)], float(scores[i])) for i in top]

    def search_translated(
        self,
        query: str,
        book: Dictionary,
        k: int,
        *,
        groups: Collection[str] | None = None,
        doc_ids: Collection[str] | None = None,
        sources: Collection[str] | None = None,
    ) -> list[tuple[str, float]]:
        """:meth:`search_terms` for ``query`` translated word by word into the other
        language's terms this index holds (:func:`rag.index.dictionary.translate`); empty
        when nothing translates."""
        terms = translate(query, self.knows(), book)
        if not terms:
            return []
        return self.search_terms(terms, k, groups=groups, doc_ids=doc_ids, sources=sources)

    def _scores(
        self,
        snap: _Snapshot,
        terms: Sequence[tuple[int, float]],
        key: frozenset[str] | None,
        readable: np.ndarray | None,
    ) -> np.ndarray:
        """BM25 (Lucene's variant, as bm25s scores it) with every statistic taken over the
        rows ``readable`` allows: the number of rows, their average length and each term's
        document frequency. A chunk the caller may not read changes no score they see."""
        post = snap.postings
        assert post is not None
        n, avg = snap.collection_stats(key, readable)
        scores = np.zeros(len(snap.ids), dtype=np.float64)
        if n == 0:
            return scores
        norm = self._k1 * ((1 - self._b) + self._b * np.asarray(post.length) / avg)
        for term, weight in terms:
            lo, hi = int(post.start[term]), int(post.start[term + 1])
            rows = np.asarray(post.rows[lo:hi])
            tf = np.asarray(post.tf[lo:hi], dtype=np.float64)
            if readable is not None:
                keep = readable[rows] > 0
                rows, tf = rows[keep], tf[keep]
            df = len(rows)
            if df == 0:
                continue
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            scores[rows] += weight * idf * tf / (norm[rows] + tf)
        return scores

    def close(self) -> None:
        with self._lock:
            self._stop_pool()
            if self._db is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._db.close()
                self._db = None


def build_generation(
    folder: Path, window: int, conn: sqlite3.Connection | None = None
) -> tuple[str, int, float]:
    """Build an index generation from the table in ``folder`` and publish it (switch
    ``CURRENT`` to it, remove older ones): ``(generation, chunks, seconds)``. Runs in the
    writer's process, or in a worker process of its own (``KeywordIndex(isolate=True)``,
    the running service: the build is pure Python and numpy for seconds at 100K chunks, and
    in another process it never holds the searching threads' GIL)."""
    started = time.perf_counter()
    db = conn or sqlite3.connect(folder / "terms.sqlite", timeout=30)
    try:
        rows = db.execute(
            "SELECT chunk_id, doc_id, source, groups, position, head, terms FROM chunks "
            "ORDER BY chunk_id"
        ).fetchall()
    finally:
        if conn is None:
            db.close()
    ids: list[str] = []
    doc_ids: list[str] = []
    sources: list[str] = []
    groups: list[str] = []
    langs: list[str] = []
    texts: list[tuple[str, int, str, str, str]] = []
    for chunk_id, doc_id, source, grp, position, head, terms in rows:
        ids.append(chunk_id)
        doc_ids.append(doc_id)
        sources.append(source)
        groups.append(grp)
        langs.append(language(terms or head))
        texts.append((doc_id, int(position), grp, head, terms))
    del rows
    corpus = windows(texts, window)
    del texts
    generation = f"index-{time.time_ns():x}-{uuid.uuid4().hex[:6]}"
    target = folder / generation
    tmp = folder / f".{generation}.tmp"
    tmp.mkdir(parents=True)
    if ids:
        _write_postings(tmp, corpus)
    del corpus
    meta = {"ids": ids, "doc_ids": doc_ids, "sources": sources, "groups": groups, "langs": langs}
    (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    os.replace(tmp, target)
    pointer = folder / f".{CURRENT}.tmp"
    pointer.write_text(generation, encoding="utf-8")
    os.replace(pointer, folder / CURRENT)
    for stale in folder.iterdir():
        if (
            stale.is_dir()
            and stale.name != generation
            and (stale.name.startswith("index-") or stale.name.endswith(".tmp"))
        ):
            shutil.rmtree(stale, ignore_errors=True)
    return generation, len(ids), time.perf_counter() - started


_POSTINGS = ("start", "rows", "tf", "length")


def _write_postings(folder: Path, corpus: Sequence[Sequence[str]]) -> None:
    """Term frequencies per (term, row) in compressed columns, and each row's length."""
    vocab: dict[str, int] = {}
    term_ids: list[int] = []
    row_ids: list[int] = []
    length = np.zeros(len(corpus), dtype=np.float32)
    for row, words in enumerate(corpus):
        length[row] = len(words)
        for word in words:
            term_ids.append(vocab.setdefault(word, len(vocab)))
        row_ids.extend([row] * len(words))
    packed = (np.asarray(term_ids, dtype=np.int64) << 32) | np.asarray(row_ids, dtype=np.int64)
    pairs, counts = np.unique(packed, return_counts=True)
    terms = pairs >> 32
    start = np.zeros(len(vocab) + 1, dtype=np.int64)
    np.cumsum(np.bincount(terms, minlength=len(vocab)), out=start[1:])
    arrays = {
        "start": start,
        "rows": (pairs & 0xFFFFFFFF).astype(np.int32),
        "tf": counts.astype(np.float32),
        "length": length,
    }
    for name in _POSTINGS:
        np.save(folder / f"{name}.npy", arrays[name])
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")


def _read_postings(folder: Path) -> _Postings:
    arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in _POSTINGS}
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    return _Postings(vocab=vocab, **arrays)
