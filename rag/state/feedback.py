"""Durable record of answers and the feedback on them, in the state database.

Every answer gets an ``answer_id``; feedback refers to it. What is stored is what helpdesk
owners need to find bad answers: who asked (the principal's subject), the question (unless
``feedback.store_questions`` is off), whether the service declined, which documents were
cited, the best retrieval score and latency. Answer text is never stored. Rows older than
``feedback.retention_days`` are purged when the store opens.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rag.errors import BadRequestError, NotFoundError
from rag.migrations import Database, Migration
from rag.state.db import StateDB
from rag.state.legacy import importer, read_table

Rating = Literal["up", "down"]
MAX_COMMENT_CHARS = 2000

_LEGACY_COLUMNS = (
    "answer_id",
    "subject",
    "created_at",
    "declined",
    "doc_ids",
    "latency_ms",
    "question",
    "top_score",
)
_FEEDBACK_COLUMNS = ("answer_id", "subject", "rating", "comment", "created_at")
_ANSWER_COLUMNS = (*_LEGACY_COLUMNS, "origin")
"""``origin`` (migration 3): sources, cache or curated (rag.types.Answer.origin)."""


def _insert(columns: Sequence[str]) -> str:
    return (
        f"INSERT INTO answers ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"
    )


_PUT_ANSWER = _insert(_ANSWER_COLUMNS)
_PUT_FEEDBACK = (
    f"INSERT INTO feedback ({', '.join(_FEEDBACK_COLUMNS)}) "
    f"VALUES ({', '.join(':' + c for c in _FEEDBACK_COLUMNS)})"
)


def _replacing(insert: str, key: str, columns: Sequence[str]) -> str:
    """``insert`` as an upsert: a row with the same ``key`` gets the new values."""
    keys = {k.strip() for k in key.split(",")}
    update = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in keys)
    return f"{insert} ON CONFLICT ({key}) DO UPDATE SET {update}"


def migrations(legacy: Path | None) -> list[Migration]:
    return [
        Migration(
            1,
            "answers and feedback",
            """CREATE TABLE IF NOT EXISTS answers (
                answer_id  VARCHAR(64) PRIMARY KEY,
                subject    TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                declined   INTEGER NOT NULL,
                doc_ids    TEXT NOT NULL,
                latency_ms DOUBLE PRECISION NOT NULL,
                question   TEXT,
                top_score  DOUBLE PRECISION
            );
            CREATE INDEX IF NOT EXISTS answers_created ON answers (created_at);
            CREATE TABLE IF NOT EXISTS feedback (
                answer_id  VARCHAR(64) NOT NULL REFERENCES answers (answer_id),
                subject    TEXT NOT NULL,
                rating     VARCHAR(8) NOT NULL CHECK (rating IN ('up', 'down')),
                comment    TEXT,
                created_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (answer_id, subject)
            )""",
        ),
        Migration(2, "import feedback.sqlite3", importer(legacy, "answers", _import)),
        Migration(
            3,
            "where each answer came from",
            "ALTER TABLE answers ADD COLUMN origin VARCHAR(12) NOT NULL DEFAULT 'sources'",
        ),
    ]


def _import(db: Database, path: Path) -> int:
    answers = read_table(path, "answers", _LEGACY_COLUMNS)
    if answers:
        db.run(_insert(_LEGACY_COLUMNS) + " ON CONFLICT (answer_id) DO NOTHING", answers)
    ratings = read_table(path, "feedback", _FEEDBACK_COLUMNS)
    if ratings:
        db.run(_PUT_FEEDBACK + " ON CONFLICT (answer_id, subject) DO NOTHING", ratings)
    return len(answers)


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
    origin: str = "sources"
    """sources (answered from the documents now), cache or curated."""


def _answer(r: tuple[Any, ...]) -> AnswerRecord:
    return AnswerRecord(
        r[0],
        r[1],
        float(r[2]),
        bool(r[3]),
        tuple(d for d in r[4].split("|") if d),
        float(r[5]),
        r[6],
        None if r[7] is None else float(r[7]),
        str(r[8]),
    )


def _feedback(row: tuple[Any, ...]) -> FeedbackRecord:
    return FeedbackRecord(row[0], row[1], row[2], row[3], float(row[4]))


class FeedbackStore:
    def __init__(
        self,
        db: StateDB,
        *,
        store_questions: bool = True,
        retention_days: float | None = None,
        legacy: Path | None = None,
    ) -> None:
        """Answers and ratings in ``db``; ``legacy``: an old ``feedback.sqlite3`` to import
        once. Rows older than ``retention_days`` are deleted now."""
        self.db = db
        self.store_questions = store_questions
        db.migrate("feedback", migrations(legacy))
        if retention_days is not None:
            cutoff = {"cutoff": time.time() - retention_days * 86400}
            old = "SELECT answer_id FROM answers WHERE created_at < :cutoff"
            with db.write() as tx:
                tx.run(f"DELETE FROM feedback WHERE answer_id IN ({old})", cutoff)
                tx.run("DELETE FROM answers WHERE created_at < :cutoff", cutoff)

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
        origin: str = "sources",
    ) -> None:
        row = {
            "answer_id": answer_id,
            "subject": subject,
            "created_at": time.time() if created_at is None else created_at,
            "declined": int(declined),
            "doc_ids": "|".join(doc_ids),
            "latency_ms": latency_ms,
            "question": question if self.store_questions else None,
            "top_score": top_score,
            "origin": origin,
        }
        with self.db.write() as tx:
            tx.run(_replacing(_PUT_ANSWER, "answer_id", _ANSWER_COLUMNS), row)

    def answers(self, since: float = 0.0) -> list[AnswerRecord]:
        with self.db.read() as tx:
            rows = tx.rows(
                f"SELECT {', '.join(_ANSWER_COLUMNS)} FROM answers WHERE created_at >= :since "
                "ORDER BY created_at",
                {"since": since},
            )
        return [_answer(r) for r in rows]

    def answer(self, answer_id: str) -> AnswerRecord | None:
        """One recorded answer (any caller's), or None when there is none with this id."""
        with self.db.read() as tx:
            rows = tx.rows(
                f"SELECT {', '.join(_ANSWER_COLUMNS)} FROM answers WHERE answer_id = :answer_id",
                {"answer_id": answer_id},
            )
        return _answer(rows[0]) if rows else None

    def all_feedback(self, since: float = 0.0) -> list[FeedbackRecord]:
        with self.db.read() as tx:
            rows = tx.rows(
                "SELECT f.answer_id, f.subject, f.rating, f.comment, f.created_at FROM feedback f"
                " JOIN answers a ON a.answer_id = f.answer_id WHERE a.created_at >= :since",
                {"since": since},
            )
        return [_feedback(r) for r in rows]

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
        row = {
            "answer_id": answer_id,
            "subject": subject,
            "rating": rating,
            "comment": comment,
            "created_at": time.time() if created_at is None else created_at,
        }
        with self.db.write() as tx:
            owner = tx.rows(
                "SELECT subject FROM answers WHERE answer_id = :answer_id", {"answer_id": answer_id}
            )
            if not owner or owner[0][0] != subject:
                raise NotFoundError(
                    "No answer with this answer_id was given to you. Send feedback with the "
                    "answer_id of an answer you received."
                )
            tx.run(_replacing(_PUT_FEEDBACK, "answer_id, subject", _FEEDBACK_COLUMNS), row)

    def feedback(self, answer_id: str) -> list[FeedbackRecord]:
        with self.db.read() as tx:
            rows = tx.rows(
                f"SELECT {', '.join(_FEEDBACK_COLUMNS)} FROM feedback "
                "WHERE answer_id = :answer_id ORDER BY created_at",
                {"answer_id": answer_id},
            )
        return [_feedback(r) for r in rows]
