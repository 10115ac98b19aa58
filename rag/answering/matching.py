"""Question against question: when may an answer to one question serve another?

Shared by the answer cache (:mod:`rag.answering.cache`) and curated answers. Two questions
match when their embeddings are close (:func:`cosine` at or above a threshold chosen on
data) and nothing says they ask different things (:func:`conflicts`):

- the numbers differ ("3 days" vs "5 days"; digits, English number words and Chinese
  numerals are read as values, so "3天" and "三天" agree, and "60k" is 60,000),
- one is negated and the other is not ("with" vs "without", "能报" vs "不能报"; the
  Chinese A-not-A question form "能不能" is not a negation),
- the language differs (a Chinese question never gets an English answer, nor the reverse),
- they ask for different kinds of answer ("how much" vs "when", "多少钱" vs "什么时候"),
- a word that changes the question is in one only ("other staff", "only", "over"),
- a content word is replaced by another ("guest" vs "staff" Wi-Fi, "Berlin" vs "London",
  "上海" vs "北京"; a typo, one letter inserted, dropped or swapped, is the same word),
- a *distinctive* content word is added on one side ("engineering laptops" vs "laptops",
  "in Madrid"). What is distinctive is the caller's choice (the ``distinctive`` callable
  gets analysed terms: lower-cased, stemmed, Chinese segmented by jieba,
  :func:`rag.index.lexical.analyze`); the answer cache asks the knowledge base's BM25
  index (a word rare in the caller's passages, or unknown to them, names a thing), and
  without a callable every content word counts. Words that only frame a question ("how",
  "get", "please", "怎么", "请问") never count; Chinese words are compared by their
  characters, since jieba cuts two wordings of one question differently.

Matching is deliberately one-sided: a false hit gives a wrong answer with citations that
look right, a missed paraphrase costs one ordinary answer. Exact equality of the
normalized text (:func:`normalize`) always matches.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from rag.index.lexical import analyze, has_han, language

__all__ = [
    "Match",
    "asks",
    "best_match",
    "conflicts",
    "content_terms",
    "cosine",
    "negated",
    "normalize",
    "numbers",
]

_SPACE = re.compile(r"\s+")
_HAN_SPACE = re.compile(r"(?<=[\u3400-\u4dbf\u4e00-\u9fff]) (?=[\u3400-\u4dbf\u4e00-\u9fff])")


def normalize(text: str) -> str:
    """NFKC (full-width forms become ASCII), case-folded, punctuation and symbols removed,
    whitespace collapsed, thousands separators dropped ("60,000" is "60000"); Chinese
    characters are kept as they are (a space between two Chinese characters is dropped:
    Chinese is written without them)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    folded = re.sub(r"(?<=\d),(?=\d{3}\b)", "", folded)  # 60,000 -> 60000
    kept = "".join(
        " " if unicodedata.category(ch)[0] in "PSZC" and ch not in "'-." else ch for ch in folded
    )
    # Keep an apostrophe inside a word ("don't"), a hyphen inside a code ("it-245") and a
    # decimal point inside a number ("1.5"); drop them elsewhere.
    kept = re.sub(r"(?<![\w])['.-]|['.-](?![\w])", " ", kept)
    kept = re.sub(r"(?<=[a-z])\.(?=[a-z])", " ", kept)
    return _HAN_SPACE.sub("", _SPACE.sub(" ", kept).strip())


# -- numbers ---------------------------------------------------------------------------------

