"""Grounding: check each answer sentence against the sources the model was given.

Small models invent numbers and names and place ``[n]`` markers badly; even large ones
misattribute. After generation every sentence is matched against every source:

- **critical terms** (numbers, dates, codes such as ``NW-Staff`` or ``4410``, capitalised
  names) must all occur in a source for it to support the sentence;
- **key terms** (the other content words; for Chinese, character bigrams) must reach the
  ``min_support`` share.

Then, per sentence: a cited source that supports it is kept; a wrong ``[n]`` is replaced by
the source that supports it best; an uncited sentence gets the best-supporting source; a
sentence that no source supports is marked ``supported: false``. Sentences without any
term to check (greetings, "I don't know") are not claims and count as supported, uncited.
Unknown ``[n]`` numbers are always dropped.

When no sentence of an answer is supported by a source (a small model's non-answer such as
"The answer to this question is:", or an invention), :func:`quote_for` picks the source
sentence that shares most of the question's terms, and the service adds it to the answer as
a quote, cited (:func:`with_quote`): the reader gets the passage that most likely answers the
question, marked as a quote, beside the model's text (which stays marked unsupported).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from rag.answering.citations import SNIPPET_CHARS
from rag.index.lexical import STOP_WORDS, analyze
from rag.types import Citation, Source

_MARKER = re.compile(r"\s*\[(\d{1,3})\]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)|(?<=[。！？])|\n+")
_LEADING_MARKERS = re.compile(r"^(?:\s*\[\d{1,3}\])+")
_END_PUNCT = re.compile(r"[.!?。！？]+$")
_NUMBER = re.compile(r"\d+(?:[.,:/-]\d+)*")
_CODE = re.compile(r"\b[A-Za-z0-9]+(?:[-_./@][A-Za-z0-9]+)+\b|\b(?=\w*\d)(?=\w*[A-Za-z])\w+\b")
_NAME = re.compile(r"\b[A-Z][a-zA-Z]+(?:\s+[A-Z][a-zA-Z]+)*\b")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]{2,}")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]+")
_SOURCE_SENTENCE = re.compile(r"[^.!?。！？\n]+[.!?。！？]?")
_NON_CLAIM = re.compile(
    r"\b(not|n't|no|cannot|unable)\b.{0,40}\b(find|found|know|cover|covers|contain|contains|"
    r"mention|mentions|say|says|answer)\b|^(i hope|hope this|let me know|feel free|sure\b|thanks)"
    r"|不知道|没有(找到|相关)|无法回答",
    re.IGNORECASE,
)
_FILLER = frozenset(
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
    }
)
_GENERIC_NAMES = frozenset(
    {"the", "a", "an", "yes", "no", "you", "your", "it", "this", "that", "i", "we", "if"}
)


@dataclass(frozen=True, slots=True)
class Sentence:
    text: str
    citations: tuple[int, ...]
    supported: bool
    model_citations: tuple[int, ...] = ()
    """The ``[n]`` markers the model itself wrote (valid or not)."""


@dataclass
class Grounded:
    sentences: list[Sentence]
    citations: list[Citation] = field(default_factory=list)

    @property
    def unsupported(self) -> list[str]:
        return [s.text for s in self.sentences if not s.supported]

    def text_with_citations(self) -> str:
        parts = []
        for s in self.sentences:
            marks = "".join(f"[{n}]" for n in s.citations)
            if not marks:
                parts.append(s.text)
                continue
            end = _END_PUNCT.search(s.text)
            cut = end.start() if end else len(s.text)
            parts.append(f"{s.text[:cut]} {marks}{s.text[cut:]}")
        return " ".join(parts)


def split_sentences(text: str) -> list[str]:
    """Sentences of an answer (English and Chinese punctuation, lines), markers kept."""
    parts: list[str] = []
    for piece in _SENTENCE_END.split(text.strip()):
        piece = piece.strip()
        lead = _LEADING_MARKERS.match(piece)
        if lead and parts:
            parts[-1] += " " + lead.group().strip()
            piece = piece[lead.end() :].strip()
        if piece:
            parts.append(piece)
    return parts


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def critical_terms(sentence: str) -> set[str]:
    """Numbers, codes and names: each must appear in a supporting source."""
    found: set[str] = set()
    for m in _NUMBER.finditer(sentence):
        found.add(m.group())
    for m in _CODE.finditer(sentence):
        found.add(m.group().lower())
    for i, m in enumerate(_NAME.finditer(sentence)):
        name = m.group()
        words = name.split()
        # The first word of a sentence is capitalised anyway: only multi-word names count.
        if m.start() == 0 and len(words) == 1:
            continue
        if name.lower() in _GENERIC_NAMES or (i == 0 and m.start() == 0 and len(words) < 2):
            continue
        found.add(name.lower())
    return found


def key_terms(sentence: str) -> set[str]:
    words = {w.lower() for w in _WORD.findall(sentence)}
    terms = {w for w in words if w not in STOP_WORDS and w not in _FILLER and len(w) > 3}
    for run in _CJK.findall(sentence):
        if len(run) == 1:
            terms.add(run)
        terms.update(run[i : i + 2] for i in range(len(run) - 1))
    return terms


def _contains(haystack: str, term: str) -> bool:
    if term.isdigit() or not term.isascii():
        return term in haystack
    return re.search(r"(?<![a-z0-9])" + re.escape(term) + r"(?![a-z0-9])", haystack) is not None


def support(sentence: str, source_text: str) -> float:
    """0..1: how well ``source_text`` supports ``sentence``; 0 if a critical term is absent.

    Returns -1.0 when the sentence has nothing to check (not a factual claim).
    """
    bare = _MARKER.sub("", sentence)
    if _NON_CLAIM.search(bare) and not _NUMBER.search(bare):
        return -1.0
    crit = critical_terms(bare)
    keys = key_terms(bare)
    if not crit and not keys:
        return -1.0
    hay = _norm(source_text)
    if any(not _contains(hay, t.lower()) for t in crit):
        return 0.0
    if not keys:
        return 1.0
    share = _key_share(keys, hay)
    return min(1.0, share + (0.25 if crit else 0.0))


def _key_share(keys: set[str], hay: str) -> float:
    """Share of ``keys`` in the normalised ``hay`` (a long word may differ in its ending)."""
    found = sum(1 for t in keys if t in hay or (len(t) > 5 and t[:-2] in hay))
    return found / len(keys)


# Chinese question words: a sentence that answers the question does not repeat them.
_CJK_QUESTION_WORDS = frozenset(
    [
        "多少",
        "什么",
        "怎么",
        "怎样",
        "如何",
        "哪里",
        "哪儿",
        "哪个",
        "哪些",
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
    ]
)


def question_terms(question: str) -> set[str]:
    """What a sentence answering ``question`` should contain: its key terms, with Chinese
    split into words (jieba) instead of bigrams, and question words left out."""
    terms = {t for t in key_terms(question) if not _CJK.search(t)}
    words = [w for w in analyze(question, stemming=False) if _CJK.search(w)]
    words = [w for w in words if w not in _CJK_QUESTION_WORDS]
    terms.update(w for w in words if len(w) > 1)
    if not any(len(w) > 1 for w in words):
        terms.update(words)
    return terms


def quote_for(
    question: str, sources: Sequence[Source], *, min_share: float = 0.6
) -> tuple[Source, str] | None:
    """The source sentence sharing most of ``question``'s terms, with its source.

    Questions in the sources (an FAQ's "Q: ...?") are skipped: they repeat the question
    without answering it; so are headings and short labels. A candidate must hold every
    critical term of the question and at least ``min_share`` of its key terms; ties go to
    the better-ranked hit, then to the shorter sentence. None when no sentence qualifies.
    """
    bare = _MARKER.sub("", question)
    crit = {t.lower() for t in critical_terms(bare)}
    keys = question_terms(bare)
    if not keys and not crit:
        return None
    best: tuple[float, float, int] | None = None
    found: tuple[Source, str] | None = None
    for source in sources:
        for m in _SOURCE_SENTENCE.finditer(source.hit.chunk.text):
            sentence = " ".join(m.group().split())
            if not _statement(sentence):
                continue
            hay = _norm(sentence)
            if any(not _contains(hay, t) for t in crit):
                continue
            share = _key_share(keys, hay) if keys else 1.0
            if share < min_share:
                continue
            rank = (share, source.hit.score, -len(sentence))
            if best is None or rank > best:
                best, found = rank, (source, sentence)
    return found


def _statement(line: str) -> bool:
    """A line that can answer something: not a question, a heading or a bare label (a
    sentence, a table row, or a line of six words or more)."""
    if len(line) < 12 or line.endswith(("?", "？")) or line.startswith("#"):
        return False
    if line.endswith((".", "!", "。", "！", ";", "；")) or "|" in line:
        return True
    return len(line.split()) >= 6 or len("".join(_CJK.findall(line))) >= 12


def with_quote(grounded: Grounded, source: Source, line: str, sentence: str) -> Grounded:
    """``grounded`` plus ``line`` (a quote of ``sentence`` from ``source``), cited."""
    quote = Sentence(_MARKER.sub("", line).strip(), (source.n,), True)
    citations = list(grounded.citations)
    if all(c.n != source.n for c in citations):
        citations.append(_citation(source, _snippet(sentence)))
    return Grounded([*grounded.sentences, quote], citations)


def _snippet(text: str) -> str:
    snippet = " ".join(text.split())
    if len(snippet) > SNIPPET_CHARS:
        snippet = snippet[: SNIPPET_CHARS - 1].rstrip() + "…"
    return snippet


def _citation(source: Source, snippet: str) -> Citation:
    chunk = source.hit.chunk
    return Citation(
        source.n,
        chunk.doc_id,
        chunk.title,
        chunk.source,
        chunk.page,
        snippet,
        section=chunk.section,
        chunk_id=chunk.chunk_id,
    )


def best_snippet(source_text: str, sentence: str) -> str:
    """The source sentence sharing most terms with ``sentence`` (for the citation)."""
    wanted = key_terms(sentence) | critical_terms(sentence)
    best, best_score = "", -1
    for m in _SOURCE_SENTENCE.finditer(source_text):
        cand = m.group().strip()
        if not cand:
            continue
        low = cand.lower()
        score = sum(1 for t in wanted if t in low)
        if score > best_score:
            best, best_score = cand, score
    return _snippet(best or source_text)


def ground(answer: str, sources: Sequence[Source], *, min_support: float = 0.5) -> Grounded:
    """Check and fix the citations of ``answer`` against ``sources`` (module docstring)."""
    by_n = {s.n: s for s in sources}
    texts = {
        s.n: f"{s.hit.chunk.title}\n{s.hit.chunk.section}\n{s.hit.chunk.text}" for s in sources
    }
    sentences: list[Sentence] = []
    snippets: dict[int, str] = {}
    for raw in split_sentences(answer):
        marked = tuple(dict.fromkeys(int(m) for m in _MARKER.findall(raw)))
        text = _MARKER.sub("", raw).strip()
        if not text:
            continue
        scores = {n: support(text, t) for n, t in texts.items()}
        if scores and max(scores.values()) < 0:
            sentences.append(Sentence(text, (), True, marked))
            continue
        valid = [n for n in marked if n in by_n]
        good = [n for n in valid if scores.get(n, 0.0) >= min_support]
        if good:
            chosen = tuple(good)
        else:
            ranked = sorted(scores, key=lambda n: (-scores[n], n))
            chosen = (ranked[0],) if ranked and scores[ranked[0]] >= min_support else ()
        for n in chosen:
            snippets.setdefault(n, best_snippet(texts[n], text))
        sentences.append(Sentence(text, chosen, bool(chosen), marked))
    order: list[int] = []
    for s in sentences:
        order.extend(n for n in s.citations if n not in order)
    return Grounded(sentences, [_citation(by_n[n], snippets[n]) for n in order])
