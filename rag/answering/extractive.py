"""Extractive answers: the source sentences or table rows that answer a question, quoted.

The CPU demo model (SmolLM2-135M) gets at most a third of the sample facts right and invents
the rest, so the CPU profile answers without it (``answer.mode: extractive``): the
question's terms are looked for in the units (sentences, list items, table rows) of the
retrieved sources, and the best units are quoted, cited, after a short lead-in in the
question's language (rag/answering/wording.py). The same choice is the fallback of the
generative modes when no sentence of the model's answer could be verified.

How a unit is scored (:func:`choose`):

- **coverage**: the question's content words, names, codes and numbers, each weighted by
  its rarity among the candidate units (BM25's idf), found in the unit (full weight) or
  only in its context: title, section, headings, a row's header (``CONTEXT_WEIGHT``);
- **subject binding**: every name and code of the question must be in the unit or its
  context ("Madrid" picks the Madrid row, not Porto's);
- **answer type**: a question asking for an amount, a count, a duration or a time ("how
  many", "多少", "几天", "when") needs a number in the unit that the question does not hold;
- never a question (an FAQ's "Q: ...?"), a heading or label, or a pointer sentence such as
  "see the table below" / "详见下表": they answer nothing;
- ties prefer units in the question's language, then better-ranked sources.

A unit scoring below ``answer.min_score`` is no answer: the service declines. The threshold
was chosen on data (docs/BENCHMARKS.md, "Grounding and extractive answers").
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from rag.answering.facts import FILLER, FUNCTION_CHARS, facts_of, has_code, is_chinese, root
from rag.answering.grounding import CONTEXT_WEIGHT, Evidence, Grounded, Sentence, citation_for
from rag.answering.sentences import UnitFacts
from rag.answering.wording import quoted, say
from rag.index.lexical import STOP_WORDS, has_han, in_dictionary
from rag.types import Citation, Source

_POINTER = re.compile(
    r"详见|见下表|如下表|下表|如下所示|以下|see (?:the )?(?:table|list)|(?:table|list) below|"
    r"listed below|as follows|following (?:table|list)|below lists|lists them",
    re.IGNORECASE,
)
_NUMERIC_QUESTION = re.compile(
    r"\bhow (?:many|much|long|often|old|far|large|big|high)\b|\bwhat time\b|\bat what\b|"
    r"\bwhen\b|\b(?:price|cost|amount|limit|fee|rate|minimum|maximum|length|deadline|size)\b|"
    r"多少|几|多久|多长|多大|多高|何时|什么时候|哪天|哪一天|上限|下限|期限|截止|价格|金额",
    re.IGNORECASE,
)
_MID_SENTENCE = re.compile(r"[a-z0-9,]\s+$")
_LOWER_WORD = re.compile(r"(?<![A-Za-z])[a-z]{3,}(?![A-Za-z])")
_WEEKDAY_OR_MONTH = re.compile(
    r"\b(?:mon|tues|wednes|thurs|fri|satur|sun)day\b|\b(?:january|february|march|april|"
    r"june|july|august|september|october|november|december)\b|周[一二三四五六日]|星期",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Pick:
    """A unit chosen to answer the question, with its source and score."""

    source: Source
    facts: UnitFacts
    score: float

    @property
    def quote(self) -> str:
        return self.facts.unit.quote


def _answers_something(u: UnitFacts) -> bool:
    text = u.unit.text
    if u.unit.kind == "row":
        return True
    if text.endswith(("?", "？", ":", "：")) or _POINTER.search(text):
        return False
    return len(text.split()) >= 4 or len(re.findall(r"[\u3400-\u9fff]", text)) >= 6


def wants_number(question: str) -> bool:
    return _NUMERIC_QUESTION.search(question) is not None


def choose(
    question: str, evidence: Evidence, *, min_score: float, max_quotes: int = 2
) -> list[Pick]:
    """The units that answer ``question`` best (module docstring); [] when none clears
    ``min_score``."""
    scored = score_units(question, evidence)
    if not scored or scored[0].score < min_score:
        return []
    best = scored[0].score
    zh = is_chinese(question)
    close = [p for p in scored if p.score >= max(min_score, 0.9 * best)]
    # Among near-equal units, one in the question's language goes first.
    close.sort(key=lambda p: (has_han(p.quote) != zh, -p.score))
    picks: list[Pick] = []
    for p in close:
        if any(p.facts.norm == q.facts.norm for q in picks):
            continue
        picks.append(p)
        if len(picks) == max_quotes:
            break
    return picks


def score_units(question: str, evidence: Evidence) -> list[Pick]:
    """Every candidate unit with its score, best first (module docstring)."""
    q = facts_of(question, question=True)
    pool = [(n, u) for n, u in evidence.units]
    names = q.names | proper_nouns(question, [u for _, u in pool])
    name_roots = {root(w) for x in names for w in x.split()}
    units = [u for _, u in pool]
    terms: list[tuple[str, str]] = []
    for w in sorted(q.words - name_roots):
        if has_han(w) and len(w) > 1 and not in_dictionary(w) and not _held(w, units):
            # A guess of jieba's HMM ("带狗" from "带狗来") that no unit holds: its
            # characters that name something ("狗") are what to look for.
            terms += [("w", ch) for ch in w if ch not in FUNCTION_CHARS]
        else:
            terms.append(("w", w))
    terms = list(dict.fromkeys(terms))
    terms += [("n", x) for x in names] + [("c", c) for c in q.codes]
    terms += [("q", x.value) for x in q.quantities]
    if not terms:
        return []
    numeric = wants_number(question)
    asked = {x.value for x in q.quantities}
    seen: dict[str, Pick] = {}
    weights = _idf(terms, [u for _, u in pool])
    total = sum(weights.values())
    if not total:
        return []
    rank = {s.n: i for i, s in enumerate(evidence.sources)}
    zh = is_chinese(question)
    for n, u in pool:
        if not _answers_something(u):
            continue
        if not all(_in(u, "n", x) or _in_context(u, "n", x) for x in names):
            continue
        if not all(_in(u, "c", c) or _in_context(u, "c", c) for c in q.codes):
            continue
        if numeric and not (
            any(h.value not in asked for h in u.quantities) or _WEEKDAY_OR_MONTH.search(u.norm)
        ):
            continue
        got = 0.0
        for term in terms:
            if _in(u, *term):
                got += weights[term]
            elif _in_context(u, *term):
                got += CONTEXT_WEIGHT * weights[term]
        score = got / total
        if has_han(u.unit.text) != zh:
            score *= 0.95  # the same fact in the question's language reads better
        pick = Pick(evidence.by_n[n], u, score)
        old = seen.get(u.norm)
        if old is None or (score, -rank[n]) > (old.score, -rank[old.source.n]):
            seen[u.norm] = pick
    return sorted(
        seen.values(),
        key=lambda p: (-p.score, rank[p.source.n], len(p.quote)),
    )


def proper_nouns(question: str, units: Sequence[UnitFacts]) -> set[str]:
    """Lower-case words of ``question`` that the sources write capitalised inside sentences
    and never in lower case ("shenzhen", "berlin" typed in a hurry): names, which an answer
    must be about. A capital after a sentence end, a colon or a cell border says nothing."""
    out: set[str] = set()
    texts = [f"{u.unit.text}\n{u.unit.context}" for u in units]
    for word in set(_LOWER_WORD.findall(question)):
        if word in STOP_WORDS or word in FILLER:
            continue
        pattern = re.compile(
            r"(?<![A-Za-z])(?:" + re.escape(word) + r")(?![A-Za-z])", re.IGNORECASE
        )
        inside = lower = 0
        for text in texts:
            for m in pattern.finditer(text):
                found = m.group()
                if found.islower():
                    lower += 1
                elif found[0].isupper() and _MID_SENTENCE.search(text[: m.start()]):
                    inside += 1
        if inside and not lower:
            out.add(word)
    return out


def _held(word: str, units: Sequence[UnitFacts]) -> bool:
    return any(u.holds(word) or u.context_holds(word) for u in units)


def _in(u: UnitFacts, kind: str, term: str) -> bool:
    if kind == "w":
        return u.holds(term)
    if kind == "c":
        return has_code(u.norm, term)
    if kind == "q":
        return any(h.value == term for h in u.quantities)
    return re.search(r"(?<![a-z0-9])" + re.escape(term) + r"(?![a-z0-9])", u.norm) is not None


def _in_context(u: UnitFacts, kind: str, term: str) -> bool:
    if kind == "w":
        return u.context_holds(term)
    if kind == "q":
        return False
    hay = u.context_norm
    return re.search(r"(?<![a-z0-9])" + re.escape(term) + r"(?![a-z0-9])", hay) is not None


def _idf(terms: list[tuple[str, str]], units: Sequence[UnitFacts]) -> dict[tuple[str, str], float]:
    """BM25's idf of each term over the candidate units; a term no unit holds weighs as much
    as the rarest held one (it lowers every unit alike)."""
    n = len(units)
    df = {t: sum(1 for u in units if _in(u, *t) or _in_context(u, *t)) for t in terms}
    idf = {t: math.log(1 + (n - d + 0.5) / (d + 0.5)) for t, d in df.items()}
    held = [idf[t] for t, d in df.items() if d]
    cap = max(held, default=1.0)
    out = {}
    for t, d in df.items():
        out[t] = idf[t] if d else cap
    return out


# -- the answer built from the picks ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Extract:
    """An extractive answer: its text in pieces (to stream) and its grounding."""

    pieces: list[str]
    grounded: Grounded

    @property
    def text(self) -> str:
        return "".join(self.pieces).strip()


def compose(question: str, picks: Sequence[Pick], *, lead_in: str | None = None) -> Extract:
    """``lead_in`` (default: "The knowledge base says:" in the question's language), then
    each pick quoted and cited on its own line."""
    lead = lead_in if lead_in is not None else say("lead_in", question)
    pieces = [lead + "\n\n"]
    sentences = [Sentence(lead, (), True)]
    citations: list[Citation] = []
    for i, p in enumerate(picks):
        line = quoted(p.quote)
        bullet = "- " if len(picks) > 1 else ""
        end = "\n" if i < len(picks) - 1 else ""
        pieces.append(f"{bullet}{line} [{p.source.n}]{end}")
        sentences.append(Sentence(line, (p.source.n,), True))
        if all(c.n != p.source.n for c in citations):
            citations.append(citation_for(p.source, p.quote))
    return Extract(pieces, Grounded(sentences, citations))
