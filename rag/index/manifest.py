"""The ingest manifest: what is in the index, per document, in SQLite.

Tables (all keyed by the Chroma collection, so a reindex can fill a new collection beside
the old one):

- ``documents``: one row per document that is fully stored (state ``done``): path, file
  hash, version (file hash + metadata), title, groups, embedder, chunk count, time, and
  for an e-mail attachment its ``parent`` (the message's doc id; it lives and dies with it);
- ``chunks``: the chunk ids of those documents;
- ``pending``: chunk ids about to be written to the store (a write-ahead intent): a crash
  between the store write and the commit leaves them here, and the next run removes them;
- ``garbage``: chunk ids the manifest no longer references (an older version, a deleted
  document) that may still be in the store: removed from the store, then from here;
- ``failures``: the last error per path (never a ``documents`` row);
- ``meta``: the active collection pointer (switched atomically by ``rag-ingest reindex``)
  and ``generation``, a counter every write transaction raises. Every store write is
  followed by one (the commit after an upsert, ``clear_garbage`` after a delete), so a
  reader that sees the counter move knows the store may have changed: a running service
  reopens its embedded Chroma client then (:func:`read_generation`).

Every state change is one SQLite transaction, so after a ``kill -9`` at any moment the
manifest plus the store can be brought back to a consistent state by
:meth:`Manifest.recover_ids` and the caller deleting what it lists.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from types import TracebackType
from typing import Any

from rag.config import StoreSettings
from rag.errors import IndexBusyError, StoreError, how_to_run, storage_failure
from rag.migrations import Migration, add_columns, migrate_sqlite

log = logging.getLogger(__name__)

ACTIVE_KEY = "active_collection"
REINDEX_KEY = "reindex_target"
PREVIOUS_KEY = "previous_collection"
GENERATION_KEY = "generation"

MIGRATIONS = [
    Migration(
        1,
        "documents, chunks, pending, garbage, failures, meta",
        """
        CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS documents (
            collection TEXT NOT NULL, doc_id TEXT NOT NULL, path TEXT NOT NULL,
            file_hash TEXT NOT NULL, version TEXT NOT NULL, state TEXT NOT NULL,
            title TEXT NOT NULL, groups TEXT NOT NULL, embedder TEXT NOT NULL,
            chunks INTEGER NOT NULL, pages INTEGER NOT NULL, size INTEGER NOT NULL,
            ingested_at TEXT NOT NULL, root TEXT NOT NULL,
            PRIMARY KEY (collection, doc_id)
        );
        CREATE INDEX IF NOT EXISTS documents_path ON documents (collection, path);
        CREATE TABLE IF NOT EXISTS chunks (
            collection TEXT NOT NULL, chunk_id TEXT NOT NULL, doc_id TEXT NOT NULL,
            PRIMARY KEY (collection, chunk_id)
        );
        CREATE INDEX IF NOT EXISTS chunks_doc ON chunks (collection, doc_id);
        CREATE TABLE IF NOT EXISTS pending (
            collection TEXT NOT NULL, chunk_id TEXT NOT NULL, doc_id TEXT NOT NULL,
            PRIMARY KEY (collection, chunk_id)
        );
        CREATE TABLE IF NOT EXISTS garbage (
            collection TEXT NOT NULL, chunk_id TEXT NOT NULL, PRIMARY KEY (collection, chunk_id)
        );
        CREATE TABLE IF NOT EXISTS failures (
            collection TEXT NOT NULL, path TEXT NOT NULL, error TEXT NOT NULL, at TEXT NOT NULL,
            PRIMARY KEY (collection, path)
        )
        """,
    ),
    Migration(
        2,
        "documents.parent: e-mail attachments live and die with their message",
        add_columns("documents", {"parent": "TEXT NOT NULL DEFAULT ''"}),
    ),
]


_ATTACHMENT = "#attachment/"  # ingest.mail.ATTACHMENT_MARK (rag does not import ingest)


def shown_source(path: str, root: str = "") -> str:
    """A document's path as callers see it (citations, ``/v1/documents``, ``rag-ingest
    list``): under the folder it was ingested from, with that folder's name
    (``kb/hr/leave.md``); a file named directly or uploaded, or any other absolute path: its
    name. Never an absolute server path. The manifest keeps the full path; this is derived
    when presenting. An attachment keeps its ``#attachment/<name>`` tail."""
    file, mark, tail = path.partition(_ATTACHMENT)
    where = PurePath(file)
    if root and where.is_relative_to(root):
        shown = (PurePath(PurePath(root).name) / where.relative_to(root)).as_posix()
    elif where.is_absolute():
        shown = where.name
    else:
        shown = file
    return shown + mark + tail


