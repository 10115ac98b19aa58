"""``rag-ingest watch``: keep the index in step with folders as people edit them.

The folders are polled, not subscribed to: inotify sees nothing that another machine does on
a network share (SMB, NFS), which is where helpdesk documents live. Each poll lists the
files ``rag-ingest add`` would take (:func:`ingest.targets.discover`) with their size,
modification time and inode; what changed is ingested once the folder has been quiet for
``debounce_s`` (an editor's save-by-rename, a copy still being written, a burst of a
thousand files: all settle first), in batches of ``batch`` files, each batch one writer-locked
run that other writers can interleave with. A rename is a new path plus a gone one: the new
path is added and the gone one deleted.

On start, and whenever a folder comes back, the folder is synced whole (``rag-ingest sync``):
that reconciles the index with what a killed watcher, or the time the folder was away, left
behind. A folder that is missing, is not a folder, or is empty after having had files (an
unmounted share looks exactly like that) is *unavailable*: its documents are kept and nothing
is deleted until it is back. To mirror a folder that really was emptied, run
``rag-ingest sync FOLDER`` once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ingest.targets import Target, discover

Snapshot = dict[Path, tuple[int, int, int]]


def snapshot(folder: Path) -> Snapshot | None:
    """Size, modification time and inode of each file ``add`` would take; ``None`` when the
    folder is not there (or not a folder)."""
    if not folder.is_dir():
        return None
    files: Snapshot = {}
    try:
        for target in discover([folder]):
            try:
                st = target.path.lstat()
            except OSError:
                continue  # gone between the listing and the stat: the next poll sees it
            files[target.path] = (st.st_size, st.st_mtime_ns, st.st_ino)
    except OSError:
        return None
    return files


@dataclass(frozen=True)
class Change:
    """What a poll found: files to ingest (new or changed) and whether any are gone."""

    changed: list[Path]
    gone: int


def diff(before: Snapshot, after: Snapshot) -> Change:
    changed = sorted(p for p, key in after.items() if before.get(p) != key)
    return Change(changed, sum(1 for p in before if p not in after))


@dataclass
class Folder:
    """One watched folder's state between polls."""

    path: Path
    known: Snapshot | None = None  # as last ingested; None: sync it whole when available
    pending: Snapshot | None = None  # the latest poll, while it is settling
    quiet_since: float = 0.0
    available: bool = True


@dataclass(frozen=True)
class Event:
    """What the loop tells its caller: ``kind`` is ``watching``, ``sync`` (part of a whole
    folder), ``synced`` (all of it done), ``batch`` (changed files), ``unavailable`` or
    ``back``."""

    kind: str
    folder: Path
    targets: list[Target] = field(default_factory=list)
    prune: bool = False
    detail: str = ""


class Watcher:
    """Decides, poll by poll, what to ingest; the caller runs each :class:`Event`'s work."""

    def __init__(
        self,
        folders: Iterable[Path],
        debounce_s: float,
        batch: int,
        indexed: Callable[[Path], int],
    ) -> None:
        """``indexed(folder)``: how many documents the index holds from ``folder`` (an empty
        folder with documents is an unmounted share, not an emptied one)."""
        self.folders = [Folder(Path(os.path.abspath(f))) for f in folders]
        self.debounce_s = debounce_s
        self.batch = batch
        self._indexed = indexed

    def poll(self, now: float | None = None) -> Iterator[Event]:
        now = time.monotonic() if now is None else now
        for folder in self.folders:
            yield from self._poll_one(folder, now)

    def _poll_one(self, folder: Folder, now: float) -> Iterator[Event]:
        seen = snapshot(folder.path)
        if seen is None or (not seen and (folder.known or self._indexed(folder.path))):
            if folder.available:
                folder.available = False
                if seen is not None:
                    why = "is empty"
                else:
                    why = "is not a folder" if folder.path.exists() else "is not there"
                yield Event(
                    "unavailable",
                    folder.path,
                    detail=f"{folder.path} {why}: its documents are kept until it is back "
                    f"(to mirror an emptied folder: rag-ingest sync {folder.path})",
                )
            folder.pending = None
            return
        if not folder.available:
            folder.available = True
            folder.known = None  # sync it whole: anything may have changed while away
            yield Event("back", folder.path)
        if folder.known is None:
            yield from self._batches("sync", folder.path, sorted(seen), prune=True)
            yield Event("synced", folder.path)
            folder.known = seen
            folder.pending = None
            return
        if seen == folder.known:
            folder.pending = None
            return
        if seen != folder.pending:  # still changing: wait until it has been quiet a while
            folder.pending = seen
            folder.quiet_since = now
            return
        if now - folder.quiet_since < self.debounce_s:
            return
        change = diff(folder.known, seen)
        yield from self._batches("batch", folder.path, change.changed, prune=change.gone > 0)
        folder.known = seen
        folder.pending = None

    def _batches(self, kind: str, root: Path, paths: list[Path], prune: bool) -> Iterator[Event]:
        """``paths`` in runs of ``batch`` files; the last run also deletes what is gone."""
        targets = [Target(p, root) for p in paths]
        for start in range(0, max(len(targets), 1), self.batch):
            part = targets[start : start + self.batch]
            last = start + self.batch >= len(targets)
            if part or (last and prune):
                yield Event(kind, root, part, prune=last and prune)


def run_forever(
    watcher: Watcher,
    handle: Callable[[Event], bool],
    interval_s: float,
    stop: Callable[[], bool],
) -> None:
    """Poll every ``interval_s`` until ``stop()``. ``handle`` does each event's work and
    returns False when it failed: the rest of that poll is dropped, so the folder's state
    is not advanced and the next poll tries the same change again."""
    for folder in watcher.folders:
        handle(Event("watching", folder.path))
    while not stop():
        started = time.monotonic()
        for event in watcher.poll():
            if not handle(event) or stop():
                break
        while not stop() and time.monotonic() - started < interval_s:
            time.sleep(min(0.1, interval_s))
