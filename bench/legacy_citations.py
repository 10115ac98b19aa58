"""The term-overlap citation guess the service used before grounding (rag/answering/grounding.py),
kept only as the "legacy" baseline that ``bench/grounding.py`` compares against.

Explicit ``[n]`` markers that name a given source win; unknown numbers are dropped. Without
markers the sources sharing the answer's distinctive words (numbers, codes, names, CJK
characters) are cited instead, best overlap first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rag.answering.citations import to_citation
from rag.types import Citation, Source

_MARKER = re.compile(r"\[(\d{1,3})\]")
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-_.:/@]*[A-Za-z0-9]|[0-9]|[\u3400-\u9fff]")
_STOP = frozenset(
    [
        "the",
        "a",
        "an",
        "and",
        "or",
        "of",
        "to",
        "in",
        "on",
        "for",
        "is",
        "are",
        "was",
        "were",
        "be",
        "by",
        "with",
        "as",
        "at",
        "from",
        "it",
        "this",
        "that",
        "you",
        "your",
        "can",
        "what",
        "which",
        "who",
        "how",
        "when",
        "where",
        "do",
        "does",
        "not",
        "no",
        "yes",
        "if",
        "into",
        "per",
    ]
)


def terms(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text) if w.lower() not in _STOP}


def marked_numbers(answer: str) -> list[int]:
    seen: list[int] = []
    for m in _MARKER.finditer(answer):
        n = int(m.group(1))
        if n not in seen:
            seen.append(n)
    return seen


def select(answer: str, sources: Sequence[Source], *, max_inferred: int = 3) -> list[Citation]:
    by_n = {s.n: s for s in sources}
    explicit = [by_n[n] for n in marked_numbers(answer) if n in by_n]
    if explicit:
        return [to_citation(s) for s in explicit]
    wanted = terms(answer)
    if not wanted:
        return []
    scored = []
    for source in sources:
        shared = wanted & terms(source.hit.chunk.text + " " + source.hit.chunk.title)
        # A shared number or code is strong evidence; two shared words are the minimum.
        strong = any(any(ch.isdigit() for ch in w) or "-" in w for w in shared)
        if strong or len(shared) >= 2:
            scored.append((len(shared) + (2 if strong else 0), -source.n, source))
    scored.sort(reverse=True)
    return [to_citation(s) for _, _, s in scored[:max_inferred]]
