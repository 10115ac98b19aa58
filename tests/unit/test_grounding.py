"""Sentence-level grounding: wrong citations corrected, missing ones attached, invented facts
marked unsupported, unknown numbers dropped."""

from __future__ import annotations

from rag.answering import prompt
from rag.answering.grounding import ground, question_terms, quote_for, split_sentences, with_quote
from rag.types import Chunk, Hit, Source


def _source(n: int, text: str, title: str = "Doc", score: float = 0.5) -> Source:
    chunk = Chunk(f"c{n}", f"d{n}", text, f"/kb/{n}.md", title)
    return Source(n, Hit(chunk, score))


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


FAQ = [
    _source(
        1,
        "Q: What is the name of the shared print queue?\n"
        "A: All offices use one shared follow-me print queue called NW-Follow-Me.\n"
        "Q: How long are print jobs held?\n"
        "A: Unreleased print jobs are held for 36 hours and then deleted.",
        "Printing FAQ",
    ),
    _source(2, "The print room is on floor 2. Toner is ordered with form IT-12.", score=0.4),
    _source(3, "## 三、住宿与餐补标准\n一线城市出差时，住宿费用每晚不得超过人民币650元。", "差旅"),
    _source(4, "# Print queue\nPrint queue name", score=0.9),
]


def test_quote_for_finds_the_answering_sentence_not_the_faq_question() -> None:
    found = quote_for("What is the shared print queue called?", FAQ)
    assert found is not None
    source, sentence = found
    assert source.n == 1
    # Not the heading or the label of source 4, though they hold the terms and rank higher.
    assert sentence == "A: All offices use one shared follow-me print queue called NW-Follow-Me."
    found = quote_for("How long are print jobs held?", FAQ)
    assert found is not None and "36 hours" in found[1]


def test_quote_for_needs_the_question_terms() -> None:
    # A code in the question must be in the sentence; too few key terms is no quote.
    found = quote_for("Which form orders toner?", FAQ)
    assert found is not None and found[0].n == 2
    assert quote_for("Is form IT-99 for toner?", FAQ) is None
    assert quote_for("What colour is the car park barrier?", FAQ) is None
    assert quote_for("Is it?", FAQ) is None  # nothing to match on
    assert quote_for("How long are print jobs held?", FAQ, min_share=1.0) is None  # "long"


def test_quote_for_reads_chinese_as_words() -> None:
    assert question_terms("一线城市出差住宿每晚的上限是多少？") >= {"住宿", "每晚", "上限"}
    assert "多少" not in question_terms("一线城市出差住宿每晚的上限是多少？")
    found = quote_for("一线城市出差住宿每晚的上限是多少？", FAQ)
    assert found is not None and found[0].n == 3 and "650" in found[1]
    found = quote_for("住宿标准是什么？", FAQ, min_share=0.5)  # the heading holds both words
    assert found is not None and found[1].startswith("一线城市")
    assert prompt.quote_line("住宿上限是多少？", found[1], 3).startswith("资料原文：“一线城市")


def test_with_quote_adds_a_supported_cited_sentence() -> None:
    g = ground("The queue is called PrintHub.", FAQ)
    assert g.unsupported == ["The queue is called PrintHub."] and g.citations == []
    source, sentence = FAQ[0], "A: Unreleased print jobs are held for 36 hours and then deleted."
    line = prompt.quote_line("How long are print jobs held?", sentence, 1)
    assert line == f'The sources say: "{sentence}" [1]'
    quoted = with_quote(g, source, line, sentence)
    assert quoted.unsupported == g.unsupported  # the model's invention stays marked
    assert quoted.sentences[-1].text == f'The sources say: "{sentence}"'
    assert quoted.sentences[-1].citations == (1,) and quoted.sentences[-1].supported
    assert [(c.n, c.snippet) for c in quoted.citations] == [(1, sentence)]
    again = with_quote(quoted, source, line, sentence)
    assert len(again.citations) == 1  # one citation per source
