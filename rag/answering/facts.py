"""What a sentence states, as terms to look for in a source: quantities, codes, names, words.

- **Quantities**: numbers as whole tokens (``3`` is not found in ``36``), after Unicode NFKC
  (full-width ``３６`` is ``36``), thousands separators dropped (``5,000`` = ``5000``), with
  the unit written before or after them normalised: ``135 EUR`` = ``EUR 135`` = ``€135``;
  ``650元`` = ``650 元`` = ``￥650`` = ``人民币650元`` = ``650 RMB``; ``9 hours`` = ``9小时``.
  Two quantities match when the values are equal and the units do not contradict each other
  (one may be missing: ``650`` matches ``650元``; ``36 hours`` does not match ``36 days``).
- **Codes**: tokens mixing letters with digits or joined by ``- _ . / @`` (``NW-Staff``,
  ``IT-207``, ``B214``, ``vpn.example.com``), matched case-insensitively as whole tokens.
- **Names**: capitalised English words inside a sentence (``Madrid``, ``Ingrid Halvorsen``).
- **Words**: the other content words: English lower-cased and lightly stemmed, Chinese
  segmented into words with jieba (:func:`rag.index.lexical.analyze`), stop words dropped.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from rag.index.lexical import CJK_STOP_WORDS, STOP_WORDS, analyze, has_han, language, stem

_HAN_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_NUMBER = re.compile(r"(?<![A-Za-z0-9.,:])(\d+(?:[.,:]\d+)*)(?![0-9])")
_THOUSANDS = re.compile(r"^\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_CODE = re.compile(
    r"(?<![A-Za-z0-9])(?:[A-Za-z0-9]+(?:[-_./@][A-Za-z0-9]+)+|"
    r"(?=[A-Za-z]*\d)(?=\d*[A-Za-z])[A-Za-z0-9]+)(?![A-Za-z0-9])"
)
_NAME = re.compile(r"\b[A-Z][a-zA-Z]+(?:\s+[A-Z][a-zA-Z]+)*\b")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]{2,}")
_POSSESSIVE = re.compile(r"['’]s$")
_ACRONYM = re.compile(r"\b[A-Z]{2}\b")

# Unit words after a number, and currency marks before one, with their canonical unit.
_UNITS: tuple[tuple[str, str], ...] = (
    (r"eur|euros?|€", "eur"),
    (r"usd|us\$|dollars?|\$", "usd"),
    (r"gbp|pounds?|£", "gbp"),
    (r"nok|kroner|kr", "nok"),
    (r"元|块|rmb|cny|yuan|¥|人民币", "cny"),
    (r"%|percent|per cent", "pct"),
    (r"working days?|business days?|个工作日|工作日", "day"),
    (r"days?|天|日", "day"),
    (r"hours?|hrs?|h|个小时|小时", "hour"),
    (r"minutes?|mins?|分钟", "minute"),
    (r"weeks?|个星期|星期|周", "week"),
    (r"months?|个月", "month"),
    (r"years?|yrs?|年", "year"),
    (r"characters?|chars?|个字符|字符|位", "char"),
    (r"pages?|页", "page"),
    (r"nights?|晚", "night"),
)
_UNIT_AFTER = re.compile(r"\s?(" + "|".join(u for u, _ in _UNITS) + r")(?![a-z])", re.IGNORECASE)
_UNIT_BEFORE = re.compile(r"(eur|usd|gbp|nok|rmb|cny|€|\$|£|¥|人民币)\s?$", re.IGNORECASE)
_CANON = [(re.compile(f"^(?:{u})$", re.IGNORECASE), c) for u, c in _UNITS]

# Words that frame a question or pad an answer rather than say what it is about.
FILLER = frozenset(
    {
        "hope",
        "help",
        "helps",
        "helpful",
        "please",
        "note",
        "sure",
        "answer",
        "question",
        "information",
        "source",
        "sources",
        "knowledge",
        "according",
        "based",
        "provided",
        "called",
        "named",
        "name",
        "many",
        "much",
        "long",
        "often",
        "get",
        "gets",
        "got",
        "tell",
        "know",
        "need",
        "want",
        "also",
        "there",
        "must",
        "may",
        "might",
        "shall",
        "ought",
    }
)
GENERIC_NAMES = frozenset(
    {"the", "a", "an", "yes", "no", "you", "your", "it", "this", "that", "i", "we", "if"}
)
# Chinese question words: a sentence that answers the question does not repeat them.
CJK_QUESTION_WORDS = frozenset(
    {
        "多少",
        "什么",
        "怎么",
        "怎样",
        "如何",
        "哪里",
        "哪儿",
        "哪个",
        "哪些",
        "哪位",
        "哪天",
        "为什么",
        "是否",
        "是不是",
        "几",
        "吗",
        "呢",
        "谁",
        "叫",
        "请问",
        "名字",
        "名称",
        "多久",
        "多长",
        "能不能",
        "可不可以",
        "可以",
        "应该",
        "需要",
    }
)


# Chinese characters that, standing alone, carry grammar rather than a topic.
FUNCTION_CHARS = frozenset(
    "的了和是在有与或及等也就都而把被对为以之其中个吗呢吧啊来去带可能会要想请让给做用到说看拿"
    "找跟向从于上下里内外前后多少大小过还又再才很太最更只么哦呀些这那哪谁我你他她它们咱自己时该"
    "得着没不无非几叫怎啥咋一每各此"
)


# Chinese characters that, standing alone after a number, are its unit (the number's unit
# is matched with the number, see ``quantities``).
UNIT_CHARS = frozenset("元块天日年月时分秒周晚次个位页人层号")


def normalize(text: str) -> str:
    """NFKC (full-width digits and letters to ASCII), lower case, single spaces."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


