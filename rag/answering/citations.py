"""A numbered source as the citation a client sees (:func:`to_citation`).

Which sources an answer uses is decided sentence by sentence in
:mod:`rag.answering.grounding`.
"""

from __future__ import annotations

from rag.types import Citation, Source

SNIPPET_CHARS = 240


def to_citation(source: Source) -> Citation:
    chunk = source.hit.chunk
    snippet = " ".join(chunk.text.split())
    if len(snippet) > SNIPPET_CHARS:
        snippet = snippet[: SNIPPET_CHARS - 1].rstrip() + "…"
    return Citation(
        n=source.n,
        doc_id=chunk.doc_id,
        title=chunk.title,
        source=chunk.source,
        page=chunk.page,
        snippet=snippet,
        section=chunk.section,
        chunk_id=chunk.chunk_id,
        url=chunk.url,
    )