_DIGITS = re.compile(r"\d+(?:[.,]\d+)*")
_SCALED = re.compile(r"(\d+(?:[.,]\d+)*)\s?(k|万|千|m|百万|亿)?(?![a-z])")
_SCALES = {"k": 1e3, "千": 1e3, "万": 1e4, "m": 1e6, "百万": 1e6, "亿": 1e8}
_EN_NUMBERS = {
    "zero": 0,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "hundred": 100,
    "thousand": 1000,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
    "tenth": 10,
    "eleventh": 11,
    "twelfth": 12,
    "thirteenth": 13,
    "once": 1,
    "twice": 2,
    "half": 0.5,
    "double": 2,
}
_EN_NUMBER = re.compile(r"\b(" + "|".join(_EN_NUMBERS) + r")\b")
_ZH_DIGIT = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5}
_ZH_DIGIT |= {"六": 6, "七": 7, "八": 8, "九": 9}
_ZH_UNIT = {"十": 10, "百": 100, "千": 1000, "万": 10_000, "亿": 100_000_000}
_ZH_NUMERAL = re.compile("[零〇一二两三四五六七八九十百千万亿半]+")
# Words that hold a numeral character without counting anything ("一般" = usually).
_ZH_NOT_NUMBERS = re.compile(
    "(?<![零〇一二两三四五六七八九十百千万亿])(?:"  # "十一点" is eleven o'clock
    "一般|一下|一起|一直|一定|一样|一些|一切|一致|一律|一旦|一点|一向|一边|统一|唯一|万一|一共|"
    "之一|一体|一键|不一|同一|逐一|进一步|一线|一并|一贯|千万|万元|百分|十分|一方面|"
    "星期[一二三四五六日天]|周[一二三四五六日]|礼拜[一二三四五六日天])"
)


