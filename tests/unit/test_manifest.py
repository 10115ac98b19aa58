"""The manifest's write protocol, on a real SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.errors import StoreError
from rag.manifest import DocRecord, Manifest


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


def test_commit_replaces_a_version_and_leaves_the_old_ids_as_garbage(tmp_path: Path) -> None:
    with Manifest(tmp_path / "m.sqlite") as m:
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


def test_an_interrupted_write_is_recovered_as_garbage(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite"
    with Manifest(path) as m:
        m.begin("c", "d1", ["d1:a:0"])
        m.commit("c", record("d1"), ["d1:a:0"])
        m.begin("c", "d2", ["d2:a:0", "d2:a:1"])  # then the process dies
    with Manifest(path) as m:  # the next run
        assert m.document("c", "d2") is None
        assert m.recover_ids("c") == ["d2:a:0", "d2:a:1"]
        m.clear_garbage("c", ["d2:a:0", "d2:a:1"])
        assert m.open_work("c") == 0
        assert m.all_chunk_ids("c") == ["d1:a:0"]


def test_remove_find_failures_and_the_collection_switch(tmp_path: Path) -> None:
    with Manifest(tmp_path / "m.sqlite") as m:
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


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    with Manifest(tmp_path / "m.sqlite") as first, Manifest(tmp_path / "m.sqlite") as second:
        first.lock()
        with pytest.raises(StoreError, match="Another rag-ingest"):
            second.lock()
        first.unlock()
        second.lock()
