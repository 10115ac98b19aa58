"""One migration mechanism for every database; files made by earlier versions are upgraded
(index files) or imported (keys, feedback) on first start, and nothing is lost."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from rag.errors import StoreError
from rag.index.manifest import Manifest
from rag.migrations import Migration, migrate_sqlite
from rag.state.db import StateDB

# The schemas exactly as earlier versions of the service wrote them.
OLD_MANIFEST = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE documents (
    collection TEXT NOT NULL, doc_id TEXT NOT NULL, path TEXT NOT NULL,
    file_hash TEXT NOT NULL, version TEXT NOT NULL, state TEXT NOT NULL,
    title TEXT NOT NULL, groups TEXT NOT NULL, embedder TEXT NOT NULL,
    chunks INTEGER NOT NULL, pages INTEGER NOT NULL, size INTEGER NOT NULL,
    ingested_at TEXT NOT NULL, root TEXT NOT NULL,
    PRIMARY KEY (collection, doc_id)
);
CREATE TABLE chunks (collection TEXT NOT NULL, chunk_id TEXT NOT NULL, doc_id TEXT NOT NULL,
    PRIMARY KEY (collection, chunk_id));
CREATE TABLE pending (collection TEXT NOT NULL, chunk_id TEXT NOT NULL, doc_id TEXT NOT NULL,
    PRIMARY KEY (collection, chunk_id));
CREATE TABLE garbage (collection TEXT NOT NULL, chunk_id TEXT NOT NULL,
    PRIMARY KEY (collection, chunk_id));
CREATE TABLE failures (collection TEXT NOT NULL, path TEXT NOT NULL, error TEXT NOT NULL,
    at TEXT NOT NULL, PRIMARY KEY (collection, path));
"""
OLD_KEYS = """
CREATE TABLE api_keys (
    key_id     TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    secret_sha TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    groups     TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
"""
OLD_FEEDBACK = """
CREATE TABLE answers (
    answer_id  TEXT PRIMARY KEY,
    subject    TEXT NOT NULL,
    created_at REAL NOT NULL,
    declined   INTEGER NOT NULL,
    doc_ids    TEXT NOT NULL,
    latency_ms REAL NOT NULL,
    question   TEXT,
    top_score  REAL
);
CREATE TABLE feedback (
    answer_id  TEXT NOT NULL REFERENCES answers(answer_id),
    subject    TEXT NOT NULL,
    rating     TEXT NOT NULL CHECK (rating IN ('up', 'down')),
    comment    TEXT,
    created_at REAL NOT NULL,
    PRIMARY KEY (answer_id, subject)
);
"""


def old_file(path: Path, script: str, *rows: tuple[str, tuple[Any, ...]]) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        db.executescript(script)
        for sql, values in rows:
            db.execute(sql, values)
    db.close()
    return path.read_bytes()


