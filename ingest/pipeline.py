"""The ingest pipeline: file -> parse -> chunk -> embed -> store, one file at a time.

- A document's id is derived from its resolved path, so re-adding a file updates it.
- A file whose bytes are unchanged (sha256 stored with its chunks) is skipped unparsed.
- A changed file's new chunks are written before the old ones are removed (chunk ids carry
  the file hash), so a crash never leaves a document without chunks.
- A file that fails is reported with what to do, and the batch goes on.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from ingest.chunk import ChunkPlan, make_chunks, plan_chunks
from ingest.parse import SUPPORTED_SUFFIXES, parse_file
from rag.config import Settings
from rag.embedding import SentenceTransformerEmbedder
from rag.errors import IngestError, RagError
from rag.hashing import sha256_file
from rag.seams import IndexListener
from rag.store import ChromaStore
from rag.types import Chunk

Status = Literal["added", "updated", "unchanged", "skipped", "failed"]
SIDECAR_SUFFIX = ".meta.json"


@dataclass(frozen=True, slots=True)
class FileResult:
    path: str
    doc_id: str
    status: Status
    chunks: int = 0
    error: str | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def doc_id_for(path: Path) -> str:
    return hashlib.sha1(str(path.resolve()).encode("utf-8")).hexdigest()[:16]


def discover(paths: Iterable[Path]) -> Iterator[tuple[Path, bool]]:
    """Files to ingest, with whether the user named them directly (then errors count)."""
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                rel = child.relative_to(path)
                if any(part.startswith(".") for part in rel.parts):
                    continue
                if child.is_file() and not child.name.endswith(SIDECAR_SUFFIX):
                    yield child, False
        else:
            yield path, True


def embed_text(chunk: Chunk) -> str:
    """What the embedder sees: the chunk with its title and heading path for context."""
    head = chunk.title if not chunk.section else f"{chunk.title} > {chunk.section}"
    return f"{head}\n{chunk.text}"


class Ingestor:
    def __init__(
        self,
        settings: Settings,
        embedder: SentenceTransformerEmbedder,
        store: ChromaStore,
        listeners: Sequence[IndexListener] = (),
    ) -> None:
        self._settings = settings
        self._embedder = embedder
        self._store = store
        self._listeners = tuple(listeners)

    def add(self, paths: Iterable[Path]) -> Iterator[FileResult]:
        try:
            for path, explicit in discover(paths):
                if path.suffix.lower() not in SUPPORTED_SUFFIXES and not explicit:
                    yield FileResult(str(path), "", "skipped", error="unsupported file type")
                    continue
                yield self.add_file(path)
        finally:
            for listener in self._listeners:
                listener.commit()

    def add_file(self, path: Path) -> FileResult:
        started = time.perf_counter()
        doc_id = doc_id_for(path) if path.exists() else ""
        try:
            status, count = self._ingest(path, doc_id)
        except RagError as exc:
            return FileResult(
                str(path), doc_id, "failed", error=exc.message, seconds=_since(started)
            )
        return FileResult(str(path), doc_id, status, count, seconds=_since(started))

    def _check(self, path: Path) -> None:
        if not path.exists():
            raise IngestError(f"{path}: no such file. Check the path.")
        if not path.is_file():
            raise IngestError(f"{path}: not a regular file.")
        limit = self._settings.ingest.max_file_mb
        size_mb = path.stat().st_size / 1e6
        if size_mb > limit:
            raise IngestError(
                f"{path.name}: {size_mb:.1f} MB is over the {limit:g} MB limit. Split the "
                "file, or raise ingest.max_file_mb (RAG_INGEST__MAX_FILE_MB)."
            )
        if path.stat().st_size == 0:
            raise IngestError(f"{path.name}: the file is empty. Add it again once it has content.")

    def _ingest(self, path: Path, doc_id: str) -> tuple[Status, int]:
        self._check(path)
        file_hash = sha256_file(path)
        old_hash = self._store.file_hash(doc_id)
        if old_hash == file_hash:
            return "unchanged", len(self._store.chunk_ids(doc_id))
        cfg = self._settings.ingest
        parsed = parse_file(path, pdf_strategy=cfg.pdf_strategy)
        plans: list[ChunkPlan] = plan_chunks(
            parsed, self._embedder.count_tokens, cfg.chunk_tokens, cfg.chunk_overlap
        )
        chunks = make_chunks(
            plans,
            doc_id=doc_id,
            id_prefix=f"{doc_id}:{file_hash[:12]}",
            source=str(path),
            title=parsed.title,
            groups=tuple(cfg.default_groups),
        )
        vectors = self._embedder.embed_documents([embed_text(c) for c in chunks])
        old_ids = set(self._store.chunk_ids(doc_id)) if old_hash is not None else set()
        self._store.upsert(chunks, vectors, file_hash=file_hash)
        for listener in self._listeners:
            listener.on_upsert(chunks)
        stale = old_ids - {c.chunk_id for c in chunks}
        if stale:
            self._store.delete_ids(sorted(stale))
            for listener in self._listeners:
                listener.on_delete(sorted(stale))
        return ("updated" if old_hash is not None else "added"), len(chunks)


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 3)
