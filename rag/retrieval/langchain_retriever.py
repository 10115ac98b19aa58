"""The hybrid retriever as a LangChain ``BaseRetriever`` (the only importer of
``langchain_core``).

    retriever = KnowledgeRetriever(retriever=build_retriever(settings, kb),
                                   principal=Principal("svc", frozenset({"everyone"})), k=5)
    docs = retriever.invoke("guest Wi-Fi password")

Each ``Document`` carries the chunk text and the citation fields as metadata. Access control
is the same as the API's: only chunks the principal may read come back.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from rag.retrieval.hybrid import Filters, Retriever
from rag.types import Hit, Principal


def to_document(hit: Hit) -> Document:
    c = hit.chunk
    return Document(
        page_content=c.text,
        id=c.chunk_id,
        metadata={
            "chunk_id": c.chunk_id,
            "doc_id": c.doc_id,
            "title": c.title,
            "source": c.source,
            "page": c.page,
            "section": c.section,
            "index": c.index,
            "score": hit.score,
            "dense_score": hit.dense_score,
            "keyword_score": hit.keyword_score,
        },
    )


class KnowledgeRetriever(BaseRetriever):
    """LangChain retriever over the service's hybrid search, for one principal."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: Retriever
    principal: Principal
    k: int = Field(6, ge=1, le=100)
    mode: Literal["hybrid", "dense", "keyword"] | None = None
    filters: dict[str, Any] | None = None

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        hits = self.retriever.search(
            query,
            self.principal,
            self.k,
            filters=Filters.parse(self.filters),
            mode=self.mode,
        )
        return [to_document(h) for h in hits]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        return await asyncio.to_thread(
            self._get_relevant_documents, query, run_manager=run_manager.get_sync()
        )
