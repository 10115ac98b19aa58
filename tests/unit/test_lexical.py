"""BM25 terms: Chinese is segmented into words, English is stemmed and stop words dropped."""

from __future__ import annotations

from rag.index.lexical import analyze, language, stem


def test_chinese_is_segmented_into_words_not_one_token_per_line() -> None:
    terms = analyze("差旅报销的每日餐补标准是多少？出差住宿费用上限为每晚600元。")
    assert {"差旅", "报销", "餐补", "住宿", "上限", "600"} <= set(terms)
    assert all(len(t) <= 4 for t in terms), terms
    assert "的" not in terms


def test_english_terms_are_lowercased_stemmed_and_stop_words_dropped() -> None:
    assert analyze("The Policies of the VPN sessions") == ["policy", "vpn", "session"]
    assert stem("policies") == stem("policy")
    assert analyze("NW-Staff 4410") == ["nw", "staff", "4410"]


def test_mixed_scripts_keep_numbers_apart_from_chinese() -> None:
    assert analyze("每晚600元 ISO-27001") == ["每晚", "600", "元", "iso", "27001"]


def test_a_question_is_chinese_when_han_characters_outnumber_latin_words() -> None:
    assert language("出差住宿每晚上限多少钱") == "zh"
    assert language("VPN 怎么连接") == "zh"  # a product name inside a Chinese question
    assert language("How do I reset the VPN?") == "en"
    assert language("What does 年假 mean in the leave policy?") == "en"
    assert language("NW-Staff 4410") == "en"  # no Han characters at all
    assert language("") == "en"
