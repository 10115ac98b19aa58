"""The documents API: list, inspect, upload (into the ingest pipeline), delete, and the
access-checked source view a citation opens.

Everything a caller sees is limited to documents in their groups; one outside them is "not
found", so the API never reveals that a restricted document exists. Uploading and deleting
need the ``ingest`` scope; an upload may only give a document groups the uploader has.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from rag.config import Settings
from rag.errors import (
    BadRequestError,
    ForbiddenError,
    IngestError,
    NotFoundError,
)
from rag.index.manifest import DocRecord, Manifest
from rag.index.store import ChromaStore
from rag.types import Principal
from serving.apidocs import route_error
from serving.principal import Reader, can_read, require
from serving.schemas import ErrorResponse

UPLOAD_DIR = "uploads"
MAX_FILES_PER_UPLOAD = 20
_UNSAFE = re.compile(r"[^\w.\- ()\u3400-\u9fff]+")

Ingester = Annotated[Principal, Depends(require("ingest"))]
DocId = Annotated[
    str,
    PathParam(min_length=1, max_length=128, description="A doc_id from a hit or a citation."),
]


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
    source: str = Field(..., description="The file the document was ingested from.")
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
            source=r.path,
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


def _state(request: Request) -> Any:
    state = request.app.state.rag
    state.part(state.kb, "knowledge base")
    return state


def _records(settings: Settings, collection: str) -> list[DocRecord]:
    path = settings.store.manifest_path()
    if not path.is_file():
        return []
    with Manifest(path) as manifest:
        return list(manifest.documents(collection))


def _visible(state: Any, caller: Principal, doc_id: str) -> DocRecord:
    for record in _records(state.settings, state.kb.store.name):
        if record.doc_id == doc_id and can_read(caller, record.groups):
            return record
    raise NotFoundError(
        "No such document, or you may not read it. Check the id, or ask for access."
    )


def safe_filename(name: str | None) -> str:
    """A plain file name for an upload: no folders, no control characters, no dot files."""
    base = Path((name or "").replace("\\", "/")).name
    base = _UNSAFE.sub("_", base).strip(" .")
    if not base or base.startswith("."):
        raise BadRequestError("A file has no usable name. Give it a name with its extension.")
    return base[:200]


def router(settings: Settings) -> APIRouter:
    api = APIRouter(tags=["documents"])

    @api.get(
        "/v1/documents",
        summary="Documents the caller may read, in ingestion order (paged).",
        response_model=DocumentPage,
        response_description="One page, and the total the caller may see.",
    )
    async def list_documents(
        request: Request,
        caller: Reader,
        offset: Annotated[int, Query(ge=0, description="Skip this many documents.")] = 0,
        limit: Annotated[int, Query(ge=1, le=500, description="Page size.")] = 50,
    ) -> DocumentPage:
        """Only documents in the caller's access groups are listed or counted."""
        state = _state(request)
        records = await asyncio.to_thread(_records, settings, state.kb.store.name)
        mine = [r for r in records if can_read(caller, r.groups)]
        page = [DocumentOut.of(r) for r in mine[offset : offset + limit]]
        return DocumentPage(documents=page, total=len(mine), offset=offset, limit=limit)

    @api.get(
        "/v1/documents/{doc_id}",
        summary="One document's metadata: title, source, groups, chunk count.",
        response_model=DocumentOut,
        response_description="The document's metadata.",
        responses={404: {"model": ErrorResponse}},
    )
    async def get_document(
        request: Request,
        caller: Reader,
        doc_id: DocId,
    ) -> DocumentOut:
        """A document outside the caller's groups is a 404, like one that does not exist."""
        state = _state(request)
        return DocumentOut.of(await asyncio.to_thread(_visible, state, caller, doc_id))

    @api.get(
        "/v1/documents/{doc_id}/source",
        summary="The text of a document the caller may read (to open a citation).",
        response_model=DocumentSource,
        response_description="The document's passages in order; a citation's chunk_id "
        "names one of them.",
        responses={404: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
    )
    async def source(
        request: Request,
        caller: Reader,
        doc_id: DocId,
    ) -> DocumentSource:
        """What the widget shows when a citation is opened. Access-checked passage by
        passage: a document outside the caller's groups is a 404."""
        store: ChromaStore = _state(request).kb.store
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

    @api.post(
        "/v1/documents",
        summary="Upload files (multipart) into the ingest pipeline; per-file results.",
        response_model=UploadResult,
        response_description="One result per file: added, updated, unchanged, or failed with "
        "a message saying what to do.",
        responses={
            403: route_error(
                403,
                "forbidden",
                "You may not give documents groups you are not in: hr.",
                "The key lacks the `ingest` scope, or asks for groups the uploader is not in.",
            ),
            503: {"model": ErrorResponse},
        },
    )
    async def upload(
        request: Request,
        caller: Ingester,
        files: Annotated[
            list[UploadFile | str] | None,
            File(description="The documents, one part each, sent as files (with a name)."),
        ] = None,
        groups: Annotated[
            str | None,
            Form(description="Comma-separated access groups (default: the ingest rules)."),
        ] = None,
    ) -> UploadResult:
        """Each file goes through the same pipeline as `rag-ingest add`: type and size
        checks, parsing, chunking, embedding, both indexes. A file with the same name
        replaces its earlier version; an unchanged one is skipped. Up to 20 files per
        request. Needs the `ingest` scope."""
        state = _state(request)
        files = files or []
        if len(files) > MAX_FILES_PER_UPLOAD:
            raise BadRequestError(
                f"{len(files)} files in one upload; the limit is {MAX_FILES_PER_UPLOAD}."
            )
        wanted = [g.strip() for g in (groups or "").split(",") if g.strip()]
        beyond = sorted(set(wanted) - caller.groups)
        if beyond:
            raise ForbiddenError(
                f"You may not give documents groups you are not in: {', '.join(beyond)}."
            )
        folder = settings.paths.data_dir / UPLOAD_DIR
        outcomes: dict[str, FileOutcome] = {}
        saved: list[Path] = []
        for n, item in enumerate(files, 1):
            if isinstance(item, str):  # a text field, not a file: e.g. curl -F files=path
                label = f"files[{n}]"
                outcomes[label] = FileOutcome(
                    filename=label,
                    status="failed",
                    error=f"Part {n} of `files` is text, not a file. Send it as a file with "
                    "its name (curl: -F files=@report.pdf).",
                )
                if request.app.state.http.metrics is not None:
                    request.app.state.http.metrics.observe_ingest("failed", 0)
                continue
            try:
                name = safe_filename(item.filename)
                path = await asyncio.to_thread(_save, item, folder / name, settings, wanted)
            except (BadRequestError, IngestError) as exc:
                label = item.filename or "?"
                outcomes[label] = FileOutcome(filename=label, status="failed", error=exc.message)
                if request.app.state.http.metrics is not None:
                    request.app.state.http.metrics.observe_ingest("failed", 0)
                continue
            saved.append(path)
        if saved:
            results = await asyncio.to_thread(_ingest, state, saved)
            if request.app.state.http.metrics is not None:
                for result in results:
                    request.app.state.http.metrics.observe_ingest(result.status, result.chunks)
            for path, result in zip(saved, results, strict=True):
                outcomes[path.name] = FileOutcome(
                    filename=path.name,
                    doc_id=result.doc_id,
                    status=result.status,
                    chunks=result.chunks,
                    error=result.error,
                )
        return UploadResult(results=list(outcomes.values()))

    @api.delete(
        "/v1/documents/{doc_id}",
        summary="Remove a document from the index (needs the ingest scope).",
        response_model=DeleteResult,
        response_description="The document and its passages are gone from the index.",
        responses={404: {"model": ErrorResponse}},
    )
    async def delete_document(
        request: Request,
        caller: Ingester,
        doc_id: DocId,
    ) -> DeleteResult:
        """Removes the document's passages from both the vector and the keyword index and
        from the manifest. Needs the `ingest` scope and read access to the document. The
        file itself is not touched: if it is still in a synced folder, the next
        `rag-ingest sync` adds it back."""
        state = _state(request)
        record = await asyncio.to_thread(_visible, state, caller, doc_id)
        result = await asyncio.to_thread(_delete, state, record.doc_id)
        return DeleteResult(doc_id=record.doc_id, chunks=result.chunks)

    return api


def _save(item: UploadFile, target: Path, settings: Settings, groups: list[str]) -> Path:
    from ingest.parse import SUPPORTED_SUFFIXES

    if target.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise IngestError(
            f"{target.name}: file type {target.suffix or '(none)'} is not supported; "
            f"supported: {', '.join(sorted(SUPPORTED_SUFFIXES))}."
        )
    limit = int(settings.ingest.max_file_mb * 1e6)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    written = 0
    with partial.open("wb") as out:
        while chunk := item.file.read(1 << 20):
            written += len(chunk)
            if written > limit:
                out.close()
                partial.unlink(missing_ok=True)
                raise IngestError(
                    f"{target.name}: over the {settings.ingest.max_file_mb:g} MB limit. Split "
                    "the file, or ask the administrator to raise ingest.max_file_mb."
                )
            out.write(chunk)
    sidecar = target.with_name(target.name + ".meta.json")
    if groups:
        sidecar.write_text(json.dumps({"groups": groups}), encoding="utf-8")
    else:
        sidecar.unlink(missing_ok=True)
    shutil.move(partial, target)
    return target


def _ingestor(state: Any) -> Any:
    from ingest.pipeline import build_ingestor

    return build_ingestor(state.settings, state.kb)


def _ingest(state: Any, paths: list[Path]) -> list[Any]:
    results = {r.path: r for r in _ingestor(state).add(paths)}
    return [results[str(p)] for p in paths]


def _delete(state: Any, doc_id: str) -> Any:
    return _ingestor(state).delete(doc_id)
