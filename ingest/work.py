"""What a parse worker does with one file: check its bytes, parse it, plan its chunks.

Runs in a worker process of the pool (or in-process with ``ingest.workers: 1``); takes and
returns small picklable values, and turns every failure into a message, never a crash.
An e-mail's attachments are unpacked into a private temporary folder and go through the
same checks and parsers, each with its own result: a hostile attachment fails alone.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from ingest.chunk import ChunkPlan, plan_chunks
from ingest.guard import check_file, shown
from ingest.mail import MAIL_SUFFIXES, attachments
from ingest.ocr import IMAGE_SUFFIXES, OcrOptions
from ingest.parse import SUPPORTED_SUFFIXES, parse_file
from rag.errors import RagError
from rag.index.embedding import count_tokens_with


@dataclass(frozen=True, slots=True)
class ParseJob:
    path: str
    pdf_strategy: str
    chunk_tokens: int
    chunk_overlap: int
    max_unzipped_mb: float
    max_zip_ratio: float
    token_counter: str | None = None
    """What counts tokens: see :func:`rag.index.embedding.token_counter`."""
    max_file_mb: float = 50.0
    ocr: OcrOptions | None = None


@dataclass(frozen=True, slots=True)
class Parsed:
    title: str = ""
    pages: int = 0
    plans: list[ChunkPlan] = field(default_factory=list)
    error: str | None = None
    attachments: list[ParsedAttachment] = field(default_factory=list)
    warnings: tuple[str, ...] = ()
    """What was left out of an indexed file (pages OCR could not read well enough)."""
    ocr_pages: int = 0


@dataclass(frozen=True, slots=True)
class ParsedAttachment:
    """One attachment of an e-mail: its safe name, bytes' hash and size, and its parse."""

    name: str
    file_hash: str
    size: int
    parsed: Parsed
    skipped: str | None = None
    """Why it was left out without being an error (a type the pipeline does not read)."""


def prepare(job: ParseJob, count_tokens: Callable[[str], int] | None = None) -> Parsed:
    """Check, parse and plan one file (and an e-mail's attachments); errors come back as
    ``Parsed.error`` (per attachment in ``ParsedAttachment.parsed.error``)."""
    if count_tokens is None:
        if job.token_counter is None:
            raise RuntimeError("no token counter")
        count_tokens = partial(count_tokens_with, job.token_counter)
    path = Path(job.path)
    parsed = _prepare_file(path, shown(path.name), job, count_tokens)
    if parsed.error is not None or path.suffix.lower() not in MAIL_SUFFIXES:
        return parsed
    try:
        found = attachments(path)
    except Exception as exc:
        return Parsed(
            error=f"{shown(path.name)}: its attachments could not be read "
            f"({type(exc).__name__}). Check that the message opens in a mail program, save "
            "it again, and add it again."
        )
    if not found:
        return parsed
    results: list[ParsedAttachment] = []
    with tempfile.TemporaryDirectory(prefix="rag-mail-") as tmp:
        for attachment in found:
            results.append(
                _prepare_attachment(
                    Path(tmp), path, attachment.name, attachment.data, job, count_tokens
                )
            )
    return replace(parsed, attachments=results)