def _zh_value(run: str) -> float:
    """The value of a run of Chinese numerals ("二十五" -> 25, "一千二" -> 1200, "半" -> 0.5)."""
    if run == "半":
        return 0.5
    if all(ch in _ZH_DIGIT for ch in run):  # digit by digit: "二〇二五"
        return float("".join(str(_ZH_DIGIT[ch]) for ch in run))
    total, section, digit = 0, 0, 0
    last_unit = 1
    for ch in run:
        if ch in _ZH_DIGIT:
            digit = _ZH_DIGIT[ch]
        elif ch in _ZH_UNIT:
            unit = _ZH_UNIT[ch]
            if unit >= 10_000:
                total += (section + digit) * unit
                section, digit = 0, 0
            else:
                section += (digit or 1) * unit
                digit = 0
            last_unit = unit
    # "一千二" is 1200: a trailing digit after a unit counts at the next unit down.
    tail = digit * (last_unit // 10) if last_unit >= 100 and digit else digit
    return float(total + section + tail)


def numbers(text: str) -> frozenset[float]:
    """The numbers a question names, as values (digits, with "60k" and "150万" scaled,
    English number words, Chinese numerals; the days of the week, words such as "一般" and
    a lone "一" ("一天": per day) are not numbers, nor is "one")."""
    norm = normalize(text)
    found: set[float] = set()
    for match in _DIGITS.finditer(norm):
        raw = match.group().replace(",", "")
        scale = _SCALED.match(norm, match.start())
        factor = _SCALES.get(scale.group(2) or "", 1.0) if scale else 1.0
        try:
            found.add(float(raw) * factor)
        except ValueError:  # "1.2.3": a version, keep it as text
            found.add(float(hash(raw)))
    for match in _EN_NUMBER.finditer(norm):
        found.add(float(_EN_NUMBERS[match.group()]))
    zh = _ZH_NOT_NUMBERS.sub(" ", norm)
    for match in _ZH_NUMERAL.finditer(zh):
        if match.group() == "一":  # "一天多少", "一个月": per day, a month
            continue
        if match.start() and zh[match.start() - 1].isdigit():  # "150万": read with its digits
            continue
        found.add(_zh_value(match.group()))
    return frozenset(found)


# -- negation --------------------------------------------------------------------------------

_EN_NEGATION = re.compile(
    r"\b(not|no|never|without|except|excluding|nor|neither|none|nobody|nothing|cannot|"
    r"unless|non|nowhere|w/o)\b|n't\b|\bno-"
)
# The A-not-A question form asks, it does not negate: 能不能, 是不是, 有没有, 可不可以.
_ZH_A_NOT_A = re.compile(r"(.)[不没]\1")
_ZH_NOT_NEGATION = re.compile(
    "无线|未来|别人|特别|区别|类别|级别|分别|告别|识别|性别|个别|辨别|鉴别|别的|非常|"
    "非洲|无论|是否|否则|不同|不少|不错|不过|不断|不久|不仅|差不多|不一定|并非|无关|无误|"
    "不管|毫无|要不然"
)
_ZH_NEGATION = re.compile("[不没无非别未勿莫否禁免]")


def negated(text: str) -> bool:
    """Whether the question is negated (English: not, no, never, without, except, n't...;
    Chinese: 不, 没(有), 无, 非, 别, 未...). The A-not-A question form ("能不能") and
    words that merely contain such a character ("无线", "未来", "特别") do not count."""
    norm = normalize(text)
    if _EN_NEGATION.search(norm):
        return True
    zh = _ZH_NOT_NEGATION.sub(" ", _ZH_A_NOT_A.sub(" ", norm))
    return _ZH_NEGATION.search(zh) is not None


# -- what is asked for -----------------------------------------------------------------------

_ASKS = {
    "amount": re.compile(
        r"\bhow much\b|\bwhat amount\b|\bhow expensive\b|多少钱|多少元|几块钱|多少费用|"
        r"多少(?![天个次台周张条项位年月小分秒])"
    ),
    "count": re.compile(r"\bhow many\b|几[天个年次台周张条项位]|多少[天个次台周张条项位]|几个月"),
    "time": re.compile(
        r"\bwhen\b|\bwhat time\b|\bwhich day\b|\bwhat day\b|\bwhat date\b|\buntil when\b|"
        r"什么时候|几点|哪天|几号|哪一天|何时|几月"
    ),
    "duration": re.compile(r"\bhow long\b|\bhow soon\b|多久|多长时间|多长"),
    "frequency": re.compile(r"\bhow often\b|\bhow frequently\b|多久一次|多频繁"),
    "person": re.compile(r"\bwho\b|\bwhom\b|\bwhose\b|谁|哪位"),
    "place": re.compile(r"\bwhere\b|哪里|在哪|哪儿|什么地方"),
}


def asks(text: str) -> frozenset[str]:
    """What kind of answer a question asks for, where its words say so: ``amount``,
    ``count``, ``time``, ``duration``, ``frequency``, ``person``, ``place`` (empty: not
    said, e.g. a yes/no question)."""
    norm = normalize(text)
    return frozenset(kind for kind, pattern in _ASKS.items() if pattern.search(norm))


# -- content terms ---------------------------------------------------------------------------

_FRAME_EN = (
    "get got need needs want know tell please many much long often ask asking question "
    "find way ways allowed allow possible able use using make go going happen happens "
    "like also still actually exactly really us let lets one ones kind type thing things "
    "something anything someone anyone anybody give given take taken okay ok hi hey hello "
    "thanks thank pls plz specific specifically currently usually normally typically "
    "generally exact"
)
# Words that frame a question without naming what it is about: never distinctive.
_FRAME_ZH = frozenset(
    [
        "怎么",
        "怎样",
        "怎么样",
        "如何",
        "什么",
        "多少",
        "几",
        "哪",
        "哪些",
        "哪里",
        "哪儿",
        "哪个",
        "吗",
        "能",
        "能否",
        "可以",
        "可",
        "需要",
        "要",
        "请问",
        "请",
        "多久",
        "多长",
        "时间",
        "我",
        "我们",
        "你",
        "你们",
        "是不是",
        "能不能",
        "可不可以",
        "有没有",
        "会",
        "该",
        "应该",
        "一下",
        "呀",
        "么",
        "啥",
        "咋",
        "得",
        "还",
        "想",
        "谁",
        "具体",
        "一般",
        "通常",
        "平时",
        "大概",
        "到底",
        "究竟",
        "现在",
        "目前",
        "请教",
        "麻烦",
        "谢谢",
    ]
)


@lru_cache(maxsize=1)
def frame_words() -> frozenset[str]:
    """The analysed words that frame a question without naming what it is about (never
    distinctive): "how", "get", "need", "怎么", "多少"..."""
    return frozenset(analyze(_FRAME_EN)) | _FRAME_ZH


# Characters that only frame a Chinese question (asking, modality, pronouns, particles).
_FRAME_CHARS = frozenset(
    "吗呢吧啊呀么嘛能可以要会该请问怎样如何什多少几哪里儿个些谁啥咋我你您们的了是有在还想得和与或就都也把被对为之其着过到给让"
)
# Stop words that change what is asked ("other staff", "only", "over 50"): compared as they are.
_QUALIFIER = re.compile(
    r"\b(other|others|another|else|only|same|different|all|both|each|every|either|few|more|"
    r"most|less|least|some|than|against|before|after|above|below|over|under|off|out|up|"
    r"down|between|during|until|while|own|first|last|next|previous|former|new|old|early|"
    r"late|min|max|minimum|maximum)\b"
)
_HYPHENATED = re.compile(r"(?<=[a-z])-(?=[a-z])")
_NEGATION_TERMS = frozenset(["not", "no", "never", "without", "except", "nor", "none", "cannot"])


def content_terms(text: str) -> frozenset[str]:
    """The analysed terms that say what a question is about: :func:`rag.index.lexical.analyze`
    of its normalized text (stemmed, stop words out, Chinese segmented) less the words that
    frame a question and the numbers and negations (checked on their own)."""
    out: set[str] = set()
    text = _HYPHENATED.sub("", _ZH_A_NOT_A.sub(r"\1", normalize(text)))
    for term in analyze(_without_numbers(text)):
        term = _ZH_NEGATION.sub("", term) if has_han(term) else term
        if not term:
            continue
        if term in frame_words() or term in _NEGATION_TERMS:
            continue
        if _ZH_NUMERAL.fullmatch(term) or _DIGITS.fullmatch(term):
            continue
        if term.endswith("n't") or term in _EN_NUMBERS or (len(term) == 1 and term.isascii()):
            continue
        out.add(term)
    return frozenset(out)


def _without_numbers(norm: str) -> str:
    """``norm`` with its Chinese numerals, "几" and digits blanked (words such as "一般"
    kept): numbers are compared on their own."""
    out: list[str] = []
    at = 0
    for keep in _ZH_NOT_NUMBERS.finditer(norm):
        out.append(_ZH_NUMERAL.sub(" ", norm[at : keep.start()]))
        out.append(keep.group())
        at = keep.end()
    out.append(_ZH_NUMERAL.sub(" ", norm[at:]))
    return _DIGITS.sub(" ", "".join(out)).replace("几", " ")


def _latin(term: str) -> bool:
    return term.isascii()


def _one_edit(x: str, y: str) -> bool:
    """Whether ``x`` and ``y`` differ by one inserted or deleted letter, or two neighbours
    swapped: the usual typos. Not one letter replaced by another: "maternity" and
    "paternity" are two words."""
    if x == y or abs(len(x) - len(y)) > 1:
        return False
    if len(x) == len(y):
        diff = [i for i in range(len(x)) if x[i] != y[i]]
        return (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and x[diff[0]] == y[diff[1]]
            and x[diff[1]] == y[diff[0]]
        )
    short, long = (x, y) if len(x) < len(y) else (y, x)
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


def _without_typos(only_a: list[str], only_b: list[str]) -> tuple[list[str], list[str]]:
    """Drop pairs of Latin words of five letters or more one typo apart ("anual" and
    "annual"): the same word mistyped."""
    typos_a = {x for x in only_a for y in only_b if len(x) >= 5 and x.isascii() and _one_edit(x, y)}
    typos_b = {y for y in only_b for x in only_a if len(y) >= 5 and y.isascii() and _one_edit(x, y)}
    return [x for x in only_a if x not in typos_a], [y for y in only_b if y not in typos_b]


def _absent(term: str, other: str) -> bool:
    """Whether ``term`` (found in one question's terms only) is really absent from the
    other question's normalized text: a Latin word is; a Chinese word is when one of its
    characters that is not a question's frame ("能", "可", "吗") is missing there. jieba
    cuts paraphrases differently ("年假能结转" gives "假能"), so Chinese words are compared by
    their characters."""
    if not has_han(term):
        return True
    return any(ch not in other and ch not in _FRAME_CHARS for ch in term)


def conflicts(a: str, b: str, *, distinctive: Callable[[str], bool] | None = None) -> str | None:
    """Why ``a`` and ``b`` may ask different things ("language differs", "numbers differ",
    "negation differs", "asks differ: X / Y", "terms differ: X [/ Y]"), or None when
    nothing says so (the module docstring lists the guards).

    ``distinctive(term)`` decides whether a content term found in one question only makes
    them different (terms are analysed: see :func:`content_terms`). Without it every such
    term does. A Latin token in a Chinese question (a product or a place name: "PineGPT")
    always does."""
    if normalize(a) == normalize(b):
        return None
    if language(a) != language(b):
        return "language differs"
    if numbers(a) != numbers(b):
        return "numbers differ"
    if negated(a) != negated(b):
        return "negation differs"
    asks_a, asks_b = asks(a), asks(b)
    if asks_a and asks_b and not asks_a & asks_b:
        return f"asks differ: {min(asks_a)} / {min(asks_b)}"
    terms_a, terms_b = content_terms(a), content_terms(b)
    norm_a, norm_b = normalize(a), normalize(b)
    qualifiers = set(_QUALIFIER.findall(norm_a)) ^ set(_QUALIFIER.findall(norm_b))
    if qualifiers:
        return f"terms differ: {min(qualifiers)}"
    only_a = sorted(t for t in terms_a - terms_b if _absent(t, norm_b))
    only_b = sorted(t for t in terms_b - terms_a if _absent(t, norm_a))
    only_a, only_b = _without_typos(only_a, only_b)
    if only_a and only_b:  # a word replaced by another: "guest" Wi-Fi vs "staff" Wi-Fi
        return f"terms differ: {only_a[0]} / {only_b[0]}"
    chinese = has_han(a) or has_han(b)
    for term in only_a or only_b:  # a word added on one side: a qualifier, if it names a thing
        if distinctive is None or distinctive(term) or (chinese and _latin(term)):
            return f"terms differ: {term}"
    return None


# -- vectors ---------------------------------------------------------------------------------


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity of two vectors (0.0 when either is all zeros or they differ in
    length)."""
    if len(a) != len(b) or not a:
        return 0.0
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    if na == 0.0 or nb == 0.0:
        return 0.0
    return dot / (na * nb)


@dataclass(frozen=True)
class Match:
    """How a candidate question compares: its cosine ``score`` and the conflict ``reason``
    (None when nothing says the two ask different things)."""

    score: float
    reason: str | None


def best_match(
    question: str,
    vector: Sequence[float],
    candidates: Sequence[tuple[str, Sequence[float]]],
    *,
    threshold: float,
    distinctive: Callable[[str], bool] | None = None,
) -> tuple[int, Match] | None:
    """The index of the best candidate ``(question text, embedding)`` for ``question``: the
    one with the highest cosine at or above ``threshold`` that has no conflict, or one whose
    normalized text equals the question's (always a match). None when none qualifies."""
    norm = normalize(question)
    scores = _cosines(vector, [vec for _, vec in candidates])
    for i, (text, _) in enumerate(candidates):
        if normalize(text) == norm:
            return i, Match(score=float(scores[i]), reason=None)
    for i in np.argsort(-scores, kind="stable"):
        score = float(scores[i])
        if score < threshold:
            break
        if conflicts(question, candidates[i][0], distinctive=distinctive) is None:
            return int(i), Match(score=score, reason=None)
    return None


def _cosines(vector: Sequence[float], vectors: Sequence[Sequence[float]]) -> np.ndarray:
    """The cosine of ``vector`` with each of ``vectors`` (0 for a zero vector or another
    length), at once."""
    out = np.zeros(len(vectors), dtype=np.float64)
    q = np.asarray(vector, dtype=np.float64)
    qn = float(np.linalg.norm(q))
    same = [i for i, v in enumerate(vectors) if len(v) == len(q)]
    if not same or qn == 0.0:
        return out
    m = np.asarray([vectors[i] for i in same], dtype=np.float64)
    norms = np.linalg.norm(m, axis=1)
    dots = m @ q
    with np.errstate(divide="ignore", invalid="ignore"):
        found = np.where(norms > 0, dots / (norms * qn), 0.0)
    out[same] = found
    return out
