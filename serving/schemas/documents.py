"""Wire models of the documents API (``/v1/documents``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rag.index.manifest import DocRecord

PASSAGE_EXAMPLE: dict[str, Any] = {
    "chunk_id": "9c1e2a7b40d3f815:5d41402abc4b:3",
    "section": "Printing > Shared queue",
    "page": None,
    "text": "All office printers share one queue, NW-Follow-Me: print, then badge in at any "
    "printer to release the job.",
}
DOCUMENT_EXAMPLE: dict[str, Any] = {
    "doc_id": "9c1e2a7b40d3f815",
    "title": "Printing at Northwind",
    "source": "faq-printing.txt",
    "groups": ["everyone"],
    "chunks": 6,
    "pages": 1,
    "size": 2841,
    "ingested_at": "2026-11-28T09:14:03Z",
}
FILE_ADDED_EXAMPLE: dict[str, Any] = {
    "filename": "travel-policy.pdf",
    "doc_id": "0b7d4c2e9a1f3e55",
    "status": "added",
    "chunks": 14,
    "error": None,
}


class Passage(BaseModel):
    """One passage (chunk) of a document."""

    model_config = ConfigDict(json_schema_extra={"examples": [PASSAGE_EXAMPLE]})

    chunk_id: str = Field(..., description="The id a citation's chunk_id refers to.")
    section: str = Field("", description="The heading path the passage is under.")
    page: int | None = Field(None, description="Page, slide or sheet, when the format has them.")
    text: str = Field(..., description="The passage's text.")


class DocumentSource(BaseModel):
    """A document's text, passage by passage, for opening a citation."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "doc_id": "9c1e2a7b40d3f815",
                    "title": "Printing at Northwind",
                    "source": "faq-printing.txt",
                    "passages": [PASSAGE_EXAMPLE],
                }
            ]
        }
    )

    doc_id: str = Field(..., description="The document's id.")
    title: str = Field(..., description="The document's title.")
    source: str = Field(..., description="Where the document came from (path or URL).")
    passages: list[Passage] = Field(..., description="The document's text, in order.")


class DocumentOut(BaseModel):
    """A document in the index: what it is and who may read it."""

    model_config = ConfigDict(json_schema_extra={"examples": [DOCUMENT_EXAMPLE]})

    doc_id: str = Field(..., description="The document's id (stable for its path).")
    title: str = Field(..., description="The title (from the file, a sidecar, or its name).")
    source: str = Field(
        ..., description="The file it was ingested from, under its folder (never a server path)."
    )
    groups: list[str] = Field(..., description="Access groups that may read it.")
    chunks: int = Field(..., description="Passages (chunks) in the index.")
    pages: int = Field(..., description="Pages, slides or sheets (1 for flat text).")
    size: int = Field(..., description="File size in bytes.")
    ingested_at: str = Field(..., description="When this version was ingested (UTC, ISO 8601).")

    @classmethod
    def of(cls, r: DocRecord) -> DocumentOut:
        return cls(
            doc_id=r.doc_id,
            title=r.title,
            source=r.source,
            groups=list(r.groups),
            chunks=r.chunks,
            pages=r.pages,
            size=r.size,
            ingested_at=r.ingested_at,
        )


class DocumentPage(BaseModel):
    """One page of the documents the caller may read."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"documents": [DOCUMENT_EXAMPLE], "total": 11, "offset": 0, "limit": 1}]
        }
    )

    documents: list[DocumentOut] = Field(..., description="This page, in ingestion order.")
    total: int = Field(..., description="Documents the caller may see.")
    offset: int = Field(..., description="Index of this page's first document.")
    limit: int = Field(..., description="The page size asked for.")


class FileOutcome(BaseModel):
    """What happened to one uploaded file."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                FILE_ADDED_EXAMPLE,
                {
                    "filename": "budget.xlsx",
                    "doc_id": "",
                    "status": "failed",
                    "chunks": 0,
                    "error": "budget.xlsx: not a valid .xlsx file (it is not a zip archive; "
                    "perhaps an old binary format renamed, or a damaged copy). Open it in "
                    "Excel and save it as .xlsx, then add it again.",
                },
            ]
        }
    )

    filename: str = Field(..., description="The file's name as stored (made safe).")
    doc_id: str = Field("", description="The document's id (empty if it failed).")
    status: str = Field(..., description="added, updated, unchanged or failed.")
    chunks: int = Field(0, description="Passages indexed for it.")
    error: str | None = Field(None, description="What is wrong and what to do.")
    warnings: list[str] = Field(
        default_factory=list,
        description="What an indexed file left out: scanned pages OCR read with too low a "
        "confidence, or not in time (ingest.ocr).",
    )
    ocr_pages: int = Field(0, description="Pages (or images) read by OCR.")


class UploadResult(BaseModel):
    """Per-file results of an upload; one bad file does not fail the others."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"results": [FILE_ADDED_EXAMPLE]}]})

    results: list[FileOutcome] = Field(..., description="One per uploaded file.")


class DeleteResult(BaseModel):
    """A document removed from the index."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"doc_id": "9c1e2a7b40d3f815", "status": "deleted", "chunks": 6}]
        }
    )

    doc_id: str = Field(..., description="The document removed.")
    status: Literal["deleted"] = Field("deleted", description="Always deleted.")
    chunks: int = Field(..., description="Passages removed with it.")
