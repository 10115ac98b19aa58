"""``rag-ingest backup DEST``: a consistent copy of the embedded knowledge base, made while
``rag-serve`` keeps answering (issue 25). :mod:`ingest.restore` puts one back.

What is copied, for the embedded single-machine default (``store.mode: embedded``, the
state database in SQLite) and nothing else (:func:`layout` refuses the other settings and
says what to back up instead):

- ``chroma/``: the Chroma folder (``store.path``): ``chroma.sqlite3`` and the HNSW segment
  folders;
- ``keyword/``: the BM25 index folder: ``terms.sqlite``, ``CURRENT`` and the generation it
  names (older generations and temporary folders are left out);
- ``uploads/``: the files uploaded through ``/v1/documents`` (``paths.data_dir/uploads``),
  which the manifest points at and ``reindex`` reads again;
- ``state.sqlite3``: the state database (API keys, answers, feedback);
- ``manifest.sqlite``: the ingest manifest.

Consistency: the backup holds the index's writer lock (:func:`writer_lock`, the flock
``rag-ingest add``/``sync``/``delete``/``reindex`` and the service's uploads take) from
before the counts are read until ``backup.json`` is written, so the index does not change
meanwhile; a writer that comes along is told the index is busy. Every SQLite file is copied
with SQLite's online backup API (never the files of a live WAL database), so the state
database, which the running service writes without that lock, is a snapshot of one moment.
The rest are plain files that only a lock holder writes.

The copy is written to ``DEST.partial`` and renamed to ``DEST`` once ``backup.json`` (the
counts, and the sha256 of every file) is in it: a backup that crashed never looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ingest.kbfiles import (
    SIDECARS,
    Part,
    fsync,
    has_data,
    index_counts,
    layout,
    sha256,
    writer_lock,
)
from rag.config import Settings
from rag.errors import BadRequestError, RagError, StoreError, storage_failure

FORMAT = 1
INFO_FILE = "backup.json"
_PARTIAL_MARK = ".rag-backup-partial"
_SQLITE_MAGIC = b"SQLite format 3\x00"


def members(part: Part) -> tuple[list[str], list[str]]:
    """The part's files and folders to copy, relative (POSIX) paths; for the keyword index
    the table, ``CURRENT`` and the generation it names, for the others every regular file
    but SQLite's ``-wal``/``-shm``/``-journal`` (the backup API reads those)."""
    root = part.path
    if part.name == "keyword":
        files = [n for n in ("terms.sqlite", "CURRENT") if (root / n).is_file()]
        current = (root / "CURRENT").read_text("utf-8").strip() if "CURRENT" in files else ""
        if not current or not (root / current).is_dir():
            return files, []
        generation = sorted(p for p in (root / current).iterdir() if _plain(p))
        return files + [f"{current}/{p.name}" for p in generation], [current]
    files, folders = [], []
    for where, dirs, names in os.walk(root):
        here = Path(where)
        dirs.sort()
        folders += [(here / d).relative_to(root).as_posix() for d in dirs]
        files += [
            (here / n).relative_to(root).as_posix()
            for n in sorted(names)
            if _plain(here / n) and not n.endswith(SIDECARS)
        ]
    return files, folders