@dataclass(frozen=True, slots=True)
class DocRecord:
    """A document fully stored in one collection."""

    doc_id: str
    path: str
    file_hash: str
    version: str
    title: str
    groups: tuple[str, ...]
    embedder: str
    chunks: int
    pages: int
    size: int
    ingested_at: str
    root: str = ""
    """The folder the document was found in (group rules match relative to it)."""
    state: str = "done"
    parent: str = ""
    """For an e-mail attachment: the message's doc id ("" for a file of its own)."""

    @property
    def source(self) -> str:
        """The path as callers see it (:func:`shown_source`): never the server's."""
        return shown_source(self.path, self.root)

    def to_json(self) -> dict[str, Any]:
        return {
            "doc_id": self.doc_id,
            "path": self.path,
            "source": self.source,
            "state": self.state,
            "title": self.title,
            "groups": list(self.groups),
            "chunks": self.chunks,
            "pages": self.pages,
            "size": self.size,
            "file_hash": self.file_hash,
            "embedder": self.embedder,
            "ingested_at": self.ingested_at,
            **({"parent": self.parent} if self.parent else {}),
        }


def active_collection(settings: StoreSettings) -> str:
    """The collection queries should use; never creates the manifest."""
    path = settings.manifest_path()
    if not path.is_file():
        return settings.collection
    with Manifest(path) as manifest:
        return manifest.active(settings.collection)


def read_generation(db: sqlite3.Connection) -> str | None:
    """The manifest's write counter on an open connection (None before the first write)."""
    row = db.execute("SELECT value FROM meta WHERE key = ?", (GENERATION_KEY,)).fetchone()
    return None if row is None else str(row[0])


class ManifestWatch:
    """Tells a reader (a running service) when another writer changed the index.

    :meth:`changed` reads the manifest's ``generation`` counter at most once per
    ``interval`` seconds on its own read connection (one indexed row: microseconds) and is
    True once each time the counter moved. Safe to call from several threads.
    """

    def __init__(self, path: Path, interval: float = 0.25) -> None:
        self._path = path
        self._interval = interval
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._checked = time.monotonic()
        self._seen = self._read()

    def _read(self) -> str | None:
        try:
            if self._db is None:
                if not self._path.is_file():
                    return None
                self._db = sqlite3.connect(
                    str(self._path), timeout=5.0, isolation_level=None, check_same_thread=False
                )
            return read_generation(self._db)
        except sqlite3.Error as exc:
            # A writer mid-migration or a missing table: unchanged for now, asked again soon.
            log.debug("manifest generation unreadable: %s", exc)
            return getattr(self, "_seen", None)

    def changed(self) -> bool:
        if time.monotonic() - self._checked < self._interval:
            return False
        with self._lock:
            if time.monotonic() - self._checked < self._interval:
                return False
            self._checked = time.monotonic()
            seen = self._read()
            if seen == self._seen:
                return False
            self._seen = seen
            return True

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _row(row: sqlite3.Row) -> DocRecord:
    return DocRecord(
        doc_id=row["doc_id"],
        path=row["path"],
        file_hash=row["file_hash"],
        version=row["version"],
        title=row["title"],
        groups=tuple(json.loads(row["groups"])),
        embedder=row["embedder"],
        chunks=int(row["chunks"]),
        pages=int(row["pages"]),
        size=int(row["size"]),
        ingested_at=row["ingested_at"],
        root=row["root"],
        state=row["state"],
        parent=row["parent"],
    )


