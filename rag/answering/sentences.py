"""Text into the pieces grounding works on: answer sentences and source units.

An answer is split into sentences (English ``. ! ?`` before a space, Chinese ``。！？；``,
line breaks), each keeping the ``[n]`` markers written after it.

A source chunk is split into **units**, the smallest pieces that state a fact with its
subject (see ingest/chunk.py for how chunks are rendered):

- a **row** of a Markdown table (``| a | b |``), which keeps the table's header row as
  context and is quoted as ``Header: cell; Header: cell``;
- a list **item** (``- ...``, ``1. ...``);
- a **sentence** of prose, split like an answer; Markdown headings (``# ...``) are context
  for the units below them, not units.

Every unit carries its context: the document title, the section path, the headings above it
in the chunk and, for a row, the header row. Context says what a unit is about (a heading
"Hotel caps", a column "住宿上限（元/晚）") but never holds a unit's numbers or codes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

from rag.answering.facts import Quantity, codes, normalize, quantities, same_word, words
from rag.index.lexical import has_han

_MARKER = re.compile(r"\s*\[(\d{1,3})\]")
_LEADING_MARKERS = re.compile(r"^(?:\s*\[\d{1,3}\])+")
# English: . ! ? followed by a space (not after a common abbreviation or a single capital);
# Chinese: after 。！？； (full-width or NFKC-folded ! ? ;) with no space needed.
_ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "vs.", "mr.", "ms.", "dr.", "approx.", "incl.")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)|(?<=[。！？；])|(?<=[\u3400-\u9fff][!?;])")
_BULLET = re.compile(r"^\s*(?:[-*+•·]|\d{1,2}[.)]|[a-z][.)])\s+")
_HEADING = re.compile(r"^\s*(#{1,6})\s+")
_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{2,}")


def _split_prose(text: str) -> list[str]:
    parts: list[str] = []
    for piece in _SENTENCE_END.split(text):
        if parts and parts[-1].lower().endswith(_ABBREVIATIONS):
            parts[-1] = f"{parts[-1]} {piece}"
        else:
            parts.append(piece)
    return parts


def split_sentences(text: str) -> list[str]:
    """Sentences of an answer (English and Chinese punctuation, lines), markers kept."""
    parts: list[str] = []
    for line in text.strip().split("\n"):
        for piece in _split_prose(line.strip()):
            piece = piece.strip()
            lead = _LEADING_MARKERS.match(piece)
            if lead and parts:
                parts[-1] += " " + lead.group().strip()
                piece = piece[lead.end() :].strip()
            if piece:
                parts.append(piece)
    return parts


def strip_markers(text: str) -> str:
    return _MARKER.sub("", text).strip()


def markers(text: str) -> tuple[int, ...]:
    return tuple(dict.fromkeys(int(m) for m in _MARKER.findall(text)))


@dataclass(frozen=True, slots=True)
class Unit:
    """One fact-sized piece of a source chunk (module docstring)."""

    text: str
    """The unit as it stands in the source (a row as its Markdown line)."""
    quote: str
    """How to quote it to a reader."""
    kind: Literal["sentence", "item", "row"]
    context: str
    """Title, section, headings above and (rows) the header row: what the unit is about."""
    block: int = 0
    """Units of one table share a block number (their rows compete for a subject)."""
    header: tuple[str, ...] = ()
    """A row's column names."""
    cells: tuple[str, ...] = ()
    """A row's cells."""


@dataclass
class UnitFacts:
    """A unit with its terms, computed once per answer and looked up per sentence."""

    unit: Unit
    norm: str = field(init=False)
    context_norm: str = field(init=False)

    def __post_init__(self) -> None:
        self.norm = normalize(self.unit.text)
        self.context_norm = normalize(self.unit.context)

    @cached_property
    def quantities(self) -> list[Quantity]:
        return quantities(self.norm)

    @cached_property
    def codes(self) -> set[str]:
        return codes(self.norm)

    @cached_property
    def words(self) -> frozenset[str]:
        return words(self.unit.text)

    @cached_property
    def context_words(self) -> frozenset[str]:
        return words(self.unit.context)

    @cached_property
    def columns(self) -> list[tuple[frozenset[str], str, list[Quantity]]]:
        """A row's cells as (header words, normalised header, quantities)."""
        out = []
        for i, cell in enumerate(self.unit.cells):
            name = self.unit.header[i] if i < len(self.unit.header) else ""
            out.append((words(name), normalize(name), quantities(normalize(cell))))
        return out

    @property
    def has_value(self) -> bool:
        return bool(self.quantities or self.codes)

    def holds(self, term: str) -> bool:
        """A word of a sentence in the unit itself (Chinese: as a substring)."""
        return _has(term, self.words, self.norm)

    def context_holds(self, term: str) -> bool:
        return _has(term, self.context_words, self.context_norm)


def _has(term: str, terms: frozenset[str], norm: str) -> bool:
    if term in terms:
        return True
    if has_han(term):
        return term in norm
    return len(term) >= 5 and any(same_word(term, t) for t in terms)


def _cells(line: str) -> list[str]:
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", body)]


def _row_quote(header: list[str], cells: list[str]) -> str:
    zh = has_han(" ".join(header + cells))
    colon, sep = ("：", "；") if zh else (": ", "; ")
    parts = []
    for i, cell in enumerate(cells):
        if not cell:
            continue
        name = header[i] if i < len(header) else ""
        parts.append(f"{name}{colon}{cell}" if name and name != cell else cell)
    return sep.join(parts)


def units_of(text: str, *, title: str = "", section: str = "") -> list[Unit]:
    """The units of a chunk's text (module docstring)."""
    base = " > ".join(p for p in (title, section) if p)
    headings: list[tuple[int, str]] = []
    out: list[Unit] = []
    lines = text.split("\n")
    block = 0
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line:
            continue
        context = " > ".join(p for p in (base, *(h for _, h in headings)) if p)
        heading = _HEADING.match(line)
        if heading:
            level = len(heading.group(1))
            headings = [*(h for h in headings if h[0] < level), (level, line[heading.end() :])]
            continue
        if line.startswith("|"):
            block += 1
            header = _cells(line)
            while i < len(lines) and lines[i].strip().startswith("|"):
                row_line = lines[i].strip()
                i += 1
                if _TABLE_SEPARATOR.match(row_line) and set(row_line) <= set("|-: "):
                    continue
                cells = _cells(row_line)
                if not any(cells) or cells == header:
                    continue
                out.append(
                    Unit(
                        row_line,
                        _row_quote(header, cells),
                        "row",
                        f"{context}\n{' | '.join(header)}",
                        block,
                        tuple(header),
                        tuple(cells),
                    )
                )
            continue
        kind: Literal["sentence", "item"] = "sentence"
        if _BULLET.match(line):
            kind, line = "item", _BULLET.sub("", line)
        for piece in _split_prose(line):
            piece = " ".join(piece.split())
            if piece:
                out.append(Unit(piece, piece, kind, context))
    return out
