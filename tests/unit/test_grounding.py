"""Sentence-level grounding: wrong citations corrected, missing ones attached, invented facts
marked unsupported, unknown numbers dropped."""

from __future__ import annotations

from rag.grounding import ground, split_sentences
from rag.types import Chunk, Hit, Source


def _source(n: int, text: str, title: str = "Doc") -> Source:
    chunk = Chunk(f"c{n}", f"d{n}", text, f"/kb/{n}.md", title)
    return Source(n, Hit(chunk, 0.5))


SOURCES = [
    _source(1, "Guests use the network NW-Guest. The guest Wi-Fi password is harbor-blue-42."),
    _source(2, "The VPN client is TunnelKey. A VPN session disconnects after 9 hours."),
    _source(3, "出差住宿费用上限为每晚600元，餐补每日100元。", "差旅报销"),
]


def test_wrong_citation_is_corrected_and_missing_one_attached() -> None:
    answer = "The guest Wi-Fi password is harbor-blue-42 [2]. The VPN client is TunnelKey."
    g = ground(answer, SOURCES)
    assert [s.citations for s in g.sentences] == [(1,), (2,)]
    assert [s.model_citations for s in g.sentences] == [(2,), ()]
    assert all(s.supported for s in g.sentences) and g.unsupported == []
    assert [c.n for c in g.citations] == [1, 2]
    assert "harbor-blue-42" in g.citations[0].snippet  # the supporting sentence, not the start
    assert g.text_with_citations().startswith("The guest Wi-Fi password is harbor-blue-42 [1].")


def test_invented_numbers_and_names_are_unsupported() -> None:
    g = ground("A VPN session disconnects after 12 hours [2]. The client is SecureLink.", SOURCES)
    assert [s.supported for s in g.sentences] == [False, False]
    assert g.citations == [] and len(g.unsupported) == 2


def test_unknown_numbers_dropped_and_non_claims_left_alone() -> None:
    g = ground("A VPN session disconnects after 9 hours [7]. I hope this helps!", SOURCES)
    assert g.sentences[0].citations == (2,) and g.sentences[0].model_citations == (7,)
    assert g.sentences[1].supported and g.sentences[1].citations == ()
    declined = ground("The knowledge base does not cover this question.", SOURCES)
    assert declined.sentences[0].supported and declined.citations == []


def test_chinese_sentences_are_checked_too() -> None:
    g = ground("出差住宿每晚上限600元。餐补每日300元。", SOURCES)
    assert [s.supported for s in g.sentences] == [True, False]
    assert g.sentences[0].citations == (3,)


def test_split_sentences_keeps_markers_with_their_sentence() -> None:
    assert split_sentences("One is 1. [1] Two is 2 [2]! 三是3。四") == [
        "One is 1. [1]",
        "Two is 2 [2]!",
        "三是3。",
        "四",
    ]
