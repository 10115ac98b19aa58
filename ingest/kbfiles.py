"""The files of the embedded knowledge base, for ``rag-ingest backup`` and ``restore``.

:func:`layout` names the parts (the Chroma folder, the BM25 folder, the uploads, the state
database, the manifest) under one :class:`Settings`, and refuses the settings these
commands do not cover (a Chroma server, a server state database) with what to back up
instead; :func:`writer_lock` is the index's writer lock; :func:`index_counts` reads what the
index holds, through the manifest, the store and the BM25 index.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rag.config import STATE_FILE, Settings
from rag.errors import ConfigError, IndexBusyError, how_to_run

UPLOAD_DIR = "uploads"  # serving.routes.documents.UPLOAD_DIR (ingest does not import serving)
SIDECARS = ("-wal", "-shm", "-journal")


@dataclass(frozen=True, slots=True)
class Part:
    """One piece of the knowledge base: where it lives under these settings, how it is
    copied, and its name inside a backup folder."""

    name: str
    path: Path
    kind: Literal["sqlite", "folder"]
    stored: str


def layout(settings: Settings) -> list[Part]:
    """The parts to copy, the manifest last (restore puts it in place last); a
    :class:`ConfigError` saying what to back up instead when the settings are not the
    embedded default."""
    from rag.retrieval.hybrid import keyword_folder

    store = settings.store
    if store.mode != "embedded":
        raise ConfigError(
            f"store.mode is {store.mode}: the vectors live in the Chroma server, which "
            f"{how_to_run('rag-ingest backup')} cannot copy. Back up the Chroma server's own "
            "data folder instead (the --path `chroma run` was given; stopped, or from a "
            f"filesystem snapshot), with the manifest {store.manifest_path()} and the state "
            "database (pg_dump for PostgreSQL) while no rag-ingest runs. backup and "
            "restore cover the embedded default only (store.mode: embedded, SQLite state "
            "database)."
        )
    keyword = keyword_folder(store.path, store.collection, settings.retrieval.keyword_dir)
    parts = [
        Part("chroma", store.path, "folder", "chroma"),
        Part("keyword", keyword, "folder", "keyword"),
        Part("uploads", settings.paths.data_dir / UPLOAD_DIR, "folder", UPLOAD_DIR),
    ]
    state = state_file(settings)
    if state is not None:
        parts.append(Part("state", state, "sqlite", STATE_FILE))
    parts.append(Part("manifest", store.manifest_path(), "sqlite", "manifest.sqlite"))
    return parts


def state_file(settings: Settings) -> Path | None:
    """The state database's SQLite file (None for an in-memory one); a
    :class:`ConfigError` for a server database, which its own tools back up."""
    url = settings.state.url
    if not url:
        return settings.paths.data_dir / STATE_FILE
    dialect = url.split(":", 1)[0].split("+", 1)[0]
    if dialect != "sqlite":
        hint = (
            "pg_dump -Fc (and pg_restore to put it back)"
            if dialect.startswith("postgres")
            else "that database's own dump tool"
        )
        raise ConfigError(
            f"state.url is a {dialect} database: back it up with {hint}, and the Chroma "
            "folder, manifest and keyword index with the service stopped or from a "
            f"filesystem snapshot. {how_to_run('rag-ingest backup')} and restore cover the "
            "embedded default only (store.mode: embedded, SQLite state database)."
        )
    rest = url.split("://", 1)[1] if "://" in url else ""
    database = (rest[1:] if rest.startswith("/") else rest).split("?", 1)[0]
    if not database or database == ":memory:":
        return None
    return Path(database)


@contextmanager
def writer_lock(manifest: Path, wait: float = 0.0, *, doing: str = "back up") -> Iterator[None]:
    """Hold the index's writer lock: the flock on ``<manifest>.lock`` that
    :meth:`rag.index.manifest.Manifest.lock` takes (every ingest, reindex and upload), so
    no other writer starts until the block ends. Waits up to ``wait`` seconds for one that
    is running; then an :class:`IndexBusyError`."""
    import fcntl

    manifest.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(manifest) + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() >= deadline:
                    waited = f" (waited {wait:g} s)" if wait else ""
                    raise IndexBusyError(
                        f"Another rag-ingest, or an upload to rag-serve, is writing to this "
                        f"index{waited}, so it cannot {doing} now. Let it finish, then run "
                        "the same command again."
                    ) from None
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)


def index_counts(settings: Settings) -> dict[str, Any]:
    """What the index holds, read through the manifest, the store and the BM25 index: the
    active collection, its embedder, documents and chunks (manifest), chunks in the store
    and in the keyword index."""
    from rag.errors import NoCollectionError
    from rag.index.manifest import Manifest
    from rag.services import build_keyword_index, open_store

    store = settings.store
    counts: dict[str, Any] = {
        "collection": store.collection,
        "embedder": None,
        "documents": 0,
        "chunks": 0,
        "store_chunks": 0,
        "keyword_chunks": 0,
    }
    if store.manifest_path().is_file():
        with Manifest(store.manifest_path()) as manifest:
            counts["collection"] = manifest.active(store.collection)
            stats = manifest.stats(counts["collection"])
        counts["documents"], counts["chunks"] = stats["documents"], stats["chunks"]
    if store.path.is_dir():
        try:
            chroma = open_store(settings, collection=counts["collection"])
        except NoCollectionError:
            pass
        else:
            counts["store_chunks"], counts["embedder"] = chroma.count(), chroma.embedder_id
            chroma.close()
    keyword = build_keyword_index(settings)
    try:
        counts["keyword_chunks"] = len(keyword)
    finally:
        keyword.close()
    return counts


def has_data(part: Part) -> bool:
    """Whether the part's path holds anything (an empty folder does not)."""
    if part.kind == "folder":
        return part.path.is_dir() and any(part.path.iterdir())
    return any(Path(f"{part.path}{s}").exists() for s in ("", *SIDECARS))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def fsync(path: Path) -> None:
    """Flush a file (or a folder's entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
