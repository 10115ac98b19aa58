"""The documents API: list, inspect, upload (into the ingest pipeline), delete, and the
access-checked source view a citation opens.

Everything a caller sees is limited to documents in their groups; one outside them is "not
found", so the API never reveals that a restricted document exists. Uploading and deleting
need the ``ingest`` scope; an upload may only give a document groups the uploader has.
Uploads and deletes go through the service's one ingest pipeline (:mod:`serving.uploads`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shutil
from collections.abc import Collection
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi import Path as PathParam

from rag.config import Settings
from rag.errors import BadRequestError, ForbiddenError, IngestError, NotFoundError
from rag.index.manifest import DocRecord
from rag.services import Services
from rag.types import Principal
from serving import audit
from serving.apidocs import route_error
from serving.deps import (
    Asker,
    HttpDep,
    Ingester,
    KnowledgeBaseDep,
    Reader,
    ServicesDep,
    SettingsDep,
    Uploader,
    UploadsDep,
)
from serving.principal import can_read
from serving.schemas.ask import ErrorResponse
from serving.schemas.documents import (
    DeleteResult,
    DocumentOut,
    DocumentPage,
    DocumentSource,
    FileOutcome,
    Passage,
    UploadResult,
)
from serving.uploads import MAX_FILES_PER_UPLOAD

UPLOAD_DIR = "uploads"
_UNSAFE = re.compile(r"[^\w.\- ()\u3400-\u9fff]+")

DocId = Annotated[
    str,
    PathParam(min_length=1, max_length=128, description="A doc_id from a hit or a citation."),
]

router = APIRouter(tags=["documents"])


def _records(services: Services, collection: str) -> list[DocRecord]:
    manifest = services.manifest()
    if manifest is None:
        return []
    with manifest:
        return list(manifest.documents(collection))


def _visible(services: Services, collection: str, caller: Principal, doc_id: str) -> DocRecord:
    for record in _records(services, collection):
        if record.doc_id == doc_id and can_read(caller, record.groups):
            return record
    raise NotFoundError(
        "No such document, or you may not read it. Check the id, or ask for access."
    )


def safe_filename(name: str | None) -> str:
    """A plain file name for an upload: no folders, no control characters, no dot files.

    A name that had to be changed (a folder part, a character a file name cannot have)
    gets a short hash of the name as sent, so two different names never fold into one
    file (``a\\b.txt`` and ``/x/b.txt`` were both ``b.txt``, one replacing the other)."""
    sent = name or ""
    base = Path(sent.replace("\\", "/")).name
    base = _UNSAFE.sub("_", base).strip(" .")
    if not base or base.startswith("."):
        raise BadRequestError("A file has no usable name. Give it a name with its extension.")
    base = base[:200]
    if base != sent:
        stem, dot, suffix = base.rpartition(".")
        tag = hashlib.sha256(sent.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        base = f"{stem}-{tag}.{suffix}" if dot and stem else f"{base}-{tag}"
    return base


def upload_folder(settings: Settings, groups: Collection[str]) -> Path:
    """Where uploads readable by exactly ``groups`` are kept: one folder per group set.

    A document's id comes from its path, so an upload can only ever replace (or, by
    ``updated`` against ``added``, reveal) a document of the same group set, which the
    uploader (a member of every one of those groups) may read (issue 19: one shared folder
    let an everyone key overwrite HR's ``policy.txt``)."""
    key = hashlib.sha256("|".join(sorted(set(groups))).encode("utf-8")).hexdigest()[:16]
    return settings.paths.data_dir / UPLOAD_DIR / key


def upload_groups(
    caller: Principal, wanted: list[str], names: list[str], settings: Settings
) -> list[tuple[str, ...]]:
    """The groups each upload gets: the ones asked for, else what the ingest rules (or
    ``default_groups``) give its name. Never a group the uploader is not in: a 403 names
    the groups and says to pass ``groups`` (issue 19: an everyone key's
    ``payroll-notes.txt`` landed in ``finance`` by a rule)."""
    from ingest.access import rule_groups

    if wanted:
        chosen = [tuple(dict.fromkeys(wanted))] * len(names)
    else:
        flat = settings.paths.data_dir / UPLOAD_DIR
        chosen = [rule_groups(flat / name, settings.ingest) for name in names]
    beyond = sorted({g for groups in chosen for g in groups} - caller.groups)
    if beyond:
        how = "" if wanted else " (by the ingest rules, since no groups were given)"
        raise ForbiddenError(
            f"You may not give documents groups you are not in{how}: {', '.join(beyond)}. "
            "Pass `groups` with groups of your own."
        )
    return chosen


@router.get(
    "/v1/documents",
    summary="Documents the caller may read, in ingestion order (paged).",
    response_model=DocumentPage,
    response_description="One page, and the total the caller may see.",
)
async def list_documents(
    caller: Reader,
    kb: KnowledgeBaseDep,
    services: ServicesDep,
    offset: Annotated[int, Query(ge=0, description="Skip this many documents.")] = 0,
    limit: Annotated[int, Query(ge=1, le=500, description="Page size.")] = 50,
) -> DocumentPage:
    """Only documents in the caller's access groups are listed or counted."""
    records = await asyncio.to_thread(_records, services, kb.store.name)
    mine = [r for r in records if can_read(caller, r.groups)]
    page = [DocumentOut.of(r) for r in mine[offset : offset + limit]]
    return DocumentPage(documents=page, total=len(mine), offset=offset, limit=limit)


@router.get(
    "/v1/documents/{doc_id}",
    summary="One document's metadata: title, source, groups, chunk count.",
    response_model=DocumentOut,
    response_description="The document's metadata.",
    responses={404: {"model": ErrorResponse}},
)
async def get_document(
    caller: Reader, kb: KnowledgeBaseDep, services: ServicesDep, doc_id: DocId
) -> DocumentOut:
    """A document outside the caller's groups is a 404, like one that does not exist."""
    record = await asyncio.to_thread(_visible, services, kb.store.name, caller, doc_id)
    return DocumentOut.of(record)


@router.get(
    "/v1/documents/{doc_id}/source",
    summary="The text of a document the caller may read (to open a citation).",
    response_model=DocumentSource,
    response_description="The document's passages in order; a citation's chunk_id "
    "names one of them.",
    responses={404: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
)
async def source(caller: Asker, kb: KnowledgeBaseDep, doc_id: DocId) -> DocumentSource:
    """What the widget shows when a citation is opened. Access-checked passage by
    passage: a document outside the caller's groups is a 404."""
    chunks = await asyncio.to_thread(kb.store.document_chunks, doc_id)
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


@router.post(
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
        409: route_error(
            409,
            "index_busy",
            "Another upload is being indexed; this one waited 120 s for it. Retry in a minute.",
            "The index is busy: another upload (past `server.upload_wait_s`) or a `rag-ingest` "
            "run is writing it. Retry.",
        ),
        503: {"model": ErrorResponse},
    },
)
async def upload(
    caller: Uploader,
    _opened: KnowledgeBaseDep,  # 503 until the knowledge base is open
    uploads: UploadsDep,
    http: HttpDep,
    settings: SettingsDep,
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
    checks, parsing, chunking, embedding, both indexes. A file with the same name and the
    same groups replaces its earlier version (uploads with other groups are other
    documents); an unchanged one is skipped. Without `groups`, the ingest rules'
    groups apply, and must all be groups of the uploader. Up to 20 files per
    request; an upload arriving while another is indexed waits for it. Needs the `ingest`
    scope."""
    files = files or []
    if len(files) > MAX_FILES_PER_UPLOAD:
        raise BadRequestError(
            f"{len(files)} files in one upload; the limit is {MAX_FILES_PER_UPLOAD}."
        )
    wanted = [g.strip() for g in (groups or "").split(",") if g.strip()]
    names = [_name_or_blank(item) for item in files]
    per_file = upload_groups(caller, wanted, names, settings)
    outcomes, saved = await _save_all(files, settings, per_file)
    for _ in range(len(files) - len(saved)):
        http.metrics.observe_ingest("failed", 0)
    for path, result in zip(saved, await uploads.add(saved) if saved else [], strict=True):
        http.metrics.observe_ingest(result.status, result.chunks)
        if result.status == "failed":  # nothing of it is indexed: keep no file either
            await asyncio.to_thread(_discard, path)
        outcomes[path.name] = FileOutcome(
            filename=path.name,
            doc_id=result.doc_id,
            status=result.status,
            chunks=result.chunks,
            error=result.error,
            warnings=list(result.warnings),
            ocr_pages=result.ocr_pages,
        )
    current = audit.note()
    if current is not None:
        current.touched(o.doc_id for o in outcomes.values() if o.doc_id and o.status != "failed")
    return UploadResult(results=list(outcomes.values()))


@router.delete(
    "/v1/documents/{doc_id}",
    summary="Remove a document from the index (needs the ingest scope).",
    response_model=DeleteResult,
    response_description="The document and its passages are gone from the index.",
    responses={404: {"model": ErrorResponse}},
)
async def delete_document(
    caller: Ingester,
    kb: KnowledgeBaseDep,
    uploads: UploadsDep,
    services: ServicesDep,
    doc_id: DocId,
) -> DeleteResult:
    """Removes the document's passages from both the vector and the keyword index and
    from the manifest. Needs the `ingest` scope and read access to the document. The
    file itself is not touched: if it is still in a synced folder, the next
    `rag-ingest sync` adds it back."""
    record = await asyncio.to_thread(_visible, services, kb.store.name, caller, doc_id)
    current = audit.note()
    if current is not None:
        current.touched([record.doc_id])
    result = await uploads.delete(record.doc_id)
    return DeleteResult(doc_id=record.doc_id, chunks=result.chunks)


def _name_or_blank(item: UploadFile | str) -> str:
    try:
        return "" if isinstance(item, str) else safe_filename(item.filename)
    except BadRequestError:
        return ""


async def _save_all(
    files: list[UploadFile | str], settings: Settings, per_file: list[tuple[str, ...]]
) -> tuple[dict[str, FileOutcome], list[Path]]:
    """Each file saved into the uploads folder (with a groups sidecar); a part that is not
    a usable file becomes a failed outcome instead."""
    outcomes: dict[str, FileOutcome] = {}
    saved: list[Path] = []
    for n, (item, groups) in enumerate(zip(files, per_file, strict=True), 1):
        try:
            if isinstance(item, str):  # a text field, not a file: e.g. curl -F files=path
                raise BadRequestError(
                    f"Part {n} of `files` is text, not a file. Send it as a file with its name "
                    "(curl: -F files=@report.pdf)."
                )
            target = upload_folder(settings, groups) / safe_filename(item.filename)
            saved.append(await asyncio.to_thread(_save, item, target, settings, groups))
        except (BadRequestError, IngestError) as exc:
            label = f"files[{n}]" if isinstance(item, str) else item.filename or "?"
            outcomes[label] = FileOutcome(filename=label, status="failed", error=exc.message)
    return outcomes, saved


def _discard(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".meta.json").unlink(missing_ok=True)


def _save(item: UploadFile, target: Path, settings: Settings, groups: tuple[str, ...]) -> Path:
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
    sidecar.write_text(json.dumps({"groups": list(groups)}), encoding="utf-8")
    shutil.move(partial, target)
    return target
