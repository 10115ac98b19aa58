"""What the ingest pipeline looks at and what it reports: targets found under folders,
the refusals decided before a file is read (odd names, links out of the folder, types,
size), document ids, and the per-file result."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from ingest.access import SIDECAR_SUFFIX
from ingest.guard import shown
from ingest.parse import SUPPORTED_SUFFIXES
from rag.errors import IngestError

Status = Literal["added", "updated", "unchanged", "skipped", "failed", "deleted"]


@dataclass(frozen=True, slots=True)
class FileResult:
    path: str
    doc_id: str
    status: Status
    chunks: int = 0
    error: str | None = None
    seconds: float = 0.0
    pages: int = 0
    parent: str = ""
    """For an e-mail attachment: the message's doc id."""
    warnings: tuple[str, ...] = ()
    """What an indexed file left out (pages OCR could not read well enough)."""
    ocr_pages: int = 0
    """Pages (or images) read by OCR."""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("parent", "warnings", "ocr_pages"):
            if not data[key]:
                del data[key]
        if self.warnings:
            data["warnings"] = list(self.warnings)
        return data


@dataclass(frozen=True, slots=True)
class Target:
    """A file to look at; ``root`` is the folder it was found in (None: named directly)."""

    path: Path
    root: Path | None = None


def doc_id_for(path: Path | str) -> str:
    """A document's id: from its resolved path (an attachment: ``<path>#attachment/<name>``)."""
    key = str(path.resolve()) if isinstance(path, Path) else path
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]


def discover(paths: Iterable[Path]) -> Iterator[Target]:
    """Files under the given folders (hidden ones and sidecars left out) and named files.

    Symbolic links are listed, not followed: the checks decide what to do with them.
    """
    for given in paths:
        if not given.is_dir() or given.is_symlink():
            yield Target(given)
            continue
        for folder, dirs, files in os.walk(given, followlinks=False):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            here = Path(folder)
            linked = [d for d in dirs if (here / d).is_symlink()]
            for name in sorted(files + linked):
                if name.startswith(".") or name.endswith(SIDECAR_SUFFIX):
                    continue
                yield Target(here / name, given)


def check_target(target: Target, max_file_mb: float) -> FileResult | int:
    """The file's size when it may be read; a ``skipped`` result for what a folder walk
    leaves out; raises :class:`IngestError` (or ``OSError``) for what is refused."""
    path = target.path
    if any(not c.isprintable() for c in path.name):
        raise IngestError(
            f"{shown(path)}: the file name contains control characters (such as a "
            "newline). Rename the file, then add it again."
        )
    if target.root is not None and path.is_symlink():
        resolved = path.resolve()
        if not resolved.is_relative_to(target.root.resolve()):
            raise IngestError(
                f"{shown(path)}: a symbolic link pointing outside {shown(target.root)}; "
                "not followed. Add the target directly if it belongs in the index."
            )
        if resolved.is_dir():
            return FileResult(str(path), "", "skipped", error="link to a folder")
    if not path.exists():
        raise IngestError(f"{shown(path)}: no such file (or a broken link). Check it.")
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        if target.root is not None:
            return FileResult(str(path), "", "skipped", error="unsupported file type")
        raise IngestError(
            f"{shown(path.name)}: file type {path.suffix or '(none)'} is not supported; "
            f"supported: {', '.join(sorted(SUPPORTED_SUFFIXES))}."
        )
    if not path.is_file():
        raise IngestError(f"{shown(path)}: not a regular file.")
    size = path.stat().st_size
    limit = max_file_mb
    if size > limit * 1e6:
        raise IngestError(
            f"{shown(path.name)}: {size / 1e6:,.1f} MB is over the {limit:g} MB limit. "
            "Split the file, or raise ingest.max_file_mb (RAG_INGEST__MAX_FILE_MB)."
        )
    if size == 0:
        raise IngestError(
            f"{shown(path.name)}: the file is empty. Add it again once it has content."
        )
    return size


def results_json(result: FileResult) -> str:
    return json.dumps(result.to_json(), ensure_ascii=False)


def failure_line(result: FileResult) -> str:
    """A failure as the CLI prints it: the message with the file's path as given (``kb/hr/
    notes.txt``, the folder walked plus the path under it), not its bare name, so two files
    of the same name can be told apart. The service's upload results keep bare names."""
    error = result.error or "failed"
    file_path = result.path.split("#attachment/", 1)[0]
    name = shown(Path(file_path).name)
    where = shown(file_path)
    if where != name and error.startswith(name) and error[len(name) : len(name) + 1] in ":  ":
        return where + error[len(name) :]
    if error.startswith(where):
        return error
    return f"{where}: {error}"
