"""BM25 windows: each chunk is read with its own text twice and its neighbours' text once,
on a real bm25s index in a temp folder."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from rag.index.keyword import KeywordIndex, windows
from rag.index.lexical import analyze
from rag.types import Chunk


def chunk(doc: str, i: int, text: str, title: str = "Handbook") -> Chunk:
    return Chunk(
        chunk_id=f"{doc}:{i}",
        doc_id=doc,
        text=text,
        source=f"/kb/{doc}.md",
        title=title,
        index=i,
        content_hash=f"{doc}{i}",
    )


# One document whose middle chunk alone names the badge office, a second document that
# follows it in id order (its chunk 0 must never see the first document's chunk 2), and
# filler documents, so that the terms are rare across the index (BM25's idf).
DOC = [
    chunk("door", 0, "Visitors sign in at reception on the ground floor."),
    chunk("door", 1, "Lost badges are replaced at the badge office in room 101."),
    chunk("door", 2, "The north entrance closes at eight in the evening."),
]
OTHER = [chunk("lunch", 0, "The canteen serves lunch from noon until two.", "Canteen")]
FILLER = [
    chunk(f"f{n}", 0, f"Filler note {n} about printers, parking and coffee machines.", "Misc")
    for n in range(8)
]


def index(folder: Path, chunks: Sequence[Chunk], window: int = 1) -> KeywordIndex:
    kw = KeywordIndex(folder, window=window)
    kw.on_upsert(chunks)
    kw.commit()
    return kw


def ids(kw: KeywordIndex, query: str) -> list[str]:
    return [chunk_id for chunk_id, _ in kw.search(query, 10)]


def test_windows_count_own_text_twice_and_neighbours_once_within_a_document() -> None:
    rows = [
        ("a", 0, "all", "h", "x"),
        ("a", 1, "all", "h", "y"),
        ("a", 2, "all", "h", "z"),
        ("b", 3, "all", "g", "w"),  # another document: never joins a's windows
        ("c", -1, "all", "", "old terms"),  # a row from before windows stands alone
        ("d", 0, "all", "k", "open"),
        ("d", 1, "hr", "k", "secret"),  # other groups: neither window reads the other
    ]
    assert windows(rows, 1) == [
        ["h", "x", "x", "y"],
        ["h", "x", "y", "y", "z"],
        ["h", "y", "z", "z"],
        ["g", "w", "w"],
        ["old", "terms"],
        ["k", "open", "open"],
        ["k", "secret", "secret"],
    ]
    assert windows(rows, 0)[1] == ["h", "y"]


def test_the_chunk_that_holds_the_words_ranks_before_its_neighbours(tmp_path: Path) -> None:
    kw = index(tmp_path / "kw", DOC + OTHER + FILLER)
    found = ids(kw, "badge office")
    # The chunk with the words first; its neighbours follow (context packing shows them
    # around a hit anyway); the next document's first chunk never borrows the text.
    assert found == ["door:1", "door:0", "door:2"]
    # Words split across a chunk boundary match together: "reception" is in chunk 0 and
    # "badges" in chunk 1, and both windows hold both words.
    # Chunk 2's window holds only "badges", once: it comes last.
    found = ids(kw, "reception badges")
    assert sorted(found[:2]) == ["door:0", "door:1"] and found[2:] == ["door:2"]

    # window 0: each chunk alone, as before windows.
    assert ids(index(tmp_path / "w0", DOC + OTHER + FILLER, window=0), "badge office") == ["door:1"]


def test_deleting_a_chunk_removes_its_text_from_the_neighbours_windows(tmp_path: Path) -> None:
    kw = index(tmp_path / "kw", DOC + OTHER + FILLER)
    kw.on_delete(["door:1"])
    kw.commit()
    assert ids(kw, "badge office") == []
    assert ids(kw, "north entrance") == ["door:2"]


def test_a_table_from_before_windows_keeps_working_and_is_refilled(tmp_path: Path) -> None:
    folder = tmp_path / "kw"
    folder.mkdir()
    with sqlite3.connect(folder / "terms.sqlite") as db:  # the old layout: five columns
        db.execute(
            "CREATE TABLE chunks (chunk_id TEXT PRIMARY KEY, doc_id TEXT NOT NULL, "
            "source TEXT NOT NULL, groups TEXT NOT NULL, terms TEXT NOT NULL)"
        )
        terms = " ".join(analyze(f"Handbook\n{DOC[1].text}"))
        db.execute(
            "INSERT INTO chunks VALUES ('door:1', 'door', '/kb/door.md', 'everyone', ?)",
            (terms,),
        )
    kw = KeywordIndex(folder)
    assert kw.unplaced()
    kw.commit()
    assert ids(kw, "badge office") == ["door:1"]  # the old row still answers, alone

    stored = {c.chunk_id: c for c in DOC + OTHER + FILLER}

    def fetch(wanted: Sequence[str]) -> list[Chunk]:
        return [stored[i] for i in wanted]

    added, removed = kw.reconcile(sorted(stored), fetch)
    assert (added, removed) == (len(stored), 0)  # re-read from the store, with positions
    assert not kw.unplaced()
    assert ids(kw, "badge office") == ["door:1", "door:0", "door:2"]


def test_an_isolated_index_rebuilds_in_a_worker_and_survives_its_death(tmp_path: Path) -> None:
    """A running service rebuilds in a worker process (its searches keep the GIL): the same
    ranking as in-process, and when the worker dies the rebuild happens here instead."""
    import os
    import signal

    inline = index(tmp_path / "inline", DOC + OTHER + FILLER)
    kw = KeywordIndex(tmp_path / "isolated", isolate=True)
    try:
        kw.on_upsert(DOC + OTHER + FILLER)
        kw.commit()
        assert kw.search("badge office", 10) == inline.search("badge office", 10)
        assert kw._workers is not None  # built by the worker process
        [worker] = kw._workers._processes.values()  # type: ignore[attr-defined]
        assert worker.pid != os.getpid()
        os.kill(worker.pid, signal.SIGKILL)
        worker.join(10)
        kw.on_delete(["door:1"])
        kw.commit()  # the dead worker is noticed; rebuilt in-process
        assert "door:1" not in ids(kw, "badge office")
        kw.on_upsert([chunk("door", 1, "Lost badges are replaced at the badge office.")])
        kw.commit()  # a new worker
        assert ids(kw, "badge office")[0] == "door:1"
    finally:
        kw.close()
        inline.close()
