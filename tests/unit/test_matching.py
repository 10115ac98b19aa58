"""Question-against-question matching (rag/answering/matching.py): the guards that keep a
cached or curated answer from reaching a question that asks something else."""

from __future__ import annotations

import pytest

from rag.answering.matching import (
    Match,
    asks,
    best_match,
    conflicts,
    content_terms,
    cosine,
    negated,
    normalize,
    numbers,
)


def never(_: str) -> bool:
    return False


def always(_: str) -> bool:
    return True


def test_normalize_folds_width_case_punctuation_and_space() -> None:
    assert normalize("  Ｗｈａｔ　is the  Wi-Fi password？？ ") == "what is the wi-fi password"
    assert normalize("年假 可以 结转吗？") == "年假可以结转吗"
    assert normalize("Don't I get 1.5 days?") == "don't i get 1.5 days"
    assert normalize("IT-245!") == "it-245"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3 days or 5 days", {3.0, 5.0}),
        ("三天年假", {3.0}),
        ("二十五个工作日", {25.0}),
        ("一千二百元", {1200.0}),
        ("a contract worth EUR 60,000", {60000.0}),
        ("contract value 60k euros", {60000.0}),
        ("合同金额150万", {1_500_000.0}),
        ("twice a month", {2.0}),
        ("一般要多久", set()),
        ("出差一天补贴多少", set()),  # a lone 一: per day
        ("星期一开放吗", set()),
        ("上午九点到十一点", {9.0, 11.0}),
        ("which one is mine", set()),
    ],
)
def test_numbers_are_read_as_values(text: str, expected: set[float]) -> None:
    assert numbers(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Can I work without a privacy screen?", True),
        ("What if I don't check in?", True),
        ("Is there no parking?", True),
        ("Can I work with a privacy screen?", False),
        ("不能报销打车费吗", True),
        ("没点链接怎么办", True),
        ("能不能报销打车费", False),  # A-not-A asks, it does not negate
        ("有没有停车位", False),
        ("无线网络密码是什么", False),
        ("未来三年的规划", False),
    ],
)
def test_negation(text: str, expected: bool) -> None:
    assert negated(text) is expected


def test_what_a_question_asks_for() -> None:
    assert asks("How much is the home office allowance?") == {"amount"}
    assert asks("When can I claim the home office allowance?") == {"time"}
    assert asks("How long is probation?") == {"duration"}
    assert asks("年终奖什么时候发") == {"time"}
    assert asks("上海产假多少天") == {"count"}
    assert asks("Can I bring my laptop?") == set()


def test_content_terms_leave_out_frames_numbers_and_negations() -> None:
    assert content_terms("How do I get the guest Wi-Fi password, please?") == {
        "guest",
        "wifi",
        "password",
    }
    assert "不能" not in content_terms("能不能报销打车费")
    assert not {t for t in content_terms("三天年假") if "三" in t}


@pytest.mark.parametrize(
    ("a", "b", "reason"),
    [
        ("How many days of leave in 2025?", "How many days of leave in 2026?", "numbers"),
        ("年假有三天吗", "年假有5天吗", "numbers"),
        ("Can I work in a café with a privacy screen?", "... without a privacy screen?", "neg"),
        ("发票丢了能报销吗", "发票丢了不能报销吗", "negation"),
        ("How long is probation in London?", "伦敦的试用期多长", "language"),
        (
            "How much is the home office allowance?",
            "When can I claim the home office allowance?",
            "asks",
        ),
        ("Which laptop do engineering staff get?", "Which laptop do other staff get?", "terms"),
        ("When is payday in Berlin?", "When is payday in London?", "terms"),
        ("What is the guest Wi-Fi password?", "What is the staff Wi-Fi password?", "terms"),
        ("上海陪产假几天", "北京陪产假几天", "terms"),
        ("年假可以结转吗", "病假可以结转吗", "terms"),
        ("PineGPT 上传文件有大小限制吗", "上传文件有大小限制吗", "terms"),  # Latin in Chinese
    ],
)
def test_questions_that_ask_different_things_conflict(a: str, b: str, reason: str) -> None:
    # Even when no word is distinctive by itself, these differ.
    found = conflicts(a, b, distinctive=never)
    assert found is not None and found.startswith(reason[:3]), found
    assert conflicts(b, a, distinctive=never) is not None


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("How long is probation in Berlin?", "how long is probation in berlin ?"),
        ("How many days of annual leave do I get?", "how many days of anual leave do i get"),
        ("What is the guest Wi-Fi password?", "what's the password for the guest wifi"),
        ("How do I reset my password?", "Hey, how can I reset my password please?"),
        ("年假可以结转吗？", "年假能结转吗"),
        ("能不能报销打车费", "可以报销打车费吗"),
        ("三天年假", "3天年假"),
    ],
)
def test_rewordings_do_not_conflict(a: str, b: str) -> None:
    assert conflicts(a, b, distinctive=always) is None


def test_an_added_word_conflicts_only_when_distinctive() -> None:
    a, b = "What laptop do engineers get?", "What laptop do engineers get in Madrid?"
    assert conflicts(a, b, distinctive=never) is None
    assert conflicts(a, b, distinctive=lambda t: t == "madrid") == "terms differ: madrid"
    assert conflicts(a, b) == "terms differ: madrid"  # no callable: every word counts


def test_cosine() -> None:
    assert cosine([1.0, 0.0], [1.0, 0.0]) == pytest.approx(1.0)
    assert cosine([1.0, 0.0], [0.0, 2.0]) == pytest.approx(0.0)
    assert cosine([1.0, 1.0], [1.0, 0.0]) == pytest.approx(0.7071, abs=1e-4)
    assert cosine([0.0, 0.0], [1.0, 0.0]) == 0.0
    assert cosine([1.0], [1.0, 0.0]) == 0.0


def test_best_match_takes_the_closest_candidate_without_a_conflict() -> None:
    candidates = [
        ("When is payday in London?", [1.0, 0.0, 0.0]),  # closest, but another city
        ("when is payday in berlin", [0.9, 0.1, 0.0]),
        ("How do I reset my password?", [0.0, 1.0, 0.0]),
    ]
    found = best_match(
        "When's payday in Berlin?", [1.0, 0.0, 0.0], candidates, threshold=0.8, distinctive=always
    )
    assert found is not None
    index, match = found
    assert index == 1 and match.reason is None and match.score > 0.8
    assert (
        best_match("When's payday in Berlin?", [0.0, 0.0, 1.0], candidates, threshold=0.8) is None
    )


def test_equal_normalized_text_always_matches() -> None:
    candidates = [("how long is probation in berlin", [0.0, 1.0])]
    found = best_match("How long is probation in Berlin?", [1.0, 0.0], candidates, threshold=0.99)
    assert found == (0, Match(score=0.0, reason=None))
