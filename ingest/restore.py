"""``rag-ingest restore SRC``: put a backup made by ``rag-ingest backup`` in place of this
profile's knowledge base (:mod:`ingest.backup` describes what a backup holds).

Each step refuses before the next one touches anything:

1. :func:`verify`: ``backup.json`` is read and every file it lists is checked against its
   size and sha256; a missing or changed file is named, and nothing is touched.
2. The index's writer lock (no ``rag-ingest`` or upload writing), and no other process with
   a target file open (:func:`holders`: a running ``rag-serve`` keeps its store, manifest and
   state database open; Linux ``/proc``, the processes this user may look at).
3. The target paths must hold nothing, unless ``force``: then each is moved aside to
   ``<path>.before-restore-<time>`` (a SQLite file with its ``-wal``/``-shm``), never deleted.
4. Each part is copied beside its target (``<path>.restore-<time>.tmp``), each file checked
   against its sha256 again, and renamed into place: one rename per part, the manifest last.
5. The restored manifest, store and keyword index are opened and their counts compared with
   ``backup.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from pathlib import Path, PurePosixPath
from typing import Any

from ingest.backup import FORMAT, INFO_FILE
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
from rag.errors import (
    BadRequestError,
    ConfigError,
    IndexBusyError,
    RagError,
    StoreError,
    how_to_run,
    storage_failure,
)

CHECKED = ("collection", "documents", "chunks", "store_chunks", "keyword_chunks")


def verify(src: Path) -> dict[str, Any]:
    """``backup.json`` of the backup in ``src`` once every file it lists is there, whole."""
    if not src.is_dir():
        raise BadRequestError(f"{src} is not a folder. Give the folder rag-ingest backup wrote.")
    info_path = src / INFO_FILE
    if not info_path.is_file():
        raise BadRequestError(
            f"{src} has no {INFO_FILE}, so it is not a finished backup (an interrupted one "
            "is left as DEST.partial). Nothing was changed; restore another backup."
        )
    try:
        info = json.loads(info_path.read_text("utf-8"))
        version = int(info["format"])
        files: dict[str, dict[str, Any]] = info["files"]
        parts: dict[str, dict[str, str]] = info["parts"]
        stored = {entry["path"] for entry in parts.values()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadRequestError(
            f"{info_path} is unreadable ({type(exc).__name__}: {exc}): the backup is damaged. "
            "Nothing was changed; restore another backup."
        ) from exc
    if version > FORMAT:
        raise BadRequestError(
            f"{src} was written in backup format {version}; this version reads format "
            f"{FORMAT}. Restore it with the version that made it."
        )
    for name, entry in sorted(files.items()):
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts or relative.parts[0] not in stored:
            raise BadRequestError(
                f"{INFO_FILE} in {src} lists {name!r}, outside the backup's parts: it is "
                "damaged. Nothing was changed; restore another backup."
            )
        path = src / relative
        if not path.is_file():
            raise BadRequestError(
                f"The backup is incomplete: {name} is missing from {src}. Nothing was "
                "changed; restore another backup."
            )
        if path.stat().st_size != entry["bytes"] or sha256(path) != entry["sha256"]:
            raise BadRequestError(
                f"The backup is corrupted: {name} in {src} does not match its sha256 in "
                f"{INFO_FILE}. Nothing was changed; restore another backup."
            )
    return dict(info)


def holders(parts: list[Part]) -> list[str]:
    """Other processes that have a file of these parts open, as ``pid N (command)``."""
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    folders = tuple(os.path.realpath(p.path) + os.sep for p in parts if p.kind == "folder")
    files = {
        os.path.realpath(p.path) + suffix
        for p in parts
        if p.kind == "sqlite"
        for suffix in ("", *SIDECARS)
    }
    found: list[str] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:  # gone, or another user's
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target in files or target.startswith(folders):
                found.append(f"pid {entry.name} ({_command(entry)})")
                break
    return found


def _command(entry: Path) -> str:
    try:
        words = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "?"
    words = words.strip()
    return words if len(words) <= 80 else words[:77] + "..."


def restore(settings: Settings, src: Path, *, force: bool = False) -> dict[str, Any]:
    """Put the backup in ``src`` in place of the knowledge base of ``settings``; returns
    the counts read back, the paths moved aside, and a warning when the configured
    embedding model is not the one the collection was built with."""
    parts = layout(settings)
    info = verify(src)
    _check_fits(info, parts, settings)
    with writer_lock(settings.store.manifest_path(), doing="restore into it"):
        busy = holders(parts)
        if busy:
            raise IndexBusyError(
                f"The target files are open in {'; '.join(busy)}. Stop rag-serve (and any "
                "rag-ingest) using this index, then restore again. Nothing was changed."
            )
        occupied = [p for p in parts if has_data(p)]
        if occupied and not force:
            raise BadRequestError(
                "These paths already hold data: "
                f"{', '.join(str(p.path) for p in occupied)}. Nothing was changed. Restore "
                "into empty paths (another --profile, or RAG_STORE__PATH and "
                "RAG_PATHS__DATA_DIR), or add --force: the data there is then moved aside "
                "to <path>.before-restore-<time>, not deleted."
            )
        stamp = _stamp(occupied)
        moved: list[tuple[Path, Path]] = []
        try:
            for part in occupied:
                moved.append((part.path, _move_aside(part, stamp)))
            placed = [_put(src, info, p, stamp) for p in parts if p.name in info["parts"]]
        except (OSError, sqlite3.Error) as exc:
            kept = "; ".join(f"{old} is at {aside}" for old, aside in moved)
            raise storage_failure(exc, "restored files", src) or StoreError(
                f"Restoring from {src} failed ({type(exc).__name__}: {exc}). "
                + (f"The data that was there is kept: {kept}. " if kept else "")
                + "Fix the cause, then restore again with --force."
            ) from exc
        counts = index_counts(settings)
    wrong = [
        f"{k} {counts[k]!r} (backup: {info.get(k)!r})" for k in CHECKED if counts[k] != info.get(k)
    ]
    if wrong:
        raise StoreError(
            f"The restored index does not match the backup: {', '.join(wrong)}. The files are "
            f"in place; look with {how_to_run('rag-ingest stats')}, or restore another backup "
            "with --force."
        )
    return {
        "event": "restored",
        "source": str(src),
        "files": sum(n for n, _ in placed),
        "bytes": sum(b for _, b in placed),
        **counts,
        "moved_aside": [{"path": str(old), "to": str(aside)} for old, aside in moved],
        "warning": _embedder_warning(settings, counts["embedder"]),
    }


def _check_fits(info: dict[str, Any], parts: list[Part], settings: Settings) -> None:
    names = {p.name for p in parts}
    extra = sorted(set(info["parts"]) - names)
    if extra:
        raise ConfigError(
            f"The backup holds {', '.join(extra)}, which these settings have no place for "
            "(state.url is an in-memory database?). Use the settings of the service it was "
            "made from."
        )
    made_with = info.get("store_collection")
    if made_with != settings.store.collection:
        raise ConfigError(
            f"The backup was made with store.collection {made_with!r}; these settings use "
            f"{settings.store.collection!r}. Set store.collection (RAG_STORE__COLLECTION) to "
            f"{made_with!r} and restore again. Nothing was changed."
        )


def _stamp(parts: list[Part]) -> str:
    base = time.strftime("%Y%m%d-%H%M%S")
    stamp, n = base, 1
    while any(Path(f"{p.path}.before-restore-{stamp}").exists() for p in parts):
        n += 1
        stamp = f"{base}-{n}"
    return stamp


def _move_aside(part: Part, stamp: str) -> Path:
    aside = Path(f"{part.path}.before-restore-{stamp}")
    for suffix in ("", *SIDECARS) if part.kind == "sqlite" else ("",):
        here = Path(f"{part.path}{suffix}")
        if here.exists():
            os.rename(here, f"{aside}{suffix}")
    fsync(part.path.parent)
    return aside


def _put(src: Path, info: dict[str, Any], part: Part, stamp: str) -> tuple[int, int]:
    """Copy one part beside its target, check it, rename it into place; (files, bytes)."""
    stored = info["parts"][part.name]["path"]
    files = {
        name: entry
        for name, entry in info["files"].items()
        if name == stored or name.startswith(stored + "/")
    }
    tmp = Path(f"{part.path}.restore-{stamp}.tmp")
    part.path.parent.mkdir(parents=True, exist_ok=True)
    if part.kind == "sqlite":
        _copy_checked(src / stored, tmp, files[stored]["sha256"])
    else:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        for folder in info.get("folders", []):
            if folder.startswith(stored + "/"):
                (tmp / folder[len(stored) + 1 :]).mkdir(parents=True, exist_ok=True)
        for name, entry in files.items():
            target = tmp / name[len(stored) + 1 :]
            target.parent.mkdir(parents=True, exist_ok=True)
            _copy_checked(src / name, target, entry["sha256"])
        for where, _, _ in os.walk(tmp):
            fsync(Path(where))
    os.replace(tmp, part.path)
    fsync(part.path.parent)
    return len(files), sum(int(e["bytes"]) for e in files.values())


def _copy_checked(source: Path, target: Path, expected: str) -> None:
    shutil.copyfile(source, target)
    fsync(target)
    if sha256(target) != expected:
        raise StoreError(
            f"{source} changed while it was restored (its sha256 no longer matches "
            f"{INFO_FILE}). Restore again with --force; the data that was there is kept."
        )


def _embedder_warning(settings: Settings, built_with: str | None) -> str | None:
    from rag.services import build_embedder

    try:
        configured = build_embedder(settings).model_id
    except RagError:
        return None
    if not built_with or built_with == configured:
        return None
    return (
        f"The restored collection was built with {built_with}, but these settings use "
        f"{configured}: set embedding.model back to {built_with} before serving (or rebuild "
        f"with {how_to_run('rag-ingest reindex')})."
    )