@dataclass(frozen=True, slots=True)
class Quantity:
    value: str
    unit: str | None

    def matches(self, other: Quantity) -> bool:
        if self.value != other.value:
            return False
        return self.unit is None or other.unit is None or self.unit == other.unit


def _canon_unit(word: str) -> str | None:
    for pattern, canon in _CANON:
        if pattern.match(word):
            return canon
    return None


def _canon_value(raw: str) -> str:
    value = raw.replace(",", "") if _THOUSANDS.match(raw) else raw
    if re.fullmatch(r"\d+\.\d+", value):
        value = value.rstrip("0").rstrip(".")
    return value


def quantities(norm: str) -> list[Quantity]:
    """The numbers of normalised text, each with the unit written beside it (if any);
    digits inside a code (``it-207``, ``b214``) are the code's, not numbers."""
    inside = [m.span() for m in _CODE.finditer(norm) if any(ch.isalpha() for ch in m.group())]
    found: list[Quantity] = []
    for m in _NUMBER.finditer(norm):
        if any(a <= m.start(1) < b for a, b in inside):
            continue
        raw = m.group(1).rstrip(".,:")
        after = _UNIT_AFTER.match(norm, m.start(1) + len(raw))
        unit = _canon_unit(after.group(1)) if after else None
        if unit is None:
            before = _UNIT_BEFORE.search(norm[max(0, m.start() - 4) : m.start()])
            unit = _canon_unit(before.group(1)) if before else None
        found.append(Quantity(_canon_value(raw), unit))
    return found


def codes(norm: str) -> set[str]:
    """Codes of normalised text: ``nw-staff``, ``it-207``, ``b214``, host names."""
    out: set[str] = set()
    for m in _CODE.finditer(norm):
        code = m.group()
        if any(ch.isalpha() for ch in code) and not _NUMBER.fullmatch(code):
            out.add(code)
    return out


def has_code(norm: str, code: str) -> bool:
    pattern = r"(?<![a-z0-9])" + re.escape(code) + r"(?![a-z0-9]|[-_./@][a-z0-9])"
    return re.search(pattern, norm) is not None


