"""The manifest's write protocol, on a real SQLite file and in a real PostgreSQL database
(the shared state of several machines: the same SQL through :class:`StateDB`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rag.errors import StoreError
from rag.index.manifest import DocRecord, Manifest
from rag.state.db import StateDB
from tests.postgres_server import PostgresServer

Opener = Callable[[], Manifest]


@pytest.fixture(params=["sqlite", "postgresql"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens the same manifest each call (a later run, another machine)."""
    if request.param == "sqlite":
        yield lambda: Manifest(tmp_path / "m.sqlite")
        return
    server: PostgresServer = request.getfixturevalue("pg_server")
    url = server.create_database()
    yield lambda: Manifest(StateDB(url), owns=True)


def record(doc_id: str, version: str = "v1") -> DocRecord:
    return DocRecord(
        doc_id=doc_id,
        path=f"/kb/{doc_id}.md",
        file_hash="h" + version,
        version=version,
        title=doc_id.title(),
        groups=("everyone",),
        embedder="m",
        chunks=0,
        pages=1,
        size=10,
        ingested_at="2026-01-01T00:00:00+00:00",
    )


def test_commit_replaces_a_version_and_leaves_the_old_ids_as_garbage(opener: Opener) -> None:
    with opener() as m:
        m.begin("c", "d1", ["d1:a:0", "d1:a:1"])
        assert m.commit("c", record("d1"), ["d1:a:0", "d1:a:1"]) == []
        assert m.open_work("c") == 0
        m.begin("c", "d1", ["d1:b:0"])
        stale = m.commit("c", record("d1", "v2"), ["d1:b:0"])
        assert stale == ["d1:a:0", "d1:a:1"]
        assert m.recover_ids("c") == stale  # still to delete from the store
        m.clear_garbage("c", stale)
        doc = m.document("c", "d1")
        assert doc is not None and doc.version == "v2" and doc.chunks == 1
        assert m.stats("c") == {
            "documents": 1,
            "chunks": 1,
            "pages": 1,
            "bytes": 10,
            "failed": 0,
            "unfinished": 0,
        }


def test_an_interrupted_write_is_recovered_as_garbage(opener: Opener) -> None:
    with opener() as m:
        m.begin("c", "d1", ["d1:a:0"])
        m.commit("c", record("d1"), ["d1:a:0"])
        m.begin("c", "d2", ["d2:a:0", "d2:a:1"])  # then the process dies
    with opener() as m:  # the next run
        assert m.document("c", "d2") is None
        assert m.recover_ids("c") == ["d2:a:0", "d2:a:1"]
        m.clear_garbage("c", ["d2:a:0", "d2:a:1"])
        assert m.open_work("c") == 0
        assert m.all_chunk_ids("c") == ["d1:a:0"]


def test_remove_find_failures_and_the_collection_switch(opener: Opener) -> None:
    with opener() as m:
        m.commit("old", record("d1"), ["d1:a:0"])
        m.record_failure("old", "/kb/bad.pdf", "bad.pdf: truncated", "t")
        assert m.find("old", "/kb/d1.md") == m.find("old", "d1")
        assert m.stats("old")["failed"] == 1
        m.commit("new", record("d1"), ["d1:a:0"])
        assert m.active("old") == "old"
        m.switch("new", "old")
        assert m.active("old") == "new"
        assert list(m.documents("old")) == [] and m.failures("old") == []
        assert m.remove("new", "d1") == ["d1:a:0"]
        assert m.find("new", "d1") is None


def test_every_write_raises_the_generation_and_a_failed_one_changes_nothing(
    opener: Opener,
) -> None:
    """Readers watch the counter to notice store changes; a transaction that fails half-way
    (here: a document row that cannot be encoded) leaves no row and no count behind."""
    with opener() as m, opener() as other:
        assert m.generation is None
        m.begin("c", "d1", ["d1:a:0"])
        first = other.generation
        m.commit("c", record("d1"), ["d1:a:0"])
        assert first is not None and int(str(other.generation)) == int(first) + 1
        bad = record("d2")
        object.__setattr__(bad, "groups", (object(),))  # json.dumps fails inside the commit
        with pytest.raises(TypeError):
            m.commit("c", bad, ["d2:a:0"])
        assert other.generation == str(int(first) + 1)
        assert other.chunk_ids("c", "d2") == [] and other.document("c", "d2") is None


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    with Manifest(tmp_path / "m.sqlite") as first, Manifest(tmp_path / "m.sqlite") as second:
        first.lock()
        with pytest.raises(StoreError, match="Another rag-ingest"):
            second.lock()
        first.unlock()
        second.lock()


