"""The ingest pipeline: find files -> check -> parse (process pool) -> embed (batched) -> store.

Incremental and crash-safe, with the SQLite manifest (:mod:`rag.index.manifest`) as the record:

- A document's id is derived from its resolved path; its *version* is the hash of its bytes
  plus its metadata (groups, title, link). A file whose version is recorded as done is
  skipped without parsing.
- Chunk ids carry the version (``doc:version:i``). Per document: the new ids are written to
  the manifest as *pending*, the chunks are upserted, then one transaction marks the
  document done and moves the old version's ids to *garbage*, which is then deleted from the
  store. A ``kill -9`` at any point leaves either the old or the new version complete;
  :meth:`Ingestor.recover` (run at the start of every command) deletes the leftovers.
- Secondary indexes (:class:`rag.seams.IndexListener`) hear ``on_upsert`` after a
  document's chunks are committed, ``on_delete`` after chunks leave the store, and
  ``commit`` at the end of each run, also when it fails.
- A file that fails is reported on one line with what to do, recorded as a failure (never as
  done; an older good version stays searchable), and the batch goes on.
- An e-mail (``.eml``, ``.msg``) is one document (headers + body) and each attachment
  another (``<mail>#attachment/<name>``, the message's groups, ``parent`` = its doc id). They
  are committed together in one manifest transaction, skipped together when the message is
  unchanged and deleted with it; a bad attachment fails alone.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import signal
import sqlite3
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.access import SIDECAR_SUFFIX, DocMeta, resolve_meta
from ingest.chunk import ChunkPlan, make_chunks
from ingest.guard import shown
from ingest.mail import ATTACHMENT_MARK, MAIL_SUFFIXES, attachment_key
from ingest.ocr import OcrOptions
from ingest.targets import (
    FileResult,
    Status,
    Target,
    check_target,
    discover,
    doc_id_for,
    results_json,
)
from ingest.work import Parsed, ParseJob, ParsePool, Pending
from rag.config import CRASH_ENV, Settings
from rag.errors import IngestError, RagError, StoreError, how_to_run, storage_failure
from rag.index.embedding import token_counter
from rag.index.hashing import sha256_file
from rag.index.manifest import DocRecord, Manifest, shown_source
from rag.index.store import ChromaStore
from rag.seams import Embedder, IndexListener
from rag.state.shared import WriterLock
from rag.types import Chunk

if TYPE_CHECKING:
    from rag.services import KnowledgeBase

__all__ = [
    "SIDECAR_SUFFIX",
    "FileResult",
    "Ingestor",
    "Target",
    "build_ingestor",
    "discover",
    "doc_id_for",
    "embed_text",
    "results_json",
]


# Part of an e-mail's version: bumped when what is made of a message changes (1: attachments
# became documents of their own; 2: attached Outlook items and 8.3-named .msg attachments
# are kept, forwarded messages always get .eml names), so messages ingested before are read
# again once.
_MAIL_LAYOUT = "attachments-2"


def embed_text(chunk: Chunk) -> str:
    """What the embedder sees: the chunk with its title and heading path for context."""
    head = chunk.title if not chunk.section else f"{chunk.title} > {chunk.section}"
    return f"{head}\n{chunk.text}"


_crash_hits: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Test hook: ``RAG_TEST_CRASH_AT=name[:n]`` SIGKILLs this process the n-th time here;
    ``name:n:enospc`` raises the error a full disk gives instead."""
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    point, _, rest = spec.partition(":")
    nth, _, fault = rest.partition(":")
    if point != name:
        return
    _crash_hits[name] = _crash_hits.get(name, 0) + 1
    if _crash_hits[name] >= int(nth or "1"):
        if fault == "enospc":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        os.kill(os.getpid(), signal.SIGKILL)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(slots=True)
class _Job:
    target: Target
    doc_id: str
    file_hash: str
    version: str
    size: int
    meta: DocMeta
    old: DocRecord | None
    started: float


@dataclass(slots=True)
class _Embedding:
    """A batch whose vectors are being computed in the background."""

    families: list[tuple[_Job, list[_Unit], list[FileResult]]]
    vectors: Future[list[list[float]]]
    ingested_at: str


@dataclass(slots=True)
class _Unit:
    """One document to store: a file, or an e-mail attachment (``parent`` set)."""

    doc_id: str
    key: str
    """The manifest's path: the resolved file path, or ``<path>#attachment/<name>``."""
    source: str
    title: str
    plans: list[ChunkPlan]
    file_hash: str
    version: str
    pages: int
    size: int
    parent: str = ""
    existed: bool = False
    chunks: list[Chunk] = field(default_factory=list)
    warnings: tuple[str, ...] = ()
    ocr_pages: int = 0


