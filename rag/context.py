"""Packing retrieved hits into the prompt's token budget, numbered once for citations."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rag.types import Hit, Source


def pack(hits: Sequence[Hit], fits: Callable[[list[Source]], bool]) -> list[Source]:
    """Best hits first, each chunk once, while ``fits`` says the prompt is within budget.

    A hit that does not fit is skipped (a smaller one after it may still fit).
    """
    chosen: list[Source] = []
    seen: set[str] = set()
    for hit in sorted(hits, key=lambda h: h.score, reverse=True):
        if hit.chunk.chunk_id in seen:
            continue
        candidate = [*chosen, Source(len(chosen) + 1, hit)]
        if fits(candidate):
            chosen = candidate
            seen.add(hit.chunk.chunk_id)
    return chosen
