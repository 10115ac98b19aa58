"""Sentence-level grounding: a number, code or name is supported only by the source unit
(table row, list item, sentence) that also carries the sentence's subject; wrong citations
corrected, missing ones attached, invented facts marked unsupported, unknown numbers dropped."""

from __future__ import annotations

import pytest

from rag.answering.facts import Quantity, facts_of, quantities
from rag.answering.grounding import ground, split_sentences
from rag.answering.sentences import units_of
from rag.types import Chunk, Hit, Source


def _source(n: int, text: str, title: str = "Doc", section: str = "") -> Source:
    chunk = Chunk(f"c{n}", f"d{n}", text, f"/kb/{n}.md", title, section=section)
    return Source(n, Hit(chunk, 0.5))


def supported(answer: str, sources: list[Source]) -> list[tuple[bool, tuple[int, ...]]]:
    return [(s.supported, s.citations) for s in ground(answer, sources).sentences]


TRAVEL = _source(
    1,
    "Hotel caps per night are listed below.\n\n"
    "| City | Hotel cap | Meal allowance |\n|---|---|---|\n"
    "| Porto | 110 EUR | 40 EUR |\n| Madrid | 135 EUR | 45 EUR |",
    "Travel policy",
    "Hotels",
)
ZH_TABLE = _source(
    2,
    "出差时的住宿上限和每日餐补按城市类别执行，详见下表。\n\n"
    "| 城市类别 | 示例城市 | 住宿上限（元/晚） | 每日餐补上限（元） |\n"
    "|----------|----------|-------------------|--------------------|\n"
    "| 一线城市 | 北京、上海、广州 | 650元 | 180元 |\n"
    "| 二线城市 | 杭州、成都、武汉 | 480元 | 150元 |\n"
    "| 其他城市 | 其他地区 | 350元 | 120元 |",
    "差旅与费用报销政策",
    "三、住宿与餐补标准",
)


def test_a_table_fact_is_bound_to_its_row_madrid_is_not_porto() -> None:
    # The case: "Madrid" and "110 EUR" both occur in the source, in different rows.
    assert supported("The hotel cap in Madrid is 110 EUR.", [TRAVEL]) == [(False, ())]
    for right in (
        "The hotel cap in Madrid is 135 EUR.",
        "In Madrid hotels are capped at EUR 135 per night.",
        "Madrid: €135.",
        "The hotel cap in Porto is 110 EUR.",
    ):
        assert supported(right, [TRAVEL]) == [(True, (1,))], right
    g = ground("The hotel cap in Madrid is 135 EUR.", [TRAVEL])
    # The citation quotes the row that holds the fact, with its column names.
    assert g.citations[0].snippet == "City: Madrid; Hotel cap: 135 EUR; Meal allowance: 45 EUR"


def test_a_chinese_table_fact_is_bound_to_its_row() -> None:
    assert supported("一线城市的住宿上限是480元。", [ZH_TABLE]) == [(False, ())]
    assert supported("一线城市每日餐补上限是650元。", [ZH_TABLE]) == [(False, ())]
    for right in (
        "一线城市的住宿上限是650元。",
        "一线城市住宿每晚不超过￥650。",
        "二线城市的住宿上限为480 RMB。",
        "一线城市每日餐补上限为１８０元。",  # full-width digits
    ):
        assert supported(right, [ZH_TABLE]) == [(True, (2,))], right
    g = ground("二线城市住宿上限是480元。", [ZH_TABLE])
    assert g.citations[0].snippet.startswith("城市类别：二线城市；")


def test_prose_facts_are_bound_to_their_sentence_in_either_order() -> None:
    for text in (
        "Porto hotels are capped at 110 EUR per night. Madrid hotels are capped at 135 EUR.",
        "Madrid hotels are capped at 135 EUR per night. Porto hotels are capped at 110 EUR.",
    ):
        source = _source(1, text)
        assert supported("Madrid hotels are capped at 110 EUR.", [source]) == [(False, ())]
        assert supported("Madrid hotels are capped at 135 EUR.", [source]) == [(True, (1,))]


def test_chinese_prose_is_split_on_semicolons_and_bound() -> None:
    source = _source(
        3,
        "在一线城市出差时，住宿费用每晚不得超过人民币650元；"
        "在二线城市出差时，住宿费用每晚不得超过人民币480元。",
    )
    assert [u.text for u in units_of(source.hit.chunk.text)] == [
        "在一线城市出差时，住宿费用每晚不得超过人民币650元；",
        "在二线城市出差时，住宿费用每晚不得超过人民币480元。",
    ]
    assert supported("在一线城市出差时，住宿费用每晚上限为480元。", [source]) == [(False, ())]
    assert supported("在二线城市出差，住宿每晚不超过480元。", [source]) == [(True, (3,))]


def test_list_items_bind_their_subject() -> None:
    source = _source(
        4,
        "Badge desks open at these times:\n\n- Oslo: the badge desk opens at 08:00.\n"
        "- Bergen: the badge desk opens at 09:00.",
    )
    kinds = [(u.kind, u.text) for u in units_of(source.hit.chunk.text)]
    assert kinds[1:] == [
        ("item", "Oslo: the badge desk opens at 08:00."),
        ("item", "Bergen: the badge desk opens at 09:00."),
    ]
    assert supported("The Bergen badge desk opens at 08:00.", [source]) == [(False, ())]
    assert supported("The Bergen badge desk opens at 09:00.", [source]) == [(True, (4,))]


