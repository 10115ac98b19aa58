"""Grounding: check each answer sentence against the sources the model was given.

Small models invent numbers and names and place ``[n]`` markers badly; even large ones
misattribute. After generation every sentence is split into what it states
(rag/answering/facts.py) and matched against the sources' **units**: table rows, list items
and sentences (rag/answering/sentences.py). A fact is bound to its subject:

- every **number and code** of the sentence must stand in one unit, and every **name** in
  that unit or its context (title, section, headings, a row's header); in a table row, each
  number must stand in the column whose name fits the sentence best ("650元" in the hotel
  column is not the meal allowance);
- that unit, with its context, must hold ``min_support`` of the sentence's other content
  words (a sentence with a number, code or name needs 0.25 less);
- no **competing unit** (one stating a different value of the same kind) may hold more of
  the sentence's words and names than the unit does, and all that the unit holds. "The
  hotel cap in Madrid is 110 EUR" is unsupported by a table whose Porto row says 110 EUR and
  whose Madrid row says 135 EUR; so is "一线城市的住宿上限是480元" when 480元 is the
  二线城市 row's.

A sentence without numbers, codes or names is checked against whole sources (its words).
Then, per sentence: a cited source that supports it is kept; a wrong ``[n]`` is replaced by
the source that supports it best; an uncited sentence gets the best-supporting source; a
sentence that no source supports is marked ``supported: false``. Sentences without any term
to check (greetings, "I don't know") are not claims and count as supported, uncited.
Unknown ``[n]`` numbers are always dropped. A citation's snippet is the supporting unit
(a row is quoted with its column names).

What an answer with no supported sentence becomes is decided in rag/answering/extractive.py.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from rag.answering.citations import SNIPPET_CHARS
from rag.answering.facts import Facts, facts_of, has_code, normalize, words
from rag.answering.sentences import (
    Unit,
    UnitFacts,
    markers,
    split_sentences,
    strip_markers,
    units_of,
)
from rag.types import Citation, Source

__all__ = [
    "Evidence",
    "Grounded",
    "Sentence",
    "citation_for",
    "ground",
    "split_sentences",
]

_END_PUNCT = re.compile(r"[.!?。！？]+$")
_NON_CLAIM = re.compile(
    r"\b(not|n't|no|cannot|unable)\b.{0,40}\b(find|found|know|cover|covers|contain|contains|"
    r"mention|mentions|say|says|answer)\b|^(i hope|hope this|let me know|feel free|sure\b|thanks|"
    r"thank you|hello|hi\b|hey\b|good (morning|afternoon|evening))"
    r"|不知道|没有(找到|相关|提到)|无法(回答|确定|找到)|未(提及|找到)|抱歉|^(你好|您好|谢谢)",
    re.IGNORECASE,
)
CONTEXT_WEIGHT = 0.5
"""A word found only in a unit's context counts this much towards its subject binding."""


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

    @property
    def verified(self) -> bool:
        """At least one sentence is a claim that a source supports."""
        return any(s.citations for s in self.sentences)

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


@dataclass(frozen=True, slots=True)
class Support:
    """Why a source supports a sentence: the unit and how well it binds the subject."""

    n: int
    unit: Unit
    binding: float


def _name_in(norm: str, name: str) -> bool:
    return re.search(r"(?<![a-z0-9])" + re.escape(name) + r"(?![a-z0-9])", norm) is not None


