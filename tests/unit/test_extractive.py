"""Extractive answers and what an answer becomes per answer.mode (no engine: the model's
text is given, as it would stream)."""

from __future__ import annotations

from typing import Any

from rag.answering import wording
from rag.answering.extractive import choose, compose, wants_number
from rag.answering.grounding import Evidence
from rag.answering.verify import Verifier
from rag.config import Settings
from rag.types import Chunk, Hit, Source


def _source(n: int, text: str, title: str = "Doc", section: str = "", score: float = 0.5) -> Source:
    chunk = Chunk(f"c{n}", f"d{n}", text, f"/kb/{n}.md", title, section=section)
    return Source(n, Hit(chunk, score))


TRAVEL = _source(
    1,
    "The table below lists the caps.\n\n| City | Hotel cap | Meal allowance |\n|---|---|---|\n"
    "| Porto | 110 EUR | 40 EUR |\n| Madrid | 135 EUR | 45 EUR |",
    "Travel policy",
    "Hotels",
)
FAQ = _source(
    2,
    "Q: What is the name of the shared print queue?\n"
    "A: All offices use one shared follow-me print queue called NW-Follow-Me.\n"
    "Q: How long are print jobs held?\n"
    "A: Unreleased print jobs are held for 36 hours and then deleted.",
    "Printing FAQ",
)
ZH = _source(
    3,
    "出差时的住宿上限和每日餐补按城市类别执行，详见下表。\n\n"
    "| 城市类别 | 住宿上限（元/晚） | 每日餐补上限（元） |\n|---|---|---|\n"
    "| 一线城市 | 650元 | 180元 |\n| 二线城市 | 480元 | 150元 |\n\n"
    "在一线城市出差时，住宿费用每晚不得超过人民币650元。",
    "差旅与费用报销政策",
    "三、住宿与餐补标准",
)
ALL = [TRAVEL, FAQ, ZH]


def quotes(question: str, sources: list[Source] = ALL, min_score: float = 0.65) -> list[str]:
    return [p.quote for p in choose(question, Evidence(sources), min_score=min_score)]


def test_the_subjects_row_is_chosen_and_an_absent_subject_declines() -> None:
    assert quotes("What is the hotel cap in Madrid?") == [
        "City: Madrid; Hotel cap: 135 EUR; Meal allowance: 45 EUR"
    ]
    assert quotes("what is the hotel cap in porto") == [  # typed in lower case
        "City: Porto; Hotel cap: 110 EUR; Meal allowance: 40 EUR"
    ]
    assert quotes("What is the hotel cap in Lisbon?") == []
    assert quotes("What is the hotel cap in Lisbon?", min_score=0.0) == []  # a name binds


def test_the_number_is_quoted_never_the_pointer_to_the_table() -> None:
    got = quotes("在一线城市出差时，住宿费用每晚上限是多少？")
    assert got[0] == "在一线城市出差时，住宿费用每晚不得超过人民币650元。"
    for q in (
        "在一线城市出差时，住宿费用每晚上限是多少？",
        "住宿上限是多少？",
        "What are the caps?",
    ):
        for quote in quotes(q, min_score=0.0):
            assert "详见下表" not in quote and "table below" not in quote
    assert wants_number("费用发生后多少天内提交？") and wants_number("How long are jobs held?")
    assert not wants_number("Which form is used?")


def test_faq_questions_are_not_answers() -> None:
    assert quotes("What is the name of the shared print queue?") == [
        "A: All offices use one shared follow-me print queue called NW-Follow-Me."
    ]
    assert quotes("How long are print jobs held?")[0].endswith(
        "held for 36 hours and then deleted."
    )


def test_unrelated_questions_decline() -> None:
    assert quotes("Are employees allowed to bring their dogs to the office?") == []
    assert quotes("员工可以带狗来办公室吗？") == []
    assert quotes("What is the stock ticker symbol?") == []


def test_compose_quotes_and_cites_in_the_question_language() -> None:
    picks = choose("在一线城市出差时，住宿费用每晚上限是多少？", Evidence(ALL), min_score=0.65)
    built = compose("在一线城市出差时，住宿费用每晚上限是多少？", picks[:1])
    assert (
        built.text
        == "知识库中的相关内容：\n\n“在一线城市出差时，住宿费用每晚不得超过人民币650元。” [3]"
    )
    assert "".join(built.pieces).strip() == built.text and len(built.pieces) == 2
    lead, quote = built.grounded.sentences
    assert lead.citations == () and lead.supported
    assert quote.citations == (3,) and quote.supported and quote.text.startswith("“")
    assert [c.n for c in built.grounded.citations] == [3]
    assert (
        built.grounded.citations[0].snippet == "在一线城市出差时，住宿费用每晚不得超过人民币650元。"
    )
    english = compose(
        "What is the hotel cap in Madrid?", choose("hotel cap Madrid", Evidence(ALL), min_score=0.5)
    )
    assert english.text.startswith('The knowledge base says:\n\n"City: Madrid;')