def test_chinese_list_items_bind_their_subject() -> None:
    source = _source(
        6,
        "各办公室前台开放时间：\n\n- 上海办公室：前台早上8点开门。\n"
        "- 北京办公室：前台早上9点开门。",
    )
    kinds = [(u.kind, u.text) for u in units_of(source.hit.chunk.text)]
    assert kinds[1:] == [
        ("item", "上海办公室：前台早上8点开门。"),
        ("item", "北京办公室：前台早上9点开门。"),
    ]
    assert supported("北京办公室的前台早上8点开门。", [source]) == [(False, ())]
    assert supported("北京办公室的前台早上９点开门。", [source]) == [(True, (6,))]


def test_numbers_match_as_whole_tokens_with_their_units() -> None:
    source = _source(
        5, "Unreleased print jobs are held for 36 hours. Claims above 5,000 EUR need a VP."
    )
    assert supported("Print jobs are held for 3 hours.", [source]) == [(False, ())]
    assert supported("Print jobs are held for 36 days.", [source]) == [(False, ())]
    assert supported("Print jobs are held for 36 hours.", [source]) == [(True, (5,))]
    assert supported("Claims above EUR 5000 need a VP.", [source]) == [(True, (5,))]


def test_a_quantitys_unit_is_no_subject_word() -> None:
    """The unit is checked with its number: "3 days" in a source about accounts holds the
    number and "day", but nothing of what the sentence says happens after 3 days."""
    print_faq = _source(1, "Unreleased print jobs are held for 36 hours.")
    accounts = _source(
        3,
        "New accounts are created 3 working days before the employee's first day.\n\n"
        "| Form | Used for | Typical turnaround |\n|---|---|---|\n"
        "| IT-240 | Software not available in AppShelf | 3 to 8 working days |",
    )
    answer = "Unreleased print jobs are held for 36 hours [1]. They are deleted after 3 days."
    assert supported(answer, [print_faq, accounts]) == [(True, (1,)), (False, ())]
    # A sentence that says what the unit says is still bound to it.
    assert supported("Accounts are created 3 working days before the first day.", [accounts]) == [
        (True, (3,))
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("135 EUR", [Quantity("135", "eur")]),
        ("EUR 135", [Quantity("135", "eur")]),
        ("€135", [Quantity("135", "eur")]),
        ("650元", [Quantity("650", "cny")]),
        ("650 元", [Quantity("650", "cny")]),
        ("￥650", [Quantity("650", "cny")]),
        ("人民币650元", [Quantity("650", "cny")]),
        ("650 RMB", [Quantity("650", "cny")]),
        ("３６小时", [Quantity("36", "hour")]),
        ("5,000", [Quantity("5000", None)]),
        ("0.350 EUR", [Quantity("0.35", "eur")]),
        ("form IT-207 in room B214", []),  # digits inside codes are the codes'
    ],
)
def test_quantities_normalise_units_and_digits(text: str, expected: list[Quantity]) -> None:
    from rag.answering.facts import normalize

    assert quantities(normalize(text)) == expected


def test_facts_of_a_sentence() -> None:
    facts = facts_of("The hotel cap in Madrid is 110 EUR, booked with form TR-9.")
    assert facts.names == {"madrid"} and facts.codes == {"tr-9"}
    assert facts.quantities == (Quantity("110", "eur"),)
    assert {"hotel", "cap"} <= facts.words


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
    assert g.citations[0].snippet == "The guest Wi-Fi password is harbor-blue-42."
    assert g.text_with_citations().startswith("The guest Wi-Fi password is harbor-blue-42 [1].")


def test_invented_numbers_and_names_are_unsupported() -> None:
    g = ground("A VPN session disconnects after 12 hours [2]. The client is SecureLink.", SOURCES)
    assert [s.supported for s in g.sentences] == [False, False]
    assert g.citations == [] and len(g.unsupported) == 2 and not g.verified


def test_unknown_numbers_dropped_and_non_claims_left_alone() -> None:
    g = ground("A VPN session disconnects after 9 hours [7]. I hope this helps!", SOURCES)
    assert g.sentences[0].citations == (2,) and g.sentences[0].model_citations == (7,)
    assert g.sentences[1].supported and g.sentences[1].citations == ()
    declined = ground("The knowledge base does not cover this question.", SOURCES)
    assert declined.sentences[0].supported and declined.citations == []
    assert not declined.verified


def test_chinese_sentences_are_checked_too() -> None:
    g = ground("出差住宿每晚上限600元。餐补每日300元。", SOURCES)
    assert [s.supported for s in g.sentences] == [True, False]
    assert g.sentences[0].citations == (3,)


def test_split_sentences_keeps_markers_with_their_sentence() -> None:
    assert split_sentences("One is 1. [1] Two is 2 [2]! 三是3。四；五 e.g. six") == [
        "One is 1. [1]",
        "Two is 2 [2]!",
        "三是3。",
        "四；",
        "五 e.g. six",
    ]