class Ingestor:
    """Adds, updates and deletes documents in one collection, keeping the manifest true."""

    def __init__(
        self,
        settings: Settings,
        embedder: Embedder,
        store: ChromaStore,
        *,
        listeners: Sequence[IndexListener] = (),
        manifest: Manifest | None = None,
        keep_workers: bool = False,
        writer: WriterLock | None = None,
    ) -> None:
        """``keep_workers``: the parse workers stay up between runs (a long-lived ingestor,
        the service's uploads); :meth:`close` stops them. Otherwise each run stops them.
        ``writer``: the lock that keeps one writer across machines (shared state only); the
        manifest's ``flock`` keeps one per machine."""
        self._writer = writer
        self._took = (False, False)
        self._settings = settings
        self._keep_workers = keep_workers
        self._embedder = embedder
        self._store = store
        self._listeners = tuple(listeners)
        self._manifest = manifest or Manifest(settings.store.manifest_path())
        self._collection = store.name
        self._tokenizer = token_counter(settings.embedding, settings.paths)
        workers = settings.ingest.workers or (os.cpu_count() or 1)
        # Without a tokenizer file the workers cannot count tokens: parse in-process.
        self._parser = ParsePool(
            workers if self._tokenizer is not None else 1,
            None if self._tokenizer else embedder.count_tokens,
        )

    @property
    def manifest(self) -> Manifest:
        return self._manifest

    # -- commands --------------------------------------------------------------------------

    def add(self, paths: Iterable[Path]) -> Iterator[FileResult]:
        """Add or update files and folders (recursively)."""
        return self.run(discover(paths))

    def sync(self, folder: Path) -> Iterator[FileResult]:
        """``add`` the folder, then delete the documents under it whose files are gone."""
        return self.run(discover([folder]), prune=folder)

    def indexed_under(self, folder: Path) -> int:
        """How many documents (attachments aside) the index holds from files under
        ``folder``."""
        root = folder.resolve()
        return sum(
            1
            for r in self._manifest.documents(self._collection)
            if not r.parent and Path(r.path).is_relative_to(root)
        )

    def _lock(self) -> None:
        """The manifest's writer lock, then the one across machines (when there is one);
        a lock the caller already holds (a reindex) is left to the caller."""
        self._took = (not self._manifest.locked, self._writer is not None and not self._writer.held)
        try:
            self._manifest.lock()
        except OSError as exc:
            raise self._storage_error(exc) from exc
        if self._writer is not None:
            try:
                self._writer.acquire()
            except BaseException:
                if self._took[0]:
                    self._manifest.unlock()
                raise

    def _unlock(self) -> None:
        took_manifest, took_writer = self._took
        try:
            if self._writer is not None and took_writer:
                self._writer.release()
        finally:
            if took_manifest:
                self._manifest.unlock()

    def run(self, targets: Iterable[Target], prune: Path | None = None) -> Iterator[FileResult]:
        self._lock()
        try:
            self.recover()
            yield from self._process(targets)
            if prune is not None:
                yield from self._prune(prune)
        except (OSError, sqlite3.Error) as exc:
            # A full disk or read-only files stop the run (every later file would fail the
            # same way); the manifest's pending ids are cleaned up by the next run.
            raise self._storage_error(exc) from exc
        finally:
            try:
                if not self._keep_workers:
                    self._parser.close()
                self._commit_listeners()
            finally:
                self._unlock()

    def close(self) -> None:
        """Stop the parse workers and close the manifest."""
        self._parser.close()
        self._manifest.close()

    def _storage_error(self, exc: OSError | sqlite3.Error) -> RagError:
        where = self._manifest.path.parent if self._manifest.path else self._manifest.where
        mapped = storage_failure(exc, "index", where)
        if mapped is not None:
            return mapped
        return StoreError(
            f"Writing the index at {where} failed ({type(exc).__name__}: {exc}). Fix the "
            f"cause, then re-run the same {how_to_run('rag-ingest')} command; finished "
            "documents are kept."
        )

    def delete(self, key: str) -> FileResult:
        """Remove one document (by id or path) from the index."""
        self._lock()
        try:
            self.recover()
            record = self._manifest.find(self._collection, key)
            if record is None:
                raise IngestError(
                    f"No document {shown(key)!r} in the index. See "
                    f"{how_to_run('rag-ingest list')} for ids and paths."
                )
            if record.parent:
                raise IngestError(
                    f"{shown(record.path)} is an attachment: it is indexed with its message. "
                    "Delete the message (its path or id), or remove the attachment from it "
                    "and add the message again."
                )
            started = time.perf_counter()
            count = self._remove(record.doc_id)
            return FileResult(record.path, record.doc_id, "deleted", count, seconds=_since(started))
        finally:
            self._commit_listeners()
            self._unlock()

    def recover(self) -> int:
        """Delete the chunks an interrupted run left behind; returns how many ids."""
        ids = self._manifest.recover_ids(self._collection)
        if ids:
            self._store.delete_ids(ids)
            self._notify_delete(ids)
            self._manifest.clear_garbage(self._collection, ids)
        return len(ids)

    # -- the run -----------------------------------------------------------------------------

    def _process(self, targets: Iterable[Target]) -> Iterator[FileResult]:
        """Parse in the pool, embed in a background thread, store and commit here.

        While one batch is embedded, the next one is gathered from the parse workers (and
        their queue kept full), so parsing and embedding overlap; writes to the store and
        the manifest stay on this thread, in batch order.
        """
        window = max(4, 4 * self._parser.workers)
        queue: deque[tuple[_Job, Pending]] = deque()
        batch: list[tuple[_Job, Parsed]] = []
        batch_chunks = 0
        todo = iter(targets)
        exhausted = False
        embedding: _Embedding | None = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed") as embedder:
            try:
                while True:
                    while not exhausted and len(queue) < window:
                        target = next(todo, None)
                        if target is None:
                            exhausted = True
                            break
                        checked = self._check(target)
                        if isinstance(checked, FileResult):
                            yield checked
                        else:
                            queue.append((checked, self._parser.submit(self._parse_job(checked))))
                    if not queue:
                        break
                    job, future = queue.popleft()
                    parsed = self._parser.result(job.target.path.name, future)
                    if parsed.error is not None:
                        yield self._failed(job.target, job.doc_id, parsed.error, job.started)
                        continue
                    batch.append((job, parsed))
                    batch_chunks += len(parsed.plans) + sum(
                        len(a.parsed.plans) for a in parsed.attachments
                    )
                    if batch_chunks >= self._settings.ingest.embed_batch_chunks or not queue:
                        # Queue this batch's embedding before storing the previous one's, so
                        # the embedder never waits for the store.
                        started, embedding = embedding, self._embed_batch(batch, embedder)
                        batch, batch_chunks = [], 0
                        if started is not None:
                            yield from self._store_batch(started)
                if batch:
                    started, embedding = embedding, self._embed_batch(batch, embedder)
                    if started is not None:
                        yield from self._store_batch(started)
                if embedding is not None:
                    yield from self._store_batch(embedding)
                    embedding = None
            finally:
                if embedding is not None:
                    embedding.vectors.cancel()

    def _check(self, target: Target) -> _Job | FileResult:
        """Everything decided without parsing: refusals, skips, unchanged files."""
        started = time.perf_counter()
        path = target.path
        try:
            size_or_skip = check_target(target, self._settings.ingest.max_file_mb)
            if isinstance(size_or_skip, FileResult):
                return size_or_skip
            size = size_or_skip
            doc_id = doc_id_for(path)
            meta = resolve_meta(path, target.root, self._settings.ingest)
            file_hash = sha256_file(path)
            layout = f"\n{_MAIL_LAYOUT}" if path.suffix.lower() in MAIL_SUFFIXES else ""
            version = hashlib.sha256(f"{file_hash}\n{meta.key()}{layout}".encode()).hexdigest()
        except (IngestError, OSError) as exc:
            message = exc.message if isinstance(exc, RagError) else f"{shown(path)}: {exc}"
            doc_id = doc_id_for(path) if path.exists() else ""
            return self._failed(target, doc_id, message, started)
        old = self._manifest.document(self._collection, doc_id)
        if old is not None and old.version == version:
            self._manifest.forget_failure(self._collection, str(path.resolve()))
            return FileResult(str(path), doc_id, "unchanged", old.chunks, seconds=_since(started))
        return _Job(target, doc_id, file_hash, version, size, meta, old, started)

    def _parse_job(self, job: _Job) -> ParseJob:
        cfg = self._settings.ingest
        return ParseJob(
            path=str(job.target.path),
            pdf_strategy=cfg.pdf_strategy,
            chunk_tokens=cfg.chunk_tokens,
            chunk_overlap=cfg.chunk_overlap,
            max_unzipped_mb=cfg.max_unzipped_mb,
            max_zip_ratio=cfg.max_zip_ratio,
            token_counter=self._tokenizer,
            max_file_mb=cfg.max_file_mb,
            ocr=OcrOptions(**cfg.ocr.model_dump()),
        )

    def _embed_batch(
        self, batch: list[tuple[_Job, Parsed]], pool: ThreadPoolExecutor
    ) -> _Embedding:
        """Make the batch's chunks and start embedding them in the background."""
        ingested_at = _now()
        families: list[tuple[_Job, list[_Unit], list[FileResult]]] = []
        for job, parsed in batch:
            units, problems = self._units(job, parsed)
            root = str(job.target.root.resolve()) if job.target.root else ""
            for unit in units:
                unit.chunks = make_chunks(
                    unit.plans,
                    doc_id=unit.doc_id,
                    id_prefix=f"{unit.doc_id}:{unit.version[:12]}",
                    source=shown_source(unit.key, root),  # never a server path to callers
                    title=unit.title,
                    groups=job.meta.groups,
                    ingested_at=ingested_at,
                    url=job.meta.url,
                    parent=unit.parent,
                )
            families.append((job, units, problems))
        texts = [embed_text(c) for _, units, _ in families for u in units for c in u.chunks]
        vectors = pool.submit(self._embedder.embed_documents, texts)
        return _Embedding(families, vectors, ingested_at)

    def _store_batch(self, batch: _Embedding) -> Iterator[FileResult]:
        """Wait for a batch's vectors, then store and commit each document."""
        vectors = batch.vectors.result()
        all_units = [u for _, units, _ in batch.families for u in units]
        all_chunks = [c for u in all_units for c in u.chunks]
        for unit in all_units:
            self._manifest.begin(self._collection, unit.doc_id, [c.chunk_id for c in unit.chunks])
        crash_point("before_upsert")
        hashes = {u.doc_id: u.file_hash for u in all_units}
        self._store.upsert(all_chunks, vectors, file_hash=hashes)
        crash_point("after_upsert")
        for job, units, problems in batch.families:
            yield from self._commit(job, units, problems, batch.ingested_at)

    def _units(self, job: _Job, parsed: Parsed) -> tuple[list[_Unit], list[FileResult]]:
        """The documents a parsed file makes (a message: also its attachments), and the
        results of the attachments that failed or were left out."""
        path = job.target.path
        key = str(path.resolve())
        head = _Unit(
            doc_id=job.doc_id,
            key=key,
            source=str(path),
            title=job.meta.title or parsed.title,
            plans=parsed.plans,
            file_hash=job.file_hash,
            version=job.version,
            pages=parsed.pages,
            size=job.size,
            existed=job.old is not None,
            warnings=parsed.warnings,
            ocr_pages=parsed.ocr_pages,
        )
        units, problems = [head], []
        old = {c.doc_id for c in self._manifest.children(self._collection, job.doc_id)}
        for part in parsed.attachments:
            child_key = attachment_key(key, part.name)
            child_id = doc_id_for(child_key)
            shown_path = attachment_key(str(path), part.name)
            if part.skipped is not None:
                problems.append(
                    FileResult(shown_path, "", "skipped", error=part.skipped, parent=job.doc_id)
                )
                continue
            if part.parsed.error is not None:
                problems.append(
                    FileResult(
                        shown_path, child_id, "failed", error=part.parsed.error, parent=job.doc_id
                    )
                )
                continue
            version = hashlib.sha256(f"{part.file_hash}\n{job.meta.key()}".encode()).hexdigest()
            units.append(
                _Unit(
                    doc_id=child_id,
                    key=child_key,
                    source=shown_path,
                    title=part.parsed.title,
                    plans=part.parsed.plans,
                    file_hash=part.file_hash,
                    version=version,
                    pages=part.parsed.pages,
                    size=part.size,
                    parent=job.doc_id,
                    existed=child_id in old,
                    warnings=part.parsed.warnings,
                    ocr_pages=part.parsed.ocr_pages,
                )
            )
        return units, problems

    def _commit(
        self, job: _Job, units: list[_Unit], problems: list[FileResult], ingested_at: str
    ) -> Iterator[FileResult]:
        root = str(job.target.root.resolve()) if job.target.root else ""
        records = [
            (
                DocRecord(
                    doc_id=u.doc_id,
                    path=u.key,
                    file_hash=u.file_hash,
                    version=u.version,
                    title=u.chunks[0].title,
                    groups=job.meta.groups,
                    embedder=self._embedder.model_id,
                    chunks=len(u.chunks),
                    pages=u.pages,
                    size=u.size,
                    ingested_at=ingested_at,
                    root=root,
                    parent=u.parent,
                ),
                [c.chunk_id for c in u.chunks],
            )
            for u in units
        ]
        head, rest = records[0], records[1:]
        removed: list[DocRecord] = []
        if job.target.path.suffix.lower() in MAIL_SUFFIXES:
            keep = {r.doc_id for r, _ in rest}
            removed = [
                c
                for c in self._manifest.children(self._collection, job.doc_id)
                if c.doc_id not in keep
            ]
            stale = self._manifest.commit_family(self._collection, head, rest)
            for problem in problems:
                if problem.status == "failed":
                    with contextlib.suppress(OSError):
                        name = problem.path.rpartition(ATTACHMENT_MARK)[2]
                        key = attachment_key(head[0].path, name)
                        self._manifest.record_failure(
                            self._collection, key, problem.error or "", _now()
                        )
        else:
            stale = self._manifest.commit(self._collection, *head)
        for unit in units:
            self._notify_upsert(unit.chunks)
        crash_point("after_commit")
        if stale:
            self._store.delete_ids(stale)
            self._notify_delete(stale)
            crash_point("after_cleanup")
            self._manifest.clear_garbage(self._collection, stale)
        for unit in units:
            status: Status = "updated" if unit.existed else "added"
            yield FileResult(
                unit.source,
                unit.doc_id,
                status,
                len(unit.chunks),
                seconds=_since(job.started),
                pages=unit.pages,
                parent=unit.parent,
                warnings=unit.warnings,
                ocr_pages=unit.ocr_pages,
            )
        yield from problems
        for gone in removed:
            source = attachment_key(str(job.target.path), gone.path.rpartition(ATTACHMENT_MARK)[2])
            yield FileResult(source, gone.doc_id, "deleted", gone.chunks, parent=job.doc_id)

    def _prune(self, folder: Path) -> Iterator[FileResult]:
        root = folder.resolve()
        gone = [
            r
            for r in self._manifest.documents(self._collection)
            if not r.parent and Path(r.path).is_relative_to(root) and not os.path.lexists(r.path)
        ]
        for record in gone:
            started = time.perf_counter()
            count = self._remove(record.doc_id)
            yield FileResult(record.path, record.doc_id, "deleted", count, seconds=_since(started))
        # A file that failed and is gone has nothing left to fix: forget its error too
        # (an attachment's goes with its message's file).
        for key, _, _ in self._manifest.failures(self._collection):
            path = key.partition(ATTACHMENT_MARK)[0]
            if Path(path).is_relative_to(root) and not os.path.lexists(path):
                self._manifest.forget_failure(self._collection, key)

    def _remove(self, doc_id: str) -> int:
        ids = self._manifest.remove(self._collection, doc_id)
        crash_point("after_remove")
        if ids:
            self._store.delete_ids(ids)
            self._notify_delete(ids)
            self._manifest.clear_garbage(self._collection, ids)
        return len(ids)

    def _failed(self, target: Target, doc_id: str, message: str, started: float) -> FileResult:
        path = target.path
        with contextlib.suppress(OSError):
            key = str(path.resolve()) if path.exists() else str(path)
            self._manifest.record_failure(self._collection, key, message, _now())
        return FileResult(str(path), doc_id, "failed", error=message, seconds=_since(started))

    # -- listeners --------------------------------------------------------------------------

    def _notify_upsert(self, chunks: Sequence[Chunk]) -> None:
        for listener in self._listeners:
            listener.on_upsert(chunks)

    def _notify_delete(self, ids: Sequence[str]) -> None:
        for listener in self._listeners:
            listener.on_delete(ids)

    def _commit_listeners(self) -> None:
        for listener in self._listeners:
            listener.commit()


def build_ingestor(
    settings: Settings, kb: KnowledgeBase, *, keep_workers: bool = False
) -> Ingestor:
    """The ingest pipeline over the parts :mod:`rag.services` built (``rag-ingest`` and the
    service's uploads alike). The manifest is the shared one when the state database is."""
    return Ingestor(
        settings,
        kb.embedder,
        kb.store,
        listeners=kb.listeners,
        keep_workers=keep_workers,
        writer=kb.writer,
        manifest=Manifest(kb.shared) if kb.shared is not None else None,
    )


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 3)
