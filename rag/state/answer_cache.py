"""The answer cache's rows, in the state database (shared by replicas, kept across restarts).

One row per cached answer: its ``scope`` (a hash of the caller's exact group set and the
store collection: :func:`scope_of`), the normalized question, its language, its embedding
(base64 of little-endian float32: 1.5 KiB for 384 dimensions), the answer as JSON (text,
citations, sentences: what rebuilds the response), the versions of the chunks it cited as
JSON, when it was made, and how often and when last it was served. The question and answer
text are kept (that is what a cache is); rows older than ``cache.ttl_hours`` are deleted by
:meth:`AnswerCacheStore.purge` and each scope keeps its newest ``max_entries_per_scope``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import time
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from rag.migrations import Migration
from rag.state.db import StateDB

MIGRATIONS = [
    Migration(
        1,
        "answer_cache",
        """CREATE TABLE IF NOT EXISTS answer_cache (
            id          VARCHAR(32) PRIMARY KEY,
            scope       VARCHAR(64) NOT NULL,
            question    TEXT NOT NULL,
            lang        VARCHAR(8) NOT NULL,
            vector      TEXT NOT NULL,
            answer      TEXT NOT NULL,
            versions    TEXT NOT NULL,
            created_at  DOUBLE PRECISION NOT NULL,
            hits        INTEGER NOT NULL DEFAULT 0,
            last_hit_at DOUBLE PRECISION
        );
        CREATE INDEX IF NOT EXISTS answer_cache_scope ON answer_cache (scope, created_at);
        CREATE INDEX IF NOT EXISTS answer_cache_created ON answer_cache (created_at)""",
    ),
]
_COLUMNS = (
    "id",
    "scope",
    "question",
    "lang",
    "vector",
    "answer",
    "versions",
    "created_at",
    "hits",
    "last_hit_at",
)


def scope_of(groups: Collection[str], collection: str, generation: str = "") -> str:
    """The cache scope of a caller: a SHA-256 of the exact, sorted group set, the store
    collection and ``generation`` (what else an answer depends on: the model, the answer
    mode). A superset or a subset of the groups is another scope."""
    key = json.dumps([sorted(set(groups)), collection, generation], ensure_ascii=False)
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def pack_vector(vector: Sequence[float]) -> str:
    """An embedding as base64 of little-endian float32."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def unpack_vector(text: str) -> tuple[float, ...]:
    raw = base64.b64decode(text)
    return struct.unpack(f"<{len(raw) // 4}f", raw)


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One cached answer. ``answer`` is the JSON the cache wrote (:mod:`rag.answering.cache`);
    ``versions`` maps each cited chunk id to the version it had."""

    scope: str
    question: str
    lang: str
    vector: tuple[float, ...]
    answer: dict[str, Any]
    versions: dict[str, str]
    created_at: float = field(default_factory=time.time)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    hits: int = 0
    last_hit_at: float | None = None


def _entry(row: Sequence[Any]) -> CacheEntry:
    return CacheEntry(
        id=str(row[0]),
        scope=str(row[1]),
        question=str(row[2]),
        lang=str(row[3]),
        vector=unpack_vector(str(row[4])),
        answer=json.loads(row[5]),
        versions=json.loads(row[6]),
        created_at=float(row[7]),
        hits=int(row[8]),
        last_hit_at=None if row[9] is None else float(row[9]),
    )


class AnswerCacheStore:
    """Cached answers in ``db`` (see the module docstring)."""

    def __init__(self, db: StateDB) -> None:
        self.db = db
        db.migrate("answer_cache", MIGRATIONS)

    def candidates(self, scope: str, limit: int, *, since: float = 0.0) -> list[CacheEntry]:
        """The scope's entries made at or after ``since``, newest first, at most ``limit``."""
        with self.db.read() as tx:
            rows = tx.rows(
                f"SELECT {', '.join(_COLUMNS)} FROM answer_cache WHERE scope = :scope "
                "AND created_at >= :since ORDER BY created_at DESC LIMIT :limit",
                {"scope": scope, "since": since, "limit": int(limit)},
            )
        return [_entry(r) for r in rows]

    def put(self, entry: CacheEntry, *, max_entries: int | None = None) -> None:
        """Store ``entry`` (an entry of the same scope and question is replaced), then keep
        the scope's newest ``max_entries``."""
        row = {
            "id": entry.id,
            "scope": entry.scope,
            "question": entry.question,
            "lang": entry.lang,
            "vector": pack_vector(entry.vector),
            "answer": json.dumps(entry.answer, ensure_ascii=False),
            "versions": json.dumps(entry.versions, ensure_ascii=False, sort_keys=True),
            "created_at": entry.created_at,
            "hits": entry.hits,
            "last_hit_at": entry.last_hit_at,
        }
        with self.db.write() as tx:
            tx.run(
                "DELETE FROM answer_cache WHERE scope = :scope AND question = :question",
                {"scope": entry.scope, "question": entry.question},
            )
            tx.run(
                f"INSERT INTO answer_cache ({', '.join(_COLUMNS)}) "
                f"VALUES ({', '.join(':' + c for c in _COLUMNS)})",
                row,
            )
            if max_entries is not None:
                self._cap(tx, entry.scope, max_entries)

    @staticmethod
    def _cap(tx: Any, scope: str, max_entries: int) -> int:
        return int(
            tx.run(
                "DELETE FROM answer_cache WHERE scope = :scope AND id NOT IN (SELECT id FROM "
                "(SELECT id FROM answer_cache WHERE scope = :scope "
                "ORDER BY created_at DESC LIMIT :n) AS newest)",
                {"scope": scope, "n": int(max_entries)},
            )
        )

    def cap(self, scope: str, max_entries: int) -> int:
        """Keep the scope's newest ``max_entries``; how many were deleted."""
        with self.db.write() as tx:
            return self._cap(tx, scope, max_entries)

    def hit(self, entry_id: str, at: float | None = None) -> None:
        """Count one more serving of an entry."""
        with self.db.write() as tx:
            tx.run(
                "UPDATE answer_cache SET hits = hits + 1, last_hit_at = :at WHERE id = :id",
                {"id": entry_id, "at": time.time() if at is None else at},
            )

    def drop(self, entry_id: str) -> None:
        with self.db.write() as tx:
            tx.run("DELETE FROM answer_cache WHERE id = :id", {"id": entry_id})

    def purge(self, older_than: float) -> int:
        """Delete entries made before ``older_than`` (a Unix time); how many."""
        with self.db.write() as tx:
            return tx.run(
                "DELETE FROM answer_cache WHERE created_at < :cutoff", {"cutoff": older_than}
            )

    def clear(self) -> int:
        """Delete every entry; how many."""
        with self.db.write() as tx:
            return tx.run("DELETE FROM answer_cache")

    def count(self, scope: str | None = None) -> int:
        with self.db.read() as tx:
            if scope is None:
                rows = tx.rows("SELECT COUNT(*) FROM answer_cache")
            else:
                rows = tx.rows(
                    "SELECT COUNT(*) FROM answer_cache WHERE scope = :scope", {"scope": scope}
                )
        return int(rows[0][0])
