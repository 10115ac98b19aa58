"""Durable record of answers and the feedback on them (SQLite, one file in the data dir).

Every answer gets an ``answer_id``; feedback refers to it. What is stored is what helpdesk
owners need to find bad answers: who asked (the principal's subject), whether the service
declined, which documents were cited, and latency. Question and answer text are not stored
here.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rag.errors import BadRequestError, NotFoundError, StoreError

Rating = Literal["up", "down"]
MAX_COMMENT_CHARS = 2000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    answer_id  TEXT PRIMARY KEY,
    subject    TEXT NOT NULL,
    created_at REAL NOT NULL,
    declined   INTEGER NOT NULL,
    doc_ids    TEXT NOT NULL,
    latency_ms REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
    answer_id  TEXT NOT NULL REFERENCES answers(answer_id),
    subject    TEXT NOT NULL,
    rating     TEXT NOT NULL CHECK (rating IN ('up', 'down')),
    comment    TEXT,
    created_at REAL NOT NULL,
    PRIMARY KEY (answer_id, subject)
);
"""


@dataclass(frozen=True, slots=True)
class FeedbackRecord:
    answer_id: str
    subject: str
    rating: Rating
    comment: str | None
    created_at: float


class FeedbackStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with self._db() as db:
                db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(
                f"Cannot open the feedback database {path} ({exc}). Check the data directory "
                "is writable."
            ) from exc

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=10)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            with db:
                yield db
        finally:
            db.close()

    def record_answer(
        self,
        answer_id: str,
        subject: str,
        *,
        declined: bool,
        doc_ids: Sequence[str],
        latency_ms: float,
    ) -> None:
        with self._db() as db:
            db.execute(
                "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?)",
                (answer_id, subject, time.time(), int(declined), "|".join(doc_ids), latency_ms),
            )

    def add(self, answer_id: str, subject: str, rating: str, comment: str | None) -> None:
        """Store (or replace) ``subject``'s rating of an answer it was given."""
        if rating not in ("up", "down"):
            raise BadRequestError("rating must be 'up' or 'down'.")
        if comment is not None and len(comment) > MAX_COMMENT_CHARS:
            raise BadRequestError(
                f"The comment has {len(comment)} characters; the limit is {MAX_COMMENT_CHARS}."
            )
        with self._db() as db:
            row = db.execute(
                "SELECT subject FROM answers WHERE answer_id = ?", (answer_id,)
            ).fetchone()
            if row is None or row[0] != subject:
                raise NotFoundError(
                    "No answer with this answer_id was given to you. Send feedback with the "
                    "answer_id of an answer you received."
                )
            db.execute(
                "INSERT OR REPLACE INTO feedback VALUES (?, ?, ?, ?, ?)",
                (answer_id, subject, rating, comment, time.time()),
            )

    def feedback(self, answer_id: str) -> list[FeedbackRecord]:
        with self._db() as db:
            rows = db.execute(
                "SELECT answer_id, subject, rating, comment, created_at FROM feedback "
                "WHERE answer_id = ? ORDER BY created_at",
                (answer_id,),
            ).fetchall()
        return [FeedbackRecord(*row) for row in rows]