class Evidence:
    """The given sources split into units once per answer; checks sentences against them."""

    def __init__(self, sources: Sequence[Source], *, min_support: float = 0.5) -> None:
        self.sources = list(sources)
        self.min_support = min_support
        self.by_n = {s.n: s for s in self.sources}
        self.units: list[tuple[int, UnitFacts]] = []
        self._words: dict[int, frozenset[str]] = {}
        self._norm: dict[int, str] = {}
        for s in self.sources:
            chunk = s.hit.chunk
            for unit in units_of(chunk.text, title=chunk.title, section=chunk.section):
                self.units.append((s.n, UnitFacts(unit)))

    def _source_words(self, n: int) -> tuple[frozenset[str], str]:
        if n not in self._words:
            chunk = self.by_n[n].hit.chunk
            text = f"{chunk.title}\n{chunk.section}\n{chunk.text}"
            self._words[n], self._norm[n] = words(text), normalize(text)
        return self._words[n], self._norm[n]

    # -- one sentence ---------------------------------------------------------------------

    def check(self, sentence: str) -> list[Support] | None:
        """The sources supporting ``sentence``, best first; None when it is not a claim."""
        bare = strip_markers(sentence)
        facts = facts_of(bare)
        if facts.empty or (_NON_CLAIM.search(bare) and not facts.quantities):
            return None
        if not facts.values and not facts.names:
            return self._check_words(facts)
        # A quantity's unit is checked with its number, not again as a subject word: "They
        # are deleted after 3 days" is not half supported by "created 3 working days before".
        units = {q.unit for q in facts.quantities if q.unit}
        facts = replace(facts, words=facts.words - units) if facts.words & units else facts
        found: dict[int, Support] = {}
        candidates = [(n, u) for n, u in self.units if self._holds_values(facts, u)]
        competitors = (
            [u for _, u in self.units if u.has_value and self._competes(facts, u)]
            if facts.values
            else []
        )
        for n, u in candidates:
            if not all(_name_in(u.norm, x) or _name_in(u.context_norm, x) for x in facts.names):
                continue
            if u.unit.kind == "row" and not self._right_columns(facts, u):
                continue
            share = self._share(facts, u)
            if share + 0.25 < self.min_support:
                continue
            own = self.held(facts, u)
            if any(own < self.held(facts, c) for c in competitors):
                continue
            binding = self.binding(facts, u)
            if n not in found or binding > found[n].binding:
                found[n] = Support(n, u.unit, binding)
        return sorted(found.values(), key=lambda s: (-s.binding, s.n))

    def _check_words(self, facts: Facts) -> list[Support]:
        found = []
        for s in self.sources:
            have, norm = self._source_words(s.n)
            held = sum(1 for w in facts.words if w in have or (not w.isascii() and w in norm))
            share = held / len(facts.words)
            if share >= self.min_support:
                unit = self._best_unit(s.n, facts)
                found.append(Support(s.n, unit, share))
        return sorted(found, key=lambda s: (-s.binding, s.n))

    def _best_unit(self, n: int, facts: Facts) -> Unit:
        units = [u for m, u in self.units if m == n]
        if not units:
            chunk = self.by_n[n].hit.chunk
            return Unit(chunk.text, chunk.text, "sentence", chunk.title)
        return max(units, key=lambda u: self.binding(facts, u)).unit

    @staticmethod
    def _holds_values(facts: Facts, u: UnitFacts) -> bool:
        if not all(any(q.matches(h) for h in u.quantities) for q in facts.quantities):
            return False
        return all(has_code(u.norm, c) for c in facts.codes)

    @staticmethod
    def _right_columns(facts: Facts, u: UnitFacts) -> bool:
        """Each number of the sentence stands in a column whose name fits the sentence at
        least as well as the name of any other column with a number of that unit (650元 in
        the hotel column does not say the meal allowance is 650元)."""
        columns = u.columns

        def fit(i: int) -> int:
            names, norm, _ = columns[i]
            return sum(1 for w in facts.words if w in names or (not w.isascii() and w in norm))

        for q in facts.quantities:
            holding = [i for i, (_, _, qs) in enumerate(columns) if any(q.matches(h) for h in qs)]
            others = [
                i
                for i, (_, _, qs) in enumerate(columns)
                if i not in holding and any(h.unit == q.unit or q.unit is None for h in qs)
            ]
            if holding and others and max(map(fit, others)) > max(map(fit, holding)):
                return False
        return True

    @staticmethod
    def _competes(facts: Facts, u: UnitFacts) -> bool:
        """``u`` states a value of the kind the sentence states, but not the sentence's."""
        if Evidence._holds_values(facts, u):
            return False
        units = {q.unit for q in facts.quantities}
        if any(h.unit in units or None in units for h in u.quantities):
            return True
        return bool(facts.codes and u.codes)

    @staticmethod
    def _share(facts: Facts, u: UnitFacts) -> float:
        if not facts.words:
            return 1.0
        held = sum(1 for w in facts.words if u.holds(w) or u.context_holds(w))
        return held / len(facts.words)

    @staticmethod
    def held(facts: Facts, u: UnitFacts) -> frozenset[str]:
        """The sentence's words and names that the unit itself (not its context) holds."""
        return frozenset(
            [w for w in facts.words if u.holds(w)] + [x for x in facts.names if _name_in(u.norm, x)]
        )

    @staticmethod
    def binding(facts: Facts, u: UnitFacts) -> float:
        """0..1: how much of the sentence's subject (words and names) the unit itself holds;
        what only its context holds counts :data:`CONTEXT_WEIGHT`."""
        total = len(facts.words) + len(facts.names)
        if not total:
            return 1.0
        score = 0.0
        for w in facts.words:
            score += 1.0 if u.holds(w) else CONTEXT_WEIGHT if u.context_holds(w) else 0.0
        for x in facts.names:
            score += (
                1.0 if _name_in(u.norm, x) else CONTEXT_WEIGHT if _name_in(u.context_norm, x) else 0
            )
        return score / total

    # -- a whole answer -------------------------------------------------------------------

    def ground(self, answer: str) -> Grounded:
        """Check and fix the citations of ``answer`` (module docstring)."""
        sentences: list[Sentence] = []
        snippets: dict[int, str] = {}
        for raw in split_sentences(answer):
            marked = markers(raw)
            text = strip_markers(raw)
            if not text:
                continue
            supports = self.check(text)
            if supports is None:
                sentences.append(Sentence(text, (), True, marked))
                continue
            good = [x for x in supports if x.n in marked]
            chosen = good or supports[:1]
            for x in chosen:
                snippets.setdefault(x.n, snippet(x.unit.quote))
            sentences.append(Sentence(text, tuple(x.n for x in chosen), bool(chosen), marked))
        order: list[int] = []
        for sentence in sentences:
            order.extend(n for n in sentence.citations if n not in order)
        return Grounded(sentences, [citation_for(self.by_n[n], snippets[n]) for n in order])


def ground(answer: str, sources: Sequence[Source], *, min_support: float = 0.5) -> Grounded:
    """Check and fix the citations of ``answer`` against ``sources`` (module docstring)."""
    return Evidence(sources, min_support=min_support).ground(answer)


def snippet(text: str) -> str:
    out = " ".join(text.split())
    if len(out) > SNIPPET_CHARS:
        out = out[: SNIPPET_CHARS - 1].rstrip() + "…"
    return out


def citation_for(source: Source, text: str) -> Citation:
    chunk = source.hit.chunk
    return Citation(
        source.n,
        chunk.doc_id,
        chunk.title,
        chunk.source,
        chunk.page,
        snippet(text),
        section=chunk.section,
        chunk_id=chunk.chunk_id,
        url=chunk.url,
    )
