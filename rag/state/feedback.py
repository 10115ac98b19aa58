"""Durable record of answers and the feedback on them (SQLite, one file in the data dir).

Every answer gets an ``answer_id``; feedback refers to it. What is stored is what helpdesk
owners need to find bad answers: who asked (the principal's subject), the question (unless
``feedback.store_questions`` is off), whether the service declined, which documents were
cited, the best retrieval score and latency. Answer text is never stored. Rows older than
``feedback.retention_days`` are purged when the store opens.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rag.errors import BadRequestError, NotFoundError, StoreError
from rag.state.sqlitedb import session

Rating = Literal["up", "down"]
MAX_COMMENT_CHARS = 2000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    answer_id  TEXT PRIMARY KEY,
    subject    TEXT NOT NULL,
    created_at REAL NOT NULL,
    declined   INTEGER NOT NULL,
    doc_ids    TEXT NOT NULL,
    latency_ms REAL NOT NULL,
    question   TEXT,
    top_score  REAL
);
CREATE INDEX IF NOT EXISTS answers_created ON answers(created_at);
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


@dataclass(frozen=True, slots=True)
class AnswerRecord:
    answer_id: str
    subject: str
    created_at: float
    declined: bool
    doc_ids: tuple[str, ...]
    latency_ms: float
    question: str | None
    top_score: float | None


class FeedbackStore:
    def __init__(
        self, path: Path, *, store_questions: bool = True, retention_days: float | None = None
    ) -> None:
        self.path = path
        self.store_questions = store_questions
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with self._db() as db:
                db.executescript(_SCHEMA)
                if retention_days is not None:
                    cutoff = time.time() - retention_days * 86400
                    old = "SELECT answer_id FROM answers WHERE created_at < ?"
                    db.execute(f"DELETE FROM feedback WHERE answer_id IN ({old})", (cutoff,))
                    db.execute("DELETE FROM answers WHERE created_at < ?", (cutoff,))
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(
                f"Cannot open the feedback database {path} ({exc}). Check the data directory "
                "is writable."
            ) from exc

    def _db(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return session(self.path, wal=True)

    def record_answer(
        self,
        answer_id: str,
        subject: str,
        *,
        declined: bool,
        doc_ids: Sequence[str],
        latency_ms: float,
        question: str | None = None,
        top_score: float | None = None,
        created_at: float | None = None,
    ) -> None:
        kept = question if self.store_questions else None
        row = (
            answer_id,
            subject,
            time.time() if created_at is None else created_at,
            int(declined),
            "|".join(doc_ids),
            latency_ms,
            kept,
            top_score,
        )
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)

    def answers(self, since: float = 0.0) -> list[AnswerRecord]:
        with self._db() as db:
            rows = db.execute(
                "SELECT answer_id, subject, created_at, declined, doc_ids, latency_ms, question,"
                " top_score FROM answers WHERE created_at >= ? ORDER BY created_at",
                (since,),
            ).fetchall()
        return [
            AnswerRecord(
                r[0],
                r[1],
                r[2],
                bool(r[3]),
                tuple(d for d in r[4].split("|") if d),
                r[5],
                r[6],
                r[7],
            )
            for r in rows
        ]

    def all_feedback(self, since: float = 0.0) -> list[FeedbackRecord]:
        with self._db() as db:
            rows = db.execute(
                "SELECT f.answer_id, f.subject, f.rating, f.comment, f.created_at FROM feedback f"
                " JOIN answers a USING (answer_id) WHERE a.created_at >= ?",
                (since,),
            ).fetchall()
        return [FeedbackRecord(*row) for row in rows]

    def add(
        self,
        answer_id: str,
        subject: str,
        rating: str,
        comment: str | None,
        created_at: float | None = None,
    ) -> None:
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
                (
                    answer_id,
                    subject,
                    rating,
                    comment,
                    time.time() if created_at is None else created_at,
                ),
            )

    def feedback(self, answer_id: str) -> list[FeedbackRecord]:
        with self._db() as db:
            rows = db.execute(
                "SELECT answer_id, subject, rating, comment, created_at FROM feedback "
                "WHERE answer_id = ? ORDER BY created_at",
                (answer_id,),
            ).fetchall()
        return [FeedbackRecord(*row) for row in rows]
