"""The legacy term-overlap citation guess (bench/legacy_citations.py, the baseline
bench/grounding.py compares grounding against) keeps its behaviour."""

from __future__ import annotations

from bench.legacy_citations import select
from rag.types import Chunk, Hit, Source


def src(n: int, text: str, doc: str) -> Source:
    return Source(n, Hit(Chunk(f"{doc}:0", doc, text, f"{doc}.md", doc.title()), 0.5))


SOURCES = [
    src(1, "The guest Wi-Fi password is harbor-blue-42.", "wifi"),
    src(2, "Annual leave is 27 days per year.", "leave"),
]


def test_explicit_markers_win_and_unknown_numbers_are_dropped() -> None:
    cites = select("Leave is 27 days [2]. Also see [7].", SOURCES)
    assert [c.n for c in cites] == [2]
    assert cites[0].doc_id == "leave"


def test_unmarked_answer_is_cited_by_shared_facts() -> None:
    cites = select("The password is harbor-blue-42.", SOURCES)
    assert [c.doc_id for c in cites] == ["wifi"]


def test_answer_sharing_nothing_cites_nothing() -> None:
    assert select("I do not know.", SOURCES) == []