def _plain(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def is_sqlite(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(len(_SQLITE_MAGIC)) == _SQLITE_MAGIC


def copy_sqlite(source: Path, target: Path) -> None:
    """A snapshot of a (possibly live) SQLite database, with the online backup API: one step,
    so the copy is the database as of one transaction."""
    src = sqlite3.connect(str(source), timeout=30)
    try:
        src.execute("PRAGMA query_only = ON")
        dst = sqlite3.connect(str(target))
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()


@dataclass(frozen=True, slots=True)
class Copied:
    """One part written to the backup."""

    name: str
    source: Path
    files: int
    bytes: int

    def to_json(self) -> dict[str, Any]:
        return {
            "event": "part",
            "part": self.name,
            "source": str(self.source),
            "files": self.files,
            "bytes": self.bytes,
        }


def backup(
    settings: Settings,
    dest: Path,
    *,
    wait: float = 60.0,
    on_part: Callable[[Copied], None] | None = None,
) -> dict[str, Any]:
    """Write a backup of the knowledge base to the new folder ``dest``; returns its
    ``backup.json``. ``on_part`` hears of each part once it is copied."""
    parts = layout(settings)
    present = [p for p in parts if has_data(p)]
    if not present:
        raise BadRequestError(
            f"Nothing to back up: no index at {settings.store.path} and no state database "
            f"in {settings.paths.data_dir}. Check --profile (and RAG_STORE__PATH, "
            "RAG_PATHS__DATA_DIR): they must be the service's."
        )
    partial = _start(dest)
    started = time.perf_counter()
    try:
        with writer_lock(settings.store.manifest_path(), wait):
            counts = index_counts(settings)
            files: dict[str, dict[str, Any]] = {}
            folders: list[str] = []
            stored: dict[str, dict[str, str]] = {}
            for part in present:
                copied = _copy_part(part, partial, files, folders)
                stored[part.name] = {
                    "kind": part.kind,
                    "path": part.stored,
                    "source": str(part.path),
                }
                if on_part is not None:
                    on_part(copied)
            info = {
                "format": FORMAT,
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "rag_version": _version(),
                "store_collection": settings.store.collection,
                **counts,
                "parts": stored,
                "folders": folders,
                "files": files,
            }
            target = partial / INFO_FILE
            target.write_text(json.dumps(info, indent=2, ensure_ascii=False), "utf-8")
            fsync(target)
            (partial / _PARTIAL_MARK).unlink()
            fsync(partial)
            os.replace(partial, dest)
            fsync(dest.parent)
    except BaseException as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(exc, OSError | sqlite3.Error):
            raise _failure(exc, dest) from exc
        raise
    info["seconds"] = round(time.perf_counter() - started, 2)
    return info


def _start(dest: Path) -> Path:
    """``DEST.partial``, new and marked as ours; refuses a ``DEST`` that holds anything."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BadRequestError(
            f"{dest} already exists and is not an empty folder. A backup never writes over "
            "anything: give a new folder (e.g. backups/kb-$(date +%F))."
        )
    partial = dest.with_name(dest.name + ".partial")
    if partial.exists():
        if not (partial / _PARTIAL_MARK).is_file():
            raise BadRequestError(
                f"{partial} exists and was not left by an interrupted backup. Move it away "
                "or give another DEST."
            )
        shutil.rmtree(partial)  # an interrupted backup's leftovers
    try:
        partial.mkdir(parents=True)
        (partial / _PARTIAL_MARK).write_text("an unfinished rag-ingest backup\n", "utf-8")
    except OSError as exc:
        raise _failure(exc, dest) from exc
    return partial


def _copy_part(
    part: Part, into: Path, files: dict[str, dict[str, Any]], folders: list[str]
) -> Copied:
    names, dirs = ([""], []) if part.kind == "sqlite" else members(part)
    total = 0
    for folder in dirs:
        (into / part.stored / folder).mkdir(parents=True, exist_ok=True)
        folders.append(f"{part.stored}/{folder}")
    for name in names:
        source = part.path / name if name else part.path
        stored = f"{part.stored}/{name}" if name else part.stored
        target = into / stored
        target.parent.mkdir(parents=True, exist_ok=True)
        if is_sqlite(source):
            copy_sqlite(source, target)
        else:
            shutil.copy2(source, target)
        fsync(target)
        size = target.stat().st_size
        files[stored] = {"sha256": sha256(target), "bytes": size}
        total += size
    return Copied(part.name, part.path, len(names), total)


def _failure(exc: OSError | sqlite3.Error, where: Path) -> RagError:
    return storage_failure(exc, "backup", where) or StoreError(
        f"Copying the knowledge base to {where} failed ({type(exc).__name__}: {exc}). "
        "Nothing was kept there; fix the cause, then run the backup again."
    )


def _version() -> str | None:
    try:
        from rag import __version__
    except ImportError:  # pragma: no cover - the package always has it
        return None
    return __version__