def test_a_message_and_its_attachments_commit_and_go_together(opener: Opener) -> None:
    from dataclasses import replace

    mail = replace(record("m"), path="/kb/m.eml")

    def child(name: str, version: str = "v1") -> DocRecord:
        path = f"/kb/m.eml#attachment/{name}"
        return replace(record(name, version), path=path, parent="m")

    with opener() as m:
        m.record_failure("c", "/kb/m.eml#attachment/bad.pdf", "broken", "t")
        m.commit_family("c", (mail, ["m:0"]), [(child("a"), ["a:0"]), (child("b"), ["b:0"])])
        assert [d.doc_id for d in m.children("c", "m")] == ["a", "b"]
        assert m.failures("c") == []  # cleared with the new version of the message
        stale = m.commit_family("c", (mail, ["m:1"]), [(child("b", "v2"), ["b:1"])])
        assert sorted(stale) == ["a:0", "b:0", "m:0"]  # a left the message; b and m changed
        assert [d.doc_id for d in m.children("c", "m")] == ["b"]
        m.clear_garbage("c", stale)
        assert sorted(m.remove("c", "m")) == ["b:1", "m:1"]
        assert m.stats("c")["documents"] == 0


def test_a_manifest_from_before_attachments_gains_the_parent_column(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE documents (collection TEXT NOT NULL, doc_id TEXT NOT NULL, path TEXT "
        "NOT NULL, file_hash TEXT NOT NULL, version TEXT NOT NULL, state TEXT NOT NULL, "
        "title TEXT NOT NULL, groups TEXT NOT NULL, embedder TEXT NOT NULL, chunks INTEGER "
        "NOT NULL, pages INTEGER NOT NULL, size INTEGER NOT NULL, ingested_at TEXT NOT NULL, "
        "root TEXT NOT NULL, PRIMARY KEY (collection, doc_id))"
    )
    db.execute(
        "INSERT INTO documents VALUES ('c', 'd1', '/kb/d1.md', 'h', 'v', 'done', 'D1', "
        "'[\"everyone\"]', 'm', 1, 1, 10, 't', '')"
    )
    db.commit()
    db.close()
    with Manifest(path) as m:
        doc = m.document("c", "d1")
        assert doc is not None and doc.parent == "" and doc.title == "D1"
        assert m.children("c", "d1") == []


def test_paths_are_shown_under_their_folder_never_as_server_paths() -> None:
    """Issue 27, finding 7: ``list`` and ``/v1/documents`` showed absolute server paths."""
    from rag.index.manifest import DocRecord, shown_source

    root = "/srv/docs/kb"
    assert shown_source(f"{root}/hr/leave.md", root) == "kb/hr/leave.md"
    assert shown_source(f"{root}/a.eml#attachment/x.pdf", root) == "kb/a.eml#attachment/x.pdf"
    assert shown_source("/var/data/uploads/3f2a/badges.md") == "badges.md"  # named or uploaded
    assert shown_source("kb2/locker.txt") == "kb2/locker.txt"  # an older index's relative path
    record = DocRecord(
        doc_id="d",
        path=f"{root}/hr/leave.md",
        file_hash="h",
        version="v",
        title="Leave",
        groups=("hr",),
        embedder="e",
        chunks=1,
        pages=1,
        size=10,
        ingested_at="2026-01-01T00:00:00Z",
        root=root,
    )
    assert record.source == "kb/hr/leave.md"
    assert record.to_json()["path"] == f"{root}/hr/leave.md"  # the stored key, for scripts
    assert record.to_json()["source"] == "kb/hr/leave.md"
