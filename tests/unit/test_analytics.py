"""The helpdesk report from a seeded feedback store, with the real embedding model for the
unanswered-question clusters."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rag.state.analytics import build_report, cluster_questions, percentile, render_html
from rag.state.feedback import FeedbackStore
from tests.statedb import sqlite_state

NOW = dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC).timestamp()
DAY = 86400.0


@pytest.fixture(scope="module")
def embed(assets: Any) -> Any:
    from rag.config import EmbeddingSettings
    from rag.index.embedding import create_embedder

    return create_embedder(EmbeddingSettings()).embed_documents


def seed(path: Path) -> FeedbackStore:
    store = FeedbackStore(sqlite_state(path))
    rows = [
        # (id, days ago, declined, docs, latency, question)
        ("a1", 2, False, ["wifi"], 800.0, "What is the guest Wi-Fi password?"),
        ("a2", 2, True, [], 0.0, "How do I book a parking space?"),
        ("a3", 1, True, [], 0.0, "Where can I park my car at the office?"),
        ("a4", 1, False, ["wifi", "vpn"], 1200.0, "How do I connect to the VPN?"),
        ("a5", 1, True, [], 0.0, "Is there a gym discount for staff?"),
        ("a6", 0, False, ["print"], 400.0, "What is the print queue called?"),
        ("old", 45, True, [], 0.0, "Outside the period"),
    ]
    for aid, ago, declined, docs, latency, question in rows:
        store.record_answer(
            aid,
            "u",
            declined=declined,
            doc_ids=docs,
            latency_ms=latency,
            question=question,
            created_at=NOW - ago * DAY,
        )
    store.add("a1", "u", "down", "password changed last week")
    store.add("a4", "u", "down", None)
    store.add("a6", "u", "up", None)
    return store


def test_report_counts_rates_votes_and_latency(tmp_path: Path, embed: Any) -> None:
    report = build_report(seed(tmp_path / "f.sqlite3"), days=30, embed=embed, now=NOW)
    assert (report.questions, report.declined, report.up, report.down) == (6, 3, 1, 2)
    assert report.answer_rate == pytest.approx(0.5)
    assert [(d.questions, d.declined) for d in report.per_day] == [(2, 1), (3, 2), (1, 0)]
    assert report.latency_p50_ms == 800.0 and report.latency_p95_ms == 1200.0
    assert [(d.doc_id, d.down, d.up) for d in report.downvoted_docs] == [
        ("wifi", 2, 0),
        ("vpn", 1, 0),
    ]
    assert report.downvoted_docs[0].comments == ["password changed last week"]
    top = report.unanswered[0]
    assert top.count == 2 and "park" in top.example.lower()  # the two parking questions
    assert report.unanswered[1].count == 1
    page = render_html(report)
    assert "<svg" in page and "<script" not in page and "parking" in page
    assert json.loads(json.dumps(report.to_json()))["answer_rate"] == 0.5


def test_questions_can_be_left_out_and_old_rows_expire(tmp_path: Path) -> None:
    path = tmp_path / "f.sqlite3"
    store = FeedbackStore(sqlite_state(path), store_questions=False)
    store.record_answer("a", "u", declined=True, doc_ids=[], latency_ms=0, question="secret?")
    assert store.answers()[0].question is None
    seed(tmp_path / "g.sqlite3")
    kept = FeedbackStore(sqlite_state(tmp_path / "g.sqlite3"), retention_days=30)
    assert "old" not in {a.answer_id for a in kept.answers()}


def test_cluster_and_percentile_edges(embed: Any) -> None:
    assert cluster_questions([], embed) == []
    assert percentile([], 95) is None
    assert percentile([5.0, 1.0, 3.0], 50) == 3.0


def test_report_command(tmp_path: Path, assets: Any) -> None:
    from tests.conftest import ASSETS, REPO

    store = FeedbackStore(sqlite_state(tmp_path / "state.sqlite3"))  # the default state.url
    store.record_answer("x", "u", declined=True, doc_ids=[], latency_ms=0, question="Parking?")
    env = {
        "RAG_PROFILE": "test",
        "RAG_PATHS__DATA_DIR": str(tmp_path),
        "RAG_PATHS__ASSETS_DIR": str(ASSETS),
    }
    import os

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ingest.cli",
            "report",
            "--json",
            "--html",
            str(tmp_path / "r.html"),
        ],
        env={**os.environ, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout.strip().splitlines()[-1])
    assert data["questions"] == 1 and data["unanswered"][0]["example"] == "Parking?"
    assert (tmp_path / "r.html").read_text().startswith("<!doctype html>")


def test_thumbs_down_names_documents_by_title(tmp_path: Path) -> None:
    """Issue 27: the report showed only doc ids; a reader needs the document's title."""
    titles = {"wifi": "Guest Wi-Fi FAQ", "print": "Printing guide"}
    report = build_report(seed(tmp_path / "f.sqlite3"), days=30, now=NOW, titles=titles)
    named = {d.doc_id: d.title for d in report.downvoted_docs}
    assert named == {"wifi": "Guest Wi-Fi FAQ", "vpn": ""}  # vpn: no longer indexed
    page = render_html(report)
    assert "Guest Wi-Fi FAQ" in page and "(no longer indexed)" in page
    assert report.to_json()["downvoted_docs"][0]["title"] == "Guest Wi-Fi FAQ"


def test_origins_handoffs_and_curated_clusters_are_reported(tmp_path: Path, embed: Any) -> None:
    from rag.state.handoff import HandoffStore

    store = seed(tmp_path / "f.sqlite3")
    store.record_answer(
        "c1", "u", declined=False, doc_ids=["wifi"], latency_ms=3.0, created_at=NOW, origin="cache"
    )
    store.record_answer(
        "k1", "u", declined=False, doc_ids=[], latency_ms=2.0, created_at=NOW, origin="curated"
    )
    handoffs = HandoffStore(store.db)
    for n, (reason, channels) in enumerate(
        [("declined", ["webhook"]), ("declined", ["webhook", "email"]), ("thumbs_down", ["email"])]
    ):
        handoffs.create(f"H-{n}", "u", f"k{n}", reason, {"question": "q"}, channels, now=NOW)
    handoffs.delivered("H-0", "webhook", "T-1", NOW)
    handoffs.failed_attempt("H-1", "webhook", "down", None)  # email still pending
    handoffs.failed_attempt("H-2", "email", "down", None)

    def covered(question: str) -> str | None:
        return "cur-parking" if "park" in question.lower() else None

    report = build_report(store, days=30, embed=embed, now=NOW, handoffs=handoffs, covered=covered)
    assert report.origins == {"sources": 3, "cache": 1, "curated": 1}
    assert report.handoffs == {"declined": 2, "thumbs_down": 1}
    assert report.handoff_status == {"delivered": 1, "pending": 1, "failed": 1}
    by_example = {c.example: c.curated for c in report.unanswered}
    assert any(v == "cur-parking" for k, v in by_example.items() if "park" in k.lower())
    assert by_example["Is there a gym discount for staff?"] is None
    page = render_html(report)
    assert "yes (cur-parking)" in page and "thumbs_down 1" in page
    assert json.loads(json.dumps(report.to_json()))["handoff_status"]["failed"] == 1