def recorded(path: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT component, version FROM schema_migrations ORDER BY 1, 2")
        return [(str(c), int(v)) for c, v in rows]


STEPS = [
    Migration(1, "t", "CREATE TABLE t (a INTEGER NOT NULL)"),
    Migration(2, "t.b", "ALTER TABLE t ADD COLUMN b TEXT; INSERT INTO t (a, b) VALUES (1, 'x')"),
]


def test_steps_run_once_in_order_and_are_recorded(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "x.sqlite")
    assert migrate_sqlite(conn, "demo", STEPS[:1]) == [1]
    assert migrate_sqlite(conn, "demo", STEPS) == [2]  # only the new step
    assert migrate_sqlite(conn, "demo", STEPS) == []
    assert conn.execute("SELECT a, b FROM t").fetchall() == [(1, "x")]
    assert migrate_sqlite(conn, "other", [Migration(1, "u", "CREATE TABLE u (a INTEGER)")]) == [1]
    conn.close()
    assert recorded(tmp_path / "x.sqlite") == [("demo", 1), ("demo", 2), ("other", 1)]


def test_a_failing_step_changes_nothing(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "x.sqlite")
    broken = [
        *STEPS,
        Migration(3, "bad", "INSERT INTO t (a) VALUES (2); INSERT INTO nope VALUES (1)"),
    ]
    with pytest.raises(sqlite3.OperationalError):
        migrate_sqlite(conn, "demo", broken)
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 't'").fetchall() == []
    conn.close()


def test_a_newer_schema_is_refused_and_misnumbered_steps_are_a_bug(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "x.sqlite")
    migrate_sqlite(conn, "demo", STEPS)
    with pytest.raises(StoreError, match="newer than this version"):
        migrate_sqlite(conn, "demo", STEPS[:1])
    with pytest.raises(ValueError, match="numbered"):
        migrate_sqlite(conn, "late", [STEPS[1]])
    conn.close()


def test_an_old_manifest_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "chroma-manifest.sqlite"
    old_file(
        path,
        OLD_MANIFEST,
        (
            "INSERT INTO documents VALUES (?, ?, ?, ?, ?, 'done', ?, ?, ?, 3, 1, 10, ?, ?)",
            ("c", "d1", "/kb/a.md", "h", "v", "A", '["everyone"]', "e", "2025-01-01", "/kb"),
        ),
        ("INSERT INTO chunks VALUES ('c', 'd1:v:0', 'd1')", ()),
    )
    with Manifest(path) as manifest:
        [doc] = list(manifest.documents("c"))
        assert (doc.doc_id, doc.title, doc.parent, doc.chunks) == ("d1", "A", "", 3)
        assert manifest.chunk_ids("c", "d1") == ["d1:v:0"]
    assert recorded(path) == [("manifest", 1), ("manifest", 2)]
    with Manifest(path) as manifest:  # a second start changes nothing
        assert [d.doc_id for d in manifest.documents("c")] == ["d1"]
    assert recorded(path) == [("manifest", 1), ("manifest", 2)]


def test_a_manifest_from_just_before_the_migration_table_keeps_its_attachments(
    tmp_path: Path,
) -> None:
    path = tmp_path / "m.sqlite"
    old_file(
        path,
        OLD_MANIFEST + "ALTER TABLE documents ADD COLUMN parent TEXT NOT NULL DEFAULT '';",
        (
            "INSERT INTO documents VALUES (?, ?, ?, ?, ?, 'done', ?, ?, ?, 1, 1, 1, ?, ?, ?)",
            ("c", "att", "/kb/m.eml#a", "h", "v", "A", "[]", "e", "t", "", "msg"),
        ),
    )
    with Manifest(path) as manifest:
        assert [d.parent for d in manifest.children("c", "msg")] == ["msg"]


def test_an_old_keyword_table_is_upgraded_in_place(tmp_path: Path) -> None:
    from rag.index.keyword import KeywordIndex

    folder = tmp_path / "kw"
    old_file(
        folder / "terms.sqlite",
        "CREATE TABLE chunks (chunk_id TEXT PRIMARY KEY, doc_id TEXT NOT NULL, source TEXT "
        "NOT NULL, groups TEXT NOT NULL, terms TEXT NOT NULL);"
        "CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
        ("INSERT INTO chunks VALUES ('d:0', 'd', '/kb/d.md', 'everyone', 'badg offic')", ()),
    )
    index = KeywordIndex(folder)
    assert index.table_ids() == {"d:0"} and index.unplaced()  # kept, at position -1
    index.close()
    assert recorded(folder / "terms.sqlite") == [("keyword", 1), ("keyword", 2)]


def test_old_keys_and_feedback_files_are_imported_once(tmp_path: Path, make_settings: Any) -> None:
    from rag.services import Services, build_feedback_store, open_state

    data = tmp_path / "data"
    secret = "s" * 43
    sha = hashlib.sha256(secret.encode()).hexdigest()
    keys_before = old_file(
        data / "keys.sqlite3",
        OLD_KEYS,
        (
            "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, NULL)",
            ("abc123", "bot", sha, json.dumps(["ask"]), json.dumps(["hr"]), 1.5e9),
        ),
        (
            "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, ?)",
            ("old999", "gone", sha, '["ask"]', '["x"]', 1.4e9, 1.45e9),
        ),
    )
    feedback_before = old_file(
        data / "feedback.sqlite3",
        OLD_FEEDBACK,
        (
            "INSERT INTO answers VALUES ('a1', 'key:abc123', 1.9e9, 0, 'd1|d2', 812.5, 'Q?', 0.7)",
            (),
        ),
        ("INSERT INTO feedback VALUES ('a1', 'key:abc123', 'down', 'stale', 1.9e9)", ()),
    )
    settings = make_settings(paths={"data_dir": str(data)})

    services = Services(settings)
    key = services.keys.verify(f"kb_abc123_{secret}")
    assert key is not None and key.groups == ("hr",) and key.created_at == 1.5e9
    assert services.keys.verify(f"kb_old999_{secret}") is None  # revoked stays revoked
    assert [k.key_id for k in services.keys.list()] == ["old999", "abc123"]
    feedback = build_feedback_store(settings, services.db)
    [answer] = feedback.answers()
    assert (answer.doc_ids, answer.latency_ms, answer.question) == (("d1", "d2"), 812.5, "Q?")
    [rating] = feedback.feedback("a1")
    assert (rating.rating, rating.comment) == ("down", "stale")
    services.keys.revoke("abc123")
    services.db.close()

    # The old files are left exactly as they were; a second start imports nothing again.
    assert (data / "keys.sqlite3").read_bytes() == keys_before
    assert (data / "feedback.sqlite3").read_bytes() == feedback_before
    again = Services(settings)
    assert again.keys.verify(f"kb_abc123_{secret}") is None
    assert len(build_feedback_store(settings, open_state(settings)).answers()) == 1
    again.db.close()
    assert (data / "state.sqlite3").is_file()


def test_a_bad_state_url_says_what_to_use() -> None:
    with pytest.raises(StoreError, match="sqlite:///"):
        StateDB("nosuchdb://x")