def _prepare_attachment(
    folder: Path,
    parent: Path,
    name: str,
    data: bytes,
    job: ParseJob,
    count_tokens: Callable[[str], int],
) -> ParsedAttachment:
    digest = hashlib.sha256(data).hexdigest()
    shown_name = f"{shown(parent.name)}: attachment {shown(name)}"
    suffix = Path(name).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        return ParsedAttachment(name, digest, len(data), Parsed(), "unsupported file type")
    if suffix in IMAGE_SUFFIXES:
        # Mostly logos and signatures: OCR would fail or index noise. A scan that matters is
        # saved as a file of its own.
        why = "image attachment (not read; save a scan as a file of its own to index it)"
        return ParsedAttachment(name, digest, len(data), Parsed(), why)
    if not data:
        error = f"{shown_name} is empty; nothing to index."
        return ParsedAttachment(name, digest, 0, Parsed(error=error))
    if len(data) > job.max_file_mb * 1e6:
        error = (
            f"{shown_name}: {len(data) / 1e6:,.1f} MB is over the {job.max_file_mb:g} MB "
            "limit. Save it separately and split it, or raise ingest.max_file_mb."
        )
        return ParsedAttachment(name, digest, len(data), Parsed(error=error))
    file = folder / name
    file.write_bytes(data)
    try:
        parsed = _prepare_file(file, shown_name, job, count_tokens)
    finally:
        file.unlink(missing_ok=True)
    return ParsedAttachment(name, digest, len(data), parsed)


def _prepare_file(
    path: Path, label: str, job: ParseJob, count_tokens: Callable[[str], int]
) -> Parsed:
    try:
        check_file(path, max_unzipped_mb=job.max_unzipped_mb, max_zip_ratio=job.max_zip_ratio)
        doc = parse_file(path, pdf_strategy=job.pdf_strategy, ocr=job.ocr)
        plans = plan_chunks(doc, count_tokens, job.chunk_tokens, job.chunk_overlap)
    except RagError as exc:
        message = exc.message
        if label != shown(path.name) and message.startswith(path.name):
            message = label + message[len(path.name) :]
        return Parsed(error=message)
    except (MemoryError, RecursionError) as exc:
        return Parsed(
            error=f"{label}: too large or too deeply nested to parse "
            f"({type(exc).__name__}). Split or simplify it, then add it again."
        )
    except Exception as exc:
        return Parsed(
            error=f"{label}: the parser failed ({type(exc).__name__}). Check that "
            "the file opens in its usual application, re-save it, and add it again."
        )
    if not plans:
        return Parsed(
            error=f"{label}: no text to index. Export it with a text layer "
            "(or enable OCR for scans) and add it again."
        )
    warnings = tuple(f"{label}: {w}" for w in doc.warnings)
    return Parsed(doc.title, doc.pages, plans, warnings=warnings, ocr_pages=doc.ocr_pages)


class _Inline:
    """A finished-on-demand stand-in for a Future (one worker: parse in-process)."""

    def __init__(self, fn: Callable[[], Parsed]) -> None:
        self._fn = fn

    def result(self) -> Parsed:
        return self._fn()


Pending = Future[Parsed] | _Inline


def _ignore_interrupts() -> None:
    """In a parse worker: Ctrl-C on a terminal reaches the whole process group, and only the
    parent decides what stops (``rag-ingest watch`` finishes its run; a worker killed by the
    key press would fail the file it was parsing)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


class ParsePool:
    """Runs :func:`prepare` in spawned worker processes (started on first use), or in the
    calling process when ``workers`` is 1 (then ``count_tokens`` may be the embedder's)."""

    def __init__(self, workers: int, count_tokens: Callable[[str], int] | None = None) -> None:
        self.workers = max(1, workers)
        self._count_tokens = count_tokens
        self._pool: ProcessPoolExecutor | None = None

    def submit(self, job: ParseJob) -> Pending:
        if self.workers <= 1:
            counter = self._count_tokens
            return _Inline(lambda: prepare(job, counter))
        if self._pool is None:
            import multiprocessing

            # spawn: the parent holds torch threads; forking it is unsafe.
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_ignore_interrupts,
            )
        return self._pool.submit(prepare, job)

    def result(self, name: str, pending: Pending) -> Parsed:
        """The parse of a submitted job; a worker that died fails that file only."""
        try:
            return pending.result()
        except BrokenProcessPool:
            self.close()
            return Parsed(
                error=f"{shown(name)}: the parser process died on this file (out of memory, "
                "or a crash in a parsing library). Check the file, re-save it, and add it again."
            )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
