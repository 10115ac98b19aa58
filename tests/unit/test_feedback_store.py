"""Feedback is durable, refers to an answer the same caller received, and is validated."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.errors import BadRequestError, NotFoundError
from rag.state.feedback import FeedbackStore
from tests.statedb import sqlite_state


def test_feedback_is_stored_replaced_and_survives_reopening(tmp_path: Path) -> None:
    db = tmp_path / "data" / "feedback.sqlite3"
    store = FeedbackStore(sqlite_state(db))
    store.record_answer("a1", "user:alice", declined=False, doc_ids=["d1", "d2"], latency_ms=12.5)
    store.add("a1", "user:alice", "down", "outdated")
    store.add("a1", "user:alice", "up", None)  # changing one's mind replaces the rating
    again = FeedbackStore(sqlite_state(db))
    [record] = again.feedback("a1")
    assert (record.subject, record.rating, record.comment) == ("user:alice", "up", None)


def test_feedback_only_for_answers_the_caller_received(tmp_path: Path) -> None:
    store = FeedbackStore(sqlite_state(tmp_path / "f.sqlite3"))
    store.record_answer("a1", "user:alice", declined=True, doc_ids=[], latency_ms=1.0)
    with pytest.raises(NotFoundError):
        store.add("nope", "user:alice", "up", None)
    with pytest.raises(NotFoundError):
        store.add("a1", "user:bob", "up", None)
    with pytest.raises(BadRequestError):
        store.add("a1", "user:alice", "meh", None)
    with pytest.raises(BadRequestError):
        store.add("a1", "user:alice", "down", "x" * 5000)
    assert store.feedback("a1") == []
