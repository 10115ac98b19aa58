"""``GET /v1/documents/{doc_id}/source``: the text of a cited document, access-checked.

Only passages in the caller's groups are returned; a document with none is "not found", so
the route never reveals that a restricted document exists.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field

from rag.errors import EngineNotReadyError, NotFoundError
from rag.store import ChromaStore
from serving.principal import Reader, can_read
from serving.schemas import ErrorResponse


class Passage(BaseModel):
    chunk_id: str
    section: str = ""
    page: int | None = None
    text: str


class DocumentSource(BaseModel):
    doc_id: str
    title: str
    source: str = Field(..., description="Where the document came from (path or URL).")
    passages: list[Passage] = Field(..., description="The document's text, in order.")


def get_store(request: Request) -> ChromaStore:
    store: ChromaStore | None = request.app.state.rag.store
    if store is None:
        raise EngineNotReadyError("The knowledge base is still loading. Retry in a few seconds.")
    return store


Store = Annotated[ChromaStore, Depends(get_store)]


def router() -> APIRouter:
    api = APIRouter(tags=["documents"])

    @api.get(
        "/v1/documents/{doc_id}/source",
        summary="The text of a document the caller may read (to open a citation).",
        response_model=DocumentSource,
        responses={404: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
    )
    async def source(
        caller: Reader,
        store: Store,
        doc_id: Annotated[str, Path(min_length=1, max_length=128)],
    ) -> DocumentSource:
        chunks = await asyncio.to_thread(store.document_chunks, doc_id)
        visible = [c for c in chunks if can_read(caller, c.groups)]
        if not visible:
            raise NotFoundError(
                "No such document, or you may not read it. Check the link, or ask for access."
            )
        first = visible[0]
        return DocumentSource(
            doc_id=doc_id,
            title=first.title,
            source=first.source,
            passages=[
                Passage(chunk_id=c.chunk_id, section=c.section, page=c.page, text=c.text)
                for c in visible
            ],
        )

    return api