class Manifest:
    """The SQLite manifest; one connection, used from one thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            migrate_sqlite(self._db, "manifest", MIGRATIONS)
        except sqlite3.Error as exc:
            raise storage_failure(exc, "ingest manifest", path) or StoreError(
                f"Cannot open the ingest manifest {path} ({exc}). Check the folder is "
                "writable; if the file is corrupt, move it away and run "
                f"{how_to_run('rag-ingest sync')}."
            ) from exc
        self._lock_fd: int | None = None

    def __enter__(self) -> Manifest:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.unlock()
        self._db.close()

    # -- one writer at a time -------------------------------------------------------------

    def lock(self) -> None:
        """Take the writer lock (released by the OS if the process dies)."""
        import fcntl

        if self._lock_fd is not None:
            return
        fd = os.open(str(self.path) + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise IndexBusyError(
                "Another rag-ingest is writing to this index. Wait for it to finish "
                "(or stop it), then retry."
            ) from exc
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- meta ------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row["value"])

    def set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def active(self, default: str) -> str:
        return self.get_meta(ACTIVE_KEY) or default

    # -- documents ---------------------------------------------------------------------------

    def document(self, collection: str, doc_id: str) -> DocRecord | None:
        row = self._db.execute(
            "SELECT * FROM documents WHERE collection = ? AND doc_id = ?", (collection, doc_id)
        ).fetchone()
        return None if row is None else _row(row)

    def find(self, collection: str, key: str) -> DocRecord | None:
        """A document by id, or by path (as given, or resolved)."""
        found = self.document(collection, key)
        if found is not None:
            return found
        for path in (key, str(Path(key).expanduser().resolve())):
            row = self._db.execute(
                "SELECT * FROM documents WHERE collection = ? AND path = ?", (collection, path)
            ).fetchone()
            if row is not None:
                return _row(row)
        return None

    def documents(self, collection: str) -> Iterator[DocRecord]:
        cursor = self._db.execute(
            "SELECT * FROM documents WHERE collection = ? ORDER BY path", (collection,)
        )
        for row in cursor:
            yield _row(row)

    def children(self, collection: str, doc_id: str) -> list[DocRecord]:
        """The attachments stored for a message."""
        cursor = self._db.execute(
            "SELECT * FROM documents WHERE collection = ? AND parent = ? ORDER BY path",
            (collection, doc_id),
        )
        return [_row(row) for row in cursor]

    def chunk_ids(self, collection: str, doc_id: str) -> list[str]:
        rows = self._db.execute(
            "SELECT chunk_id FROM chunks WHERE collection = ? AND doc_id = ? ORDER BY chunk_id",
            (collection, doc_id),
        )
        return [str(r["chunk_id"]) for r in rows]

    def all_chunk_ids(self, collection: str) -> list[str]:
        rows = self._db.execute("SELECT chunk_id FROM chunks WHERE collection = ?", (collection,))
        return [str(r["chunk_id"]) for r in rows]

    # -- the write protocol --------------------------------------------------------------------

    def begin(self, collection: str, doc_id: str, chunk_ids: Sequence[str]) -> None:
        """Record the intent to write these chunks (before the store write)."""
        with self._tx():
            self._db.executemany(
                "INSERT OR REPLACE INTO pending (collection, chunk_id, doc_id) VALUES (?, ?, ?)",
                [(collection, cid, doc_id) for cid in chunk_ids],
            )

    def commit(self, collection: str, record: DocRecord, chunk_ids: Sequence[str]) -> list[str]:
        """Mark a document done with these chunks (after the store write).

        Returns the ids of its previous version that are no longer used; they are in
        ``garbage`` until :meth:`clear_garbage`.
        """
        new = set(chunk_ids)
        with self._tx():
            old = self.chunk_ids(collection, record.doc_id)
            stale = [cid for cid in old if cid not in new]
            self._db.execute(
                "DELETE FROM chunks WHERE collection = ? AND doc_id = ?",
                (collection, record.doc_id),
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO chunks (collection, chunk_id, doc_id) VALUES (?, ?, ?)",
                [(collection, cid, record.doc_id) for cid in chunk_ids],
            )
            self._db.executemany(
                "INSERT OR IGNORE INTO garbage (collection, chunk_id) VALUES (?, ?)",
                [(collection, cid) for cid in stale],
            )
            self._db.execute(
                "DELETE FROM pending WHERE collection = ? AND doc_id = ?",
                (collection, record.doc_id),
            )
            self._db.execute(
                "INSERT OR REPLACE INTO documents (collection, doc_id, path, file_hash, "
                "version, state, title, groups, embedder, chunks, pages, size, ingested_at, "
                "root, parent) VALUES (?, ?, ?, ?, ?, 'done', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    collection,
                    record.doc_id,
                    record.path,
                    record.file_hash,
                    record.version,
                    record.title,
                    json.dumps(list(record.groups)),
                    record.embedder,
                    len(chunk_ids),
                    record.pages,
                    record.size,
                    record.ingested_at,
                    record.root,
                    record.parent,
                ),
            )
            self._db.execute(
                "DELETE FROM failures WHERE collection = ? AND path = ?",
                (collection, record.path),
            )
        return stale

    def commit_family(
        self,
        collection: str,
        parent: tuple[DocRecord, Sequence[str]],
        children: Sequence[tuple[DocRecord, Sequence[str]]],
    ) -> list[str]:
        """Commit a message and its attachments in one transaction.

        Attachments the message had before and has no longer are removed with it; the ids
        returned (in ``garbage``) are every chunk no longer used.
        """
        record, ids = parent
        keep = {child.doc_id for child, _ in children}
        with self._tx():
            stale = self.commit(collection, record, ids)
            for child, child_ids in children:
                stale += self.commit(collection, child, child_ids)
            for old in self.children(collection, record.doc_id):
                if old.doc_id not in keep:
                    stale += self.remove(collection, old.doc_id)
            self._db.execute(
                "DELETE FROM failures WHERE collection = ? AND substr(path, 1, ?) = ?",
                (collection, len(record.path) + 1, record.path + "#"),
            )
        return stale

    def remove(self, collection: str, doc_id: str) -> list[str]:
        """Forget a document (and its attachments); their chunk ids move to ``garbage`` and
        are returned."""
        with self._tx():
            ids: list[str] = []
            for child in self.children(collection, doc_id):
                ids += self.remove(collection, child.doc_id)
            record = self.document(collection, doc_id)
            if record is not None:
                self._db.execute(
                    "DELETE FROM failures WHERE collection = ? AND substr(path, 1, ?) = ?",
                    (collection, len(record.path) + 1, record.path + "#"),
                )
            ids += self.chunk_ids(collection, doc_id)
            self._db.executemany(
                "INSERT OR IGNORE INTO garbage (collection, chunk_id) VALUES (?, ?)",
                [(collection, cid) for cid in ids],
            )
            self._db.execute(
                "DELETE FROM chunks WHERE collection = ? AND doc_id = ?", (collection, doc_id)
            )
            self._db.execute(
                "DELETE FROM documents WHERE collection = ? AND doc_id = ?", (collection, doc_id)
            )
        return ids

    def recover_ids(self, collection: str) -> list[str]:
        """Chunk ids that may be in the store but belong to no done document.

        They are an interrupted write's chunks (``pending`` and not committed) and an
        interrupted cleanup's (``garbage``). Delete them from the store, then call
        :meth:`clear_garbage` with them.
        """
        with self._tx():
            self._db.execute(
                "INSERT OR IGNORE INTO garbage (collection, chunk_id) "
                "SELECT p.collection, p.chunk_id FROM pending p WHERE p.collection = ? AND "
                "NOT EXISTS (SELECT 1 FROM chunks c WHERE c.collection = p.collection "
                "AND c.chunk_id = p.chunk_id)",
                (collection,),
            )
            self._db.execute("DELETE FROM pending WHERE collection = ?", (collection,))
        rows = self._db.execute(
            "SELECT chunk_id FROM garbage WHERE collection = ? ORDER BY chunk_id", (collection,)
        )
        return [str(r["chunk_id"]) for r in rows]

    def clear_garbage(self, collection: str, chunk_ids: Sequence[str]) -> None:
        with self._tx():
            self._db.executemany(
                "DELETE FROM garbage WHERE collection = ? AND chunk_id = ?",
                [(collection, cid) for cid in chunk_ids],
            )

    def open_work(self, collection: str) -> int:
        """How many chunk ids are pending or garbage (0 when consistent)."""
        row = self._db.execute(
            "SELECT (SELECT COUNT(*) FROM pending WHERE collection = ?) + "
            "(SELECT COUNT(*) FROM garbage WHERE collection = ?) AS n",
            (collection, collection),
        ).fetchone()
        return int(row["n"])

    # -- failures ----------------------------------------------------------------------------

    def record_failure(self, collection: str, path: str, error: str, at: str) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO failures (collection, path, error, at) VALUES (?, ?, ?, ?)",
            (collection, path, error, at),
        )

    def failures(self, collection: str) -> list[tuple[str, str, str]]:
        rows = self._db.execute(
            "SELECT path, error, at FROM failures WHERE collection = ? ORDER BY path",
            (collection,),
        )
        return [(str(r["path"]), str(r["error"]), str(r["at"])) for r in rows]

    def forget_failure(self, collection: str, path: str) -> None:
        self._db.execute(
            "DELETE FROM failures WHERE collection = ? AND path = ?", (collection, path)
        )

    # -- statistics and the collection switch ------------------------------------------------

    def stats(self, collection: str) -> dict[str, int]:
        row = self._db.execute(
            "SELECT COUNT(*) AS documents, COALESCE(SUM(chunks), 0) AS chunks, "
            "COALESCE(SUM(pages), 0) AS pages, COALESCE(SUM(size), 0) AS bytes "
            "FROM documents WHERE collection = ?",
            (collection,),
        ).fetchone()
        failed = self._db.execute(
            "SELECT COUNT(*) AS n FROM failures WHERE collection = ?", (collection,)
        ).fetchone()
        return {
            "documents": int(row["documents"]),
            "chunks": int(row["chunks"]),
            "pages": int(row["pages"]),
            "bytes": int(row["bytes"]),
            "failed": int(failed["n"]),
            "unfinished": self.open_work(collection),
        }

    def switch(self, new: str, old: str) -> None:
        """Make ``new`` the active collection and forget ``old``'s rows, in one transaction."""
        with self._tx():
            self.set_meta(ACTIVE_KEY, new)
            self.set_meta(PREVIOUS_KEY, old)
            self.set_meta(REINDEX_KEY, None)
            self.forget(old)

    def forget(self, collection: str) -> None:
        """Drop every row of a collection (after a switch, or an abandoned reindex)."""
        with self._tx():
            for table in ("documents", "chunks", "pending", "garbage", "failures"):
                self._db.execute(f"DELETE FROM {table} WHERE collection = ?", (collection,))

    def _tx(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK`` on error), raising the
    ``generation`` counter; an inner one joins the outer transaction."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._outer = False

    def __enter__(self) -> None:
        self._outer = not self._db.in_transaction
        if self._outer:
            self._db.execute("BEGIN IMMEDIATE")
            # Readers (a running service) watch this counter to notice store changes.
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES (?, '1') ON CONFLICT(key) "
                "DO UPDATE SET value = CAST(value AS INTEGER) + 1",
                (GENERATION_KEY,),
            )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._outer:
            return
        if exc_type is None:
            self._db.execute("COMMIT")
        else:
            self._db.execute("ROLLBACK")
