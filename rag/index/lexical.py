"""Text -> keyword terms for BM25 (the only importer of ``jieba``).

- Latin-script words are lower-cased, split on anything that is not a letter or digit,
  stripped of English stop words and lightly stemmed (plural and common suffixes), so
  "policies" and "policy" meet. Codes keep their parts: ``NW-Staff`` -> ``nw``, ``staff``.
- Chinese (and other CJK ideographs) are segmented into words with ``jieba`` in search mode
  (which also emits the shorter words inside long ones), instead of one token per line or
  per sentence. Kana and Hangul runs are split into overlapping character bigrams.
- jieba loads its dictionary on first use (about a second); nothing happens at import.
"""

from __future__ import annotations

import logging
import re
import threading
import warnings
from functools import lru_cache
from typing import Any, Literal

_RUN = re.compile(
    r"(?P<cjk>[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+)"
    r"|(?P<kana>[\u3040-\u30ff\uac00-\ud7af]+)"
    r"|(?P<word>[^\W_\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+)",
    re.UNICODE,
)
_LATIN_WORD = re.compile(r"^[a-z0-9]+$")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_WORD_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z'-]{2,}")

Language = Literal["en", "zh"]


def has_han(text: str) -> bool:
    """Whether ``text`` holds Chinese characters (CJK ideographs)."""
    return _HAN.search(text) is not None


def language(text: str) -> Language:
    """``"zh"`` when ``text`` is mostly Chinese (at least as many Han characters as Latin
    words of three letters or more, and at least one), else ``"en"``: the question's
    language for answers, and for fusion weights (``retrieval.unread_dense_weight``)."""
    han = len(_HAN.findall(text))
    return "zh" if han > 0 and han >= len(_LATIN_WORD_IN_TEXT.findall(text)) else "en"


STOP_WORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
    ]
)
# Chinese function words that carry no topic (search mode would index them everywhere).
CJK_STOP_WORDS = frozenset(
    [
        "的",
        "了",
        "和",
        "是",
        "在",
        "有",
        "与",
        "或",
        "及",
        "等",
        "也",
        "就",
        "都",
        "而",
        "把",
        "被",
        "对",
        "为",
        "以",
        "之",
        "其",
        "中",
        "个",
        "吗",
        "呢",
        "吧",
        "啊",
    ]
)

_jieba_lock = threading.Lock()
_jieba: Any = None


def _segmenter() -> Any:
    global _jieba
    with _jieba_lock:
        if _jieba is None:
            with warnings.catch_warnings():
                # jieba imports pkg_resources, which warns on import.
                warnings.simplefilter("ignore", DeprecationWarning)
                import jieba

            jieba.setLogLevel(logging.WARNING)
            jieba.initialize()
            _jieba = jieba
        return _jieba


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """A light English stemmer (plurals, -ing, -ed, -ly, -ation): cheap and predictable."""
    if len(word) <= 3 or not word.isascii() or not word.isalpha():
        return word
    for suffix, repl, min_left in (
        ("ational", "ate", 3),
        ("ization", "ize", 3),
        ("fulness", "ful", 3),
        ("iveness", "ive", 3),
        ("ations", "ate", 3),
        ("ation", "ate", 3),
        ("ingly", "", 4),
        ("edly", "", 4),
        ("ies", "y", 2),
        ("ied", "y", 2),
        ("sses", "ss", 2),
        ("ness", "", 4),
        ("ment", "", 4),
        ("ing", "", 4),
        ("ly", "", 4),
        ("ed", "", 4),
        ("es", "", 4),
        ("s", "", 3),
    ):
        if word.endswith(suffix) and len(word) - len(suffix) >= min_left:
            if suffix == "s" and word.endswith(("ss", "us", "is")):
                return word
            if suffix == "es" and not word.endswith(("ches", "shes", "xes", "zes", "sses")):
                return word[:-1]
            return word[: len(word) - len(suffix)] + repl
    return word


def _bigrams(run: str) -> list[str]:
    if len(run) == 1:
        return [run]
    return [run[i : i + 2] for i in range(len(run) - 1)]


def analyze(text: str, *, stemming: bool = True) -> list[str]:
    """The BM25 terms of ``text`` in order (duplicates kept: they are term frequencies)."""
    terms: list[str] = []
    for match in _RUN.finditer(text.lower()):
        if match.lastgroup == "cjk":
            for word in _segmenter().lcut_for_search(match.group()):
                word = word.strip()
                if word and word not in CJK_STOP_WORDS:
                    terms.append(word)
        elif match.lastgroup == "kana":
            terms.extend(_bigrams(match.group()))
        else:
            word = match.group()
            if word in STOP_WORDS:
                continue
            if stemming and _LATIN_WORD.match(word):
                word = stem(word)
            terms.append(word)
    return terms


def in_dictionary(word: str) -> bool:
    """Whether jieba's dictionary knows ``word`` (else it is a guess of its HMM, such as
    "假能" cut from "年假能不能")."""
    return bool(_segmenter().dt.FREQ.get(word))


def word_frequency(word: str) -> int:
    """How often jieba's dictionary saw ``word`` (0: unknown): the commoner of two
    translations is the likelier one."""
    return int(_segmenter().dt.FREQ.get(word) or 0)
