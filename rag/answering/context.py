"""Packing sources into the prompt's token budget, in a cache-friendly order.

What goes in, by priority, while the budget (exact tokens of the model's tokenizer) allows:

1. **Whole knowledge base**: when everything the caller may read fits, all of it, so no
   retrieval miss is possible.
2. Otherwise the retrieved hits, best first; then, around the best ``expand_hits`` hits,
   their neighbouring chunks, then their whole sections, then their whole documents
   (``context.expand`` says how far to go).

Chunks are deduplicated; adjacent chunks of one document merge into one passage; passages
are then put in a **canonical order** (document source, then position), not by score, and
numbered ``[1]..[n]`` once for citations. Consecutive questions about overlapping documents
then share long prompt prefixes, which vLLM's prefix cache reuses; the question goes last.

The packer only estimates the rendered prompt (each block counted on its own); the caller
checks the exact count of the rendered prompt and calls :func:`trim` until it fits.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from rag.answering.prompt import SOURCES_CLOSE, SOURCES_OPEN, render_block
from rag.config import ContextSettings
from rag.types import Chunk, Hit, Source

CountTokens = Callable[[str], int]
BLOCK_SEPARATOR_TOKENS = 2  # the blank line between blocks, with slack for merges


class ChunkSource(Protocol):
    """Where the packer reads whole documents and the whole knowledge base (the store)."""

    def document_chunks(self, doc_id: str) -> list[Chunk]: ...


@dataclass
class Packed:
    """The numbered sources, how they were chosen, and the estimated token cost."""

    sources: list[Source]
    mode: Literal["whole_kb", "retrieval", "empty"]
    tokens: int
    chosen: list[Chunk] = field(default_factory=list)
    """Chunks in priority order (what :func:`trim` drops from the end)."""


def canonical_key(chunk: Chunk) -> tuple[str, str, int]:
    return (chunk.source, chunk.doc_id, chunk.index)


def merge_passages(chunks: Iterable[Chunk], scores: dict[str, float], order: str) -> list[Source]:
    """Adjacent chunks of a document become one passage; passages are numbered in order."""
    ordered = sorted(chunks, key=canonical_key) if order == "canonical" else list(chunks)
    runs: list[list[Chunk]] = []
    for chunk in ordered:
        last = runs[-1][-1] if runs else None
        if last is not None and last.doc_id == chunk.doc_id and chunk.index == last.index + 1:
            runs[-1].append(chunk)
        else:
            runs.append([chunk])
    sources: list[Source] = []
    for n, run in enumerate(runs, start=1):
        first = run[0]
        text = "\n".join(c.text for c in run) if len(run) > 1 else first.text
        passage = Chunk(
            chunk_id=first.chunk_id,
            doc_id=first.doc_id,
            text=text,
            source=first.source,
            title=first.title,
            section=first.section,
            page=first.page,
            index=first.index,
            groups=first.groups,
            content_hash=first.content_hash,
        )
        score = max(scores.get(c.chunk_id, 0.0) for c in run)
        sources.append(Source(n, Hit(passage, score)))
    return sources


class Packer:
    def __init__(self, settings: ContextSettings, count_tokens: CountTokens) -> None:
        self._settings = settings
        self._count = count_tokens
        self._cost_cache: dict[tuple[str, str], int] = {}

    def cost(self, chunk: Chunk) -> int:
        """Tokens of the chunk's block (header + text) plus the separator."""
        key = (chunk.chunk_id, chunk.content_hash or chunk.text)
        cached = self._cost_cache.get(key)
        if cached is None:
            cached = self._count(render_block(Source(99, Hit(chunk, 0.0))))
            cached += BLOCK_SEPARATOR_TOKENS
            if len(self._cost_cache) > 200_000:
                self._cost_cache.clear()
            self._cost_cache[key] = cached
        return cached

    def frame_tokens(self) -> int:
        return self._count(SOURCES_OPEN + SOURCES_CLOSE) + BLOCK_SEPARATOR_TOKENS

    def pack(
        self,
        hits: Sequence[Hit],
        budget: int,
        *,
        corpus: Sequence[Chunk] | None = None,
        documents: ChunkSource | None = None,
        readable: Callable[[Chunk], bool] = lambda c: True,
    ) -> Packed:
        """Choose and number sources within ``budget`` tokens (see the module docstring).

        ``corpus``: every chunk the caller may read, when it is small enough to try
        whole-knowledge-base mode; ``documents``: where expansion reads whole documents.
        """
        cfg = self._settings
        room = budget - self.frame_tokens()
        scores = {h.chunk.chunk_id: h.score for h in hits}
        if room <= 0:
            return Packed([], "empty", 0)
        if corpus is not None and cfg.whole_kb:
            allowed = [c for c in corpus if readable(c)]
            total = sum(self.cost(c) for c in allowed)
            if allowed and total <= room:
                everything = sorted(allowed, key=canonical_key)
                sources = merge_passages(everything, scores, "canonical")
                return Packed(sources, "whole_kb", total + self.frame_tokens(), everything)
        chosen: list[Chunk] = []
        seen: set[str] = set()
        used = 0

        def take(chunk: Chunk) -> None:
            nonlocal used
            if chunk.chunk_id in seen or not readable(chunk):
                return
            cost = self.cost(chunk)
            if used + cost <= room:
                chosen.append(chunk)
                seen.add(chunk.chunk_id)
                used += cost

        for hit in hits:
            take(hit.chunk)
        if documents is not None and cfg.expand != "none" and cfg.expand_hits > 0:
            levels = ["neighbours", "section", "document"]
            depth = levels.index(cfg.expand) + 1
            top = list(hits[: cfg.expand_hits])
            doc_cache: dict[str, list[Chunk]] = {}
            for level in levels[:depth]:
                for hit in top:
                    chunk = hit.chunk
                    doc = doc_cache.get(chunk.doc_id)
                    if doc is None:
                        doc = [c for c in documents.document_chunks(chunk.doc_id) if readable(c)]
                        doc_cache[chunk.doc_id] = doc
                    for other in _expansion(level, chunk, doc, cfg.neighbours):
                        take(other)
        if not chosen:
            return Packed([], "empty", 0)
        sources = merge_passages(chosen, scores, cfg.order)
        return Packed(sources, "retrieval", used + self.frame_tokens(), chosen)

    def trim(self, packed: Packed, scores: dict[str, float] | None = None) -> Packed:
        """Drop the lowest-priority chunk (when the exact count came out over budget)."""
        if not packed.chosen:
            return Packed([], "empty", 0)
        scores = scores or {s.hit.chunk.chunk_id: s.hit.score for s in packed.sources}
        chosen = packed.chosen[:-1]
        if packed.mode == "whole_kb":
            # Whole-KB order is canonical, not priority: drop the least relevant, largest.
            worst = min(packed.chosen, key=lambda c: (scores.get(c.chunk_id, 0.0), -self.cost(c)))
            chosen = [c for c in packed.chosen if c is not worst]
        if not chosen:
            return Packed([], "empty", 0)
        order = "canonical" if packed.mode == "whole_kb" else self._settings.order
        sources = merge_passages(chosen, scores, order)
        tokens = sum(self.cost(c) for c in chosen) + self.frame_tokens()
        mode: Literal["whole_kb", "retrieval"] = (
            "retrieval" if packed.mode == "empty" else packed.mode
        )
        return Packed(sources, mode, tokens, chosen)


def _expansion(level: str, chunk: Chunk, doc: Sequence[Chunk], neighbours: int) -> list[Chunk]:
    if level == "neighbours":
        near = [
            c for c in doc if c.index != chunk.index and abs(c.index - chunk.index) <= neighbours
        ]
        return sorted(near, key=lambda c: (abs(c.index - chunk.index), c.index))
    if level == "section":
        return [c for c in doc if c.section == chunk.section]
    return list(doc)


def readable_by(groups: Collection[str] | None) -> Callable[[Chunk], bool]:
    if groups is None:
        return lambda c: True
    wanted = frozenset(groups)
    return lambda c: any(g in wanted for g in c.groups)