def names(text: str) -> set[str]:
    """Capitalised names, lower-cased; a sentence's first word counts only in a longer name."""
    out: set[str] = set()
    for m in _NAME.finditer(text):
        name = m.group()
        at_start = m.start() == 0 or text[: m.start()].rstrip().endswith((".", ":", '"', "“"))
        words = name.split()
        if at_start:
            words = words[1:] if len(words) > 1 and words[0].lower() in STOP_WORDS else words
            if len(words) < 2:
                continue
        if len(words) == 1 and (words[0].isupper() or _canon_unit(words[0])):
            continue  # an acronym (VPN, MFA) or a unit (EUR) is a word, not a name
        low = " ".join(words).lower()
        if low in GENERIC_NAMES or low in STOP_WORDS:
            continue
        if any(ch.isdigit() for ch in low):
            continue
        out.add(low)
    return out


@lru_cache(maxsize=50_000)
def words(text: str) -> frozenset[str]:
    """Content words: English stems (filler and stop words out; two-letter acronyms such as
    HR kept) and Chinese jieba words."""
    out: set[str] = set()
    for w in _WORD.findall(text):
        low = _POSSESSIVE.sub("", w.lower()).strip("'-")
        if len(low) < 3 or low in STOP_WORDS or low in FILLER:
            continue
        out.add(root(low))
    out.update(a.lower() for a in _ACRONYM.findall(text))
    if has_han(text):
        for term in analyze(text, stemming=False):
            if not _HAN_RUN.search(term) or term in CJK_STOP_WORDS:
                continue
            if len(term) == 1 and (term in FUNCTION_CHARS or term in UNIT_CHARS):
                continue
            out.add(term)
    return frozenset(out)


def root(word: str) -> str:
    """:func:`rag.index.lexical.stem` without a final e, so reuse/reused and change/changed
    meet."""
    stemmed = stem(word)
    return stemmed[:-1] if len(stemmed) > 4 and stemmed.endswith("e") else stemmed


def same_word(a: str, b: str) -> bool:
    """Two English roots of one word family: equal, or one a prefix (5+ letters) of the
    other (approv/approval, engineer/engineering)."""
    if a == b:
        return True
    short, long_ = (a, b) if len(a) <= len(b) else (b, a)
    return len(short) >= 5 and long_.startswith(short) and short.isascii()


def question_words(question: str) -> frozenset[str]:
    """:func:`words` of a question without its question words; of Chinese single
    characters only those that name something (狗, 天), not function characters; of the
    words jieba's search mode finds inside a longer one, only the longer one."""
    terms = {t for t in words(question) if t not in CJK_QUESTION_WORDS}
    terms = {t for t in terms if not (len(t) == 1 and t in FUNCTION_CHARS)}
    # jieba's search mode also emits the words inside a long one (办公室: 办公, 公室); a
    # unit is matched on substrings, so the long word says it once.
    han = [t for t in terms if _HAN_RUN.search(t)]
    return frozenset(t for t in terms if not any(t != h and t in h for h in han))


@dataclass(frozen=True, slots=True)
class Facts:
    """What one sentence (or question) says, ready to be looked for in a source unit."""

    quantities: tuple[Quantity, ...]
    codes: frozenset[str]
    names: frozenset[str]
    words: frozenset[str]

    @property
    def values(self) -> int:
        """How many numbers and codes: the facts that must sit in the supporting unit."""
        return len(self.quantities) + len(self.codes)

    @property
    def empty(self) -> bool:
        return not (self.quantities or self.codes or self.names or self.words)


def facts_of(text: str, *, question: bool = False) -> Facts:
    norm = normalize(text)
    found_codes = codes(norm)
    quants = tuple(dict.fromkeys(quantities(norm)))
    found_names = {n for n in names(unicodedata.normalize("NFKC", text)) if n not in found_codes}
    terms = question_words(text) if question else words(text)
    name_words = {root(w) for n in found_names for w in n.split()}
    code_words = {root(p) for c in found_codes for p in re.split(r"[-_./@]", c)}
    return Facts(
        quants,
        frozenset(found_codes),
        frozenset(found_names),
        frozenset(terms - name_words - code_words),
    )


def is_chinese(text: str) -> bool:
    """Whether ``text`` is mostly Chinese (:func:`rag.index.lexical.language`)."""
    return language(text) == "zh"