def settings(mode: str, **answer: Any) -> Settings:
    return Settings.model_validate({"answer": {"mode": mode, **answer}})


def feed(verifier: Verifier, reply: str) -> list[str]:
    shown = []
    for word in reply.split(" "):
        piece = verifier.feed(word + " ")
        if piece:
            shown.append(piece)
    return shown


def test_generative_text_streams_once_a_sentence_is_verified() -> None:
    question = "What is the name of the shared print queue?"
    v = Verifier(settings("generative"), question, question, ALL)
    shown = feed(v, "Hello there. The shared print queue is called NW-Follow-Me. It is fast.")
    # Held back until the second sentence was verified, then everything streams.
    assert shown[0] == "Hello there. The shared print queue is called NW-Follow-Me. " and v.open
    assert shown[1:] == ["It ", "is ", "fast. "]  # then each piece as the model writes it
    out = v.finish("".join(shown))
    assert out.pieces == [] and not out.quoted and not out.declined and out.withheld == ""
    assert [s.supported for s in out.grounded.sentences] == [True, True, False]


def test_an_unverified_generative_answer_is_never_shown() -> None:
    question = "How long are print jobs held?"
    v = Verifier(settings("generative"), question, question, ALL)
    reply = "Print jobs are held for 12 hours."
    assert feed(v, reply) == []  # never streamed
    out = v.finish(reply + " ")
    assert out.withheld == reply and out.quoted and not out.declined
    assert out.text.startswith(wording.say("unverified", question))
    assert "36 hours" in out.text and reply not in out.text
    assert "".join(out.pieces).strip() == out.text
    assert out.grounded.unsupported == [] and out.grounded.verified
    # Nothing answers it: a decline, in the question's language.
    zh = "公司的股票代码是什么？"
    v = Verifier(settings("generative"), zh, zh, ALL)
    out = v.finish("股票代码是NWR。")
    assert out.declined and out.text == wording.say("decline", zh) and out.grounded.sentences == []
    assert out.text.startswith("知识库中没有")
    # With the fallback off, an unverified answer is declined.
    off = Settings.model_validate({"context": {"quote_fallback": False}})
    out = Verifier(off, question, question, ALL).finish(reply)
    assert out.declined and out.withheld == reply


def test_extractive_and_hybrid_modes() -> None:
    question = "How long are print jobs held?"
    v = Verifier(settings("extractive"), question, question, ALL)
    assert not v.generates
    out = v.finish()
    assert out.quoted and out.text.startswith("The knowledge base says:") and "36 hours" in out.text
    hybrid = Verifier(settings("hybrid"), question, question, ALL)
    assert hybrid.generates and feed(hybrid, "Print jobs are held for 36 hours.") == []
    good = hybrid.finish("Print jobs are held for 36 hours.")
    assert good.text == "Print jobs are held for 36 hours." and good.pieces == [good.text]
    hybrid = Verifier(settings("hybrid"), question, question, ALL)
    bad = hybrid.finish("Print jobs are held for 36 hours. They cost 5 EUR.")
    assert bad.withheld and bad.text.startswith("The knowledge base says:")


def test_the_sentence_being_written_opens_the_stream_at_a_supported_number() -> None:
    question = "How long are print jobs held?"
    v = Verifier(settings("generative"), question, question, ALL)
    shown = feed(v, "Unreleased print jobs are held for 36 hours and then deleted.")
    assert shown[0] == "Unreleased print jobs are held for 36 "
    assert shown[1:] == ["hours ", "and ", "then ", "deleted. "]
    # A number still being written ("3" of "36") or a cut code opens nothing.
    v = Verifier(settings("generative"), question, question, ALL)
    assert v.feed("Jobs are held for 3") == "" and not v.open
    question = "What is the name of the shared print queue?"
    v = Verifier(settings("generative"), question, question, ALL)
    pieces = ["The", " shared print queue", " is called", " NW", "-Follow", "-Me", "."]
    shown = [v.feed(p) for p in pieces]
    assert shown == ["", "", "", "", "", "The shared print queue is called NW-Follow-Me", "."]
    assert v.finish("".join(shown)).grounded.verified


def test_a_stream_opened_on_a_number_that_ends_unsupported_gets_the_notice() -> None:
    question = "How long are print jobs held?"
    v = Verifier(settings("generative"), question, question, ALL)
    reply = "Print jobs are held for 36 days."
    shown = feed(v, reply)
    assert shown and "".join(shown).strip() == reply  # opened at "36", shown as written
    out = v.finish("".join(shown))
    assert out.text.startswith(reply + " \n\n" + wording.say("unverified", question))
    assert "".join([*shown, *out.pieces]).strip() == out.text
    assert out.grounded.unsupported == [reply] and out.quoted
