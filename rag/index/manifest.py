"""The ingest manifest: what is in the index, per document.

Where it lives: an SQLite file beside the store (``store.path/manifest.sqlite``) on one
machine; in the state database when that is a server several machines share (``state.url``
names PostgreSQL, issue 25), so ``rag-ingest`` may run from any machine and every replica's
``/v1/documents`` lists the same documents. Both go through :class:`rag.state.db.StateDB`
with the same portable SQL.

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

Every state change is one transaction, so after a ``kill -9`` at any moment the manifest
plus the store can be brought back to a consistent state by :meth:`Manifest.recover_ids`
and the caller deleting what it lists. One writer at a time: a ``flock`` beside the file
(:meth:`Manifest.lock`); with a shared database, the advisory lock of
:class:`rag.state.shared.WriterLock` that every writer takes.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from rag.config import StoreSettings
from rag.errors import IndexBusyError, RagError, StoreError, how_to_run
from rag.migrations import Migration, add_columns
from rag.state.db import StateDB, Transaction

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


_DOC_COLUMNS = (
    "doc_id, path, file_hash, version, title, groups, embedder, chunks, pages, size, "
    "ingested_at, root, state, parent"
)
_SELECT_DOCS = f"SELECT {_DOC_COLUMNS} FROM documents WHERE collection = :c"


def _row(row: Sequence[Any]) -> DocRecord:
    (doc_id, path, file_hash, version, title, groups, embedder) = row[:7]
    (chunks, pages, size, ingested_at, root, state, parent) = row[7:]
    return DocRecord(
        doc_id=str(doc_id),
        path=str(path),
        file_hash=str(file_hash),
        version=str(version),
        title=str(title),
        groups=tuple(json.loads(groups)),
        embedder=str(embedder),
        chunks=int(chunks),
        pages=int(pages),
        size=int(size),
        ingested_at=str(ingested_at),
        root=str(root),
        state=str(state),
        parent=str(parent),
    )


def _upsert(table: str, columns: Sequence[str], key: Sequence[str]) -> str:
    """``INSERT ... ON CONFLICT (key) DO UPDATE`` (portable: SQLite and PostgreSQL)."""
    names = ", ".join(columns)
    values = ", ".join(f":{c}" for c in columns)
    rest = [c for c in columns if c not in key]
    action = (
        "DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in rest) if rest else "DO NOTHING"
    )
    conflict = ", ".join(key)
    return f"INSERT INTO {table} ({names}) VALUES ({values}) ON CONFLICT ({conflict}) {action}"


_PUT_META = _upsert("meta", ("key", "value"), ("key",))
_PUT_PENDING = _upsert("pending", ("collection", "chunk_id", "doc_id"), ("collection", "chunk_id"))
_PUT_CHUNK = _upsert("chunks", ("collection", "chunk_id", "doc_id"), ("collection", "chunk_id"))
_PUT_GARBAGE = _upsert("garbage", ("collection", "chunk_id"), ("collection", "chunk_id"))
_PUT_FAILURE = _upsert("failures", ("collection", "path", "error", "at"), ("collection", "path"))
_PUT_DOCUMENT = _upsert(
    "documents",
    [
        "collection",
        "doc_id",
        "path",
        "file_hash",
        "version",
        "state",
        "title",
        "groups",
        "embedder",
        "chunks",
        "pages",
        "size",
        "ingested_at",
        "root",
        "parent",
    ],
    ("collection", "doc_id"),
)
_BUMP = (
    "INSERT INTO meta (key, value) VALUES (:k, '1') ON CONFLICT (key) "
    "DO UPDATE SET value = CAST(CAST(meta.value AS BIGINT) + 1 AS TEXT)"
)


def read_generation(tx: Transaction) -> str | None:
    """The manifest's write counter (None before the first write)."""
    rows = tx.rows("SELECT value FROM meta WHERE key = :k", {"k": GENERATION_KEY})
    return str(rows[0][0]) if rows else None


class ManifestWatch:
    """Tells a reader (a running service) when another writer changed the index.

    :meth:`changed` reads the manifest's ``generation`` counter at most once per
    ``interval`` seconds (one indexed row: well under a millisecond) and is True once each
    time the counter moved. Safe to call from several threads. For the manifest file (an
    embedded store); with a shared database the replicas follow
    :class:`rag.state.shared.IndexVersions` instead.
    """

    def __init__(self, path: Path, interval: float = 0.25) -> None:
        self._path = path
        self._interval = interval
        self._db: StateDB | None = None
        self._lock = threading.Lock()
        self._checked = time.monotonic()
        self._seen: str | None = None
        self._seen = self._read()

    def _read(self) -> str | None:
        try:
            if self._db is None:
                if not self._path.is_file():
                    return None
                self._db = StateDB(f"sqlite:///{self._path}", what="ingest manifest")
            with self._db.read() as tx:
                return read_generation(tx)
        except RagError as exc:
            # A writer mid-migration or a missing table: unchanged for now, asked again soon.
            log.debug("manifest generation unreadable: %s", type(exc).__name__)
            return self._seen

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


class Manifest:
    """The manifest in an SQLite file (``Manifest(path)``) or in a shared state database
    (``Manifest(db)``: :meth:`close` leaves the caller's :class:`StateDB` open unless
    ``owns``).

    Methods that change several rows run in one transaction; one called inside another
    (:meth:`commit_family` calling :meth:`commit`) joins it. Use from one thread.
    """

    def __init__(self, where: Path | StateDB, *, owns: bool = False) -> None:
        self._lock_fd: int | None = None
        self._tx: Transaction | None = None
        self._owns = owns or not isinstance(where, StateDB)
        self.path: Path | None = None if isinstance(where, StateDB) else where
        self.where = where.where if isinstance(where, StateDB) else str(where)
        try:
            self._db = (
                where
                if isinstance(where, StateDB)
                else StateDB(f"sqlite:///{where}", what="ingest manifest", durable=False)
            )
            self._db.migrate("manifest", MIGRATIONS)
        except RagError as exc:
            if self._owns and hasattr(self, "_db"):
                self._db.close()
            if exc.code != StoreError.code:
                raise  # disk full, read-only: the typed error says what to do
            raise StoreError(
                f"Cannot open the ingest manifest {self.where} ({exc.message}) Check it is "
                "reachable and writable; if the file is corrupt, move it away and run "
                f"{how_to_run('rag-ingest sync')}."
            ) from exc

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.unlock()
        if self._owns:
            self._db.close()

    @property
    def shared(self) -> bool:
        """Whether the manifest is in a database several machines share."""
        return self.path is None

    # -- transactions ------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Transaction]:
        """A write transaction that raises the ``generation`` counter (readers watch it to
        notice store changes); one opened inside another joins it."""
        if self._tx is not None:
            yield self._tx
            return
        with self._db.write() as tx:
            tx.run(_BUMP, {"k": GENERATION_KEY})
            self._tx = tx
            try:
                yield tx
            finally:
                self._tx = None

    @contextmanager
    def _read(self) -> Iterator[Transaction]:
        if self._tx is not None:
            yield self._tx
            return
        with self._db.read() as tx:
            yield tx

    def _rows(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        with self._read() as tx:
            return tx.rows(sql, params)

    # -- one writer at a time -------------------------------------------------------------

    def lock(self) -> None:
        """Take the writer lock on the manifest file (released by the OS if the process
        dies). A shared manifest has none here: every writer takes the
        :class:`rag.state.shared.WriterLock` across machines."""
        import fcntl

        if self._lock_fd is not None or self.path is None:
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

    @property
    def locked(self) -> bool:
        """Whether this manifest holds its file's writer lock."""
        return self._lock_fd is not None

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- meta ------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        rows = self._rows("SELECT value FROM meta WHERE key = :k", {"k": key})
        return str(rows[0][0]) if rows else None

    def set_meta(self, key: str, value: str | None) -> None:
        with self._write() as tx:
            if value is None:
                tx.run("DELETE FROM meta WHERE key = :k", {"k": key})
            else:
                tx.run(_PUT_META, {"key": key, "value": value})

    def active(self, default: str) -> str:
        return self.get_meta(ACTIVE_KEY) or default

    @property
    def generation(self) -> str | None:
        """The write counter (raised by every write transaction)."""
        with self._read() as tx:
            return read_generation(tx)

    # -- documents ---------------------------------------------------------------------------

    def document(self, collection: str, doc_id: str) -> DocRecord | None:
        rows = self._rows(f"{_SELECT_DOCS} AND doc_id = :d", {"c": collection, "d": doc_id})
        return _row(rows[0]) if rows else None

    def find(self, collection: str, key: str) -> DocRecord | None:
        """A document by id, or by path (as given, or resolved)."""
        found = self.document(collection, key)
        if found is not None:
            return found
        for path in (key, str(Path(key).expanduser().resolve())):
            rows = self._rows(f"{_SELECT_DOCS} AND path = :p", {"c": collection, "p": path})
            if rows:
                return _row(rows[0])
        return None

    def documents(self, collection: str) -> Iterator[DocRecord]:
        rows = self._rows(f"{_SELECT_DOCS} ORDER BY path", {"c": collection})
        return (_row(row) for row in rows)

    def children(self, collection: str, doc_id: str) -> list[DocRecord]:
        """The attachments stored for a message."""
        rows = self._rows(
            f"{_SELECT_DOCS} AND parent = :d ORDER BY path", {"c": collection, "d": doc_id}
        )
        return [_row(row) for row in rows]

    def chunk_ids(self, collection: str, doc_id: str) -> list[str]:
        rows = self._rows(
            "SELECT chunk_id FROM chunks WHERE collection = :c AND doc_id = :d ORDER BY chunk_id",
            {"c": collection, "d": doc_id},
        )
        return [str(r[0]) for r in rows]

    def all_chunk_ids(self, collection: str) -> list[str]:
        rows = self._rows("SELECT chunk_id FROM chunks WHERE collection = :c", {"c": collection})
        return [str(r[0]) for r in rows]

    # -- the write protocol --------------------------------------------------------------------

    def begin(self, collection: str, doc_id: str, chunk_ids: Sequence[str]) -> None:
        """Record the intent to write these chunks (before the store write)."""
        with self._write() as tx:
            if chunk_ids:
                row = {"collection": collection, "doc_id": doc_id}
                tx.run(_PUT_PENDING, [{**row, "chunk_id": c} for c in chunk_ids])

    def commit(self, collection: str, record: DocRecord, chunk_ids: Sequence[str]) -> list[str]:
        """Mark a document done with these chunks (after the store write).

        Returns the ids of its previous version that are no longer used; they are in
        ``garbage`` until :meth:`clear_garbage`.
        """
        new = set(chunk_ids)
        key = {"c": collection, "d": record.doc_id}
        with self._write() as tx:
            old = self.chunk_ids(collection, record.doc_id)
            stale = [cid for cid in old if cid not in new]
            tx.run("DELETE FROM chunks WHERE collection = :c AND doc_id = :d", key)
            if chunk_ids:
                tx.run(
                    _PUT_CHUNK,
                    [
                        {"collection": collection, "chunk_id": c, "doc_id": record.doc_id}
                        for c in chunk_ids
                    ],
                )
            self._collect(tx, collection, stale)
            tx.run("DELETE FROM pending WHERE collection = :c AND doc_id = :d", key)
            tx.run(
                _PUT_DOCUMENT,
                {
                    "collection": collection,
                    "doc_id": record.doc_id,
                    "path": record.path,
                    "file_hash": record.file_hash,
                    "version": record.version,
                    "state": "done",
                    "title": record.title,
                    "groups": json.dumps(list(record.groups)),
                    "embedder": record.embedder,
                    "chunks": len(chunk_ids),
                    "pages": record.pages,
                    "size": record.size,
                    "ingested_at": record.ingested_at,
                    "root": record.root,
                    "parent": record.parent,
                },
            )
            tx.run(
                "DELETE FROM failures WHERE collection = :c AND path = :p",
                {"c": collection, "p": record.path},
            )
        return stale

    @staticmethod
    def _collect(tx: Transaction, collection: str, chunk_ids: Sequence[str]) -> None:
        """Move chunk ids to ``garbage`` (deleted from the store, then from there)."""
        if chunk_ids:
            tx.run(_PUT_GARBAGE, [{"collection": collection, "chunk_id": c} for c in chunk_ids])

    @staticmethod
    def _forget_attachment_failures(tx: Transaction, collection: str, path: str) -> None:
        tx.run(
            "DELETE FROM failures WHERE collection = :c AND substr(path, 1, :n) = :p",
            {"c": collection, "n": len(path) + 1, "p": path + "#"},
        )

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
        with self._write() as tx:
            stale = self.commit(collection, record, ids)
            for child, child_ids in children:
                stale += self.commit(collection, child, child_ids)
            for old in self.children(collection, record.doc_id):
                if old.doc_id not in keep:
                    stale += self.remove(collection, old.doc_id)
            self._forget_attachment_failures(tx, collection, record.path)
        return stale

    def remove(self, collection: str, doc_id: str) -> list[str]:
        """Forget a document (and its attachments); their chunk ids move to ``garbage`` and
        are returned."""
        key = {"c": collection, "d": doc_id}
        with self._write() as tx:
            ids: list[str] = []
            for child in self.children(collection, doc_id):
                ids += self.remove(collection, child.doc_id)
            record = self.document(collection, doc_id)
            if record is not None:
                self._forget_attachment_failures(tx, collection, record.path)
            ids += self.chunk_ids(collection, doc_id)
            self._collect(tx, collection, ids)
            tx.run("DELETE FROM chunks WHERE collection = :c AND doc_id = :d", key)
            tx.run("DELETE FROM documents WHERE collection = :c AND doc_id = :d", key)
        return ids

    def recover_ids(self, collection: str) -> list[str]:
        """Chunk ids that may be in the store but belong to no done document.

        They are an interrupted write's chunks (``pending`` and not committed) and an
        interrupted cleanup's (``garbage``). Delete them from the store, then call
        :meth:`clear_garbage` with them.
        """
        with self._write() as tx:
            tx.run(
                "INSERT INTO garbage (collection, chunk_id) "
                "SELECT p.collection, p.chunk_id FROM pending p WHERE p.collection = :c AND "
                "NOT EXISTS (SELECT 1 FROM chunks k WHERE k.collection = p.collection "
                "AND k.chunk_id = p.chunk_id) ON CONFLICT (collection, chunk_id) DO NOTHING",
                {"c": collection},
            )
            tx.run("DELETE FROM pending WHERE collection = :c", {"c": collection})
            rows = tx.rows(
                "SELECT chunk_id FROM garbage WHERE collection = :c ORDER BY chunk_id",
                {"c": collection},
            )
        return [str(r[0]) for r in rows]

    def clear_garbage(self, collection: str, chunk_ids: Sequence[str]) -> None:
        with self._write() as tx:
            if chunk_ids:
                tx.run(
                    "DELETE FROM garbage WHERE collection = :c AND chunk_id = :i",
                    [{"c": collection, "i": cid} for cid in chunk_ids],
                )

    _OPEN_WORK = (
        "SELECT (SELECT COUNT(*) FROM pending WHERE collection = :c) + "
        "(SELECT COUNT(*) FROM garbage WHERE collection = :c)"
    )

    def open_work(self, collection: str) -> int:
        """How many chunk ids are pending or garbage (0 when consistent)."""
        [(n,)] = self._rows(self._OPEN_WORK, {"c": collection})
        return int(n)

    # -- failures ----------------------------------------------------------------------------

    def record_failure(self, collection: str, path: str, error: str, at: str) -> None:
        with self._write() as tx:
            tx.run(_PUT_FAILURE, {"collection": collection, "path": path, "error": error, "at": at})

    def failures(self, collection: str) -> list[tuple[str, str, str]]:
        rows = self._rows(
            "SELECT path, error, at FROM failures WHERE collection = :c ORDER BY path",
            {"c": collection},
        )
        return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]

    def forget_failure(self, collection: str, path: str) -> None:
        with self._write() as tx:
            tx.run(
                "DELETE FROM failures WHERE collection = :c AND path = :p",
                {"c": collection, "p": path},
            )

    # -- statistics and the collection switch ------------------------------------------------

    def stats(self, collection: str) -> dict[str, int]:
        with self._read() as tx:
            [(documents, chunks, pages, size)] = tx.rows(
                "SELECT COUNT(*), COALESCE(SUM(chunks), 0), COALESCE(SUM(pages), 0), "
                "COALESCE(SUM(size), 0) FROM documents WHERE collection = :c",
                {"c": collection},
            )
            [(failed,)] = tx.rows(
                "SELECT COUNT(*) FROM failures WHERE collection = :c", {"c": collection}
            )
            [(unfinished,)] = tx.rows(self._OPEN_WORK, {"c": collection})
        return {
            "documents": int(documents),
            "chunks": int(chunks),
            "pages": int(pages),
            "bytes": int(size),
            "failed": int(failed),
            "unfinished": int(unfinished),
        }

    def switch(self, new: str, old: str) -> None:
        """Make ``new`` the active collection and forget ``old``'s rows, in one transaction."""
        with self._write():
            self.set_meta(ACTIVE_KEY, new)
            self.set_meta(PREVIOUS_KEY, old)
            self.set_meta(REINDEX_KEY, None)
            self.forget(old)

    def forget(self, collection: str) -> None:
        """Drop every row of a collection (after a switch, or an abandoned reindex)."""
        with self._write() as tx:
            for table in ("documents", "chunks", "pending", "garbage", "failures"):
                tx.run(f"DELETE FROM {table} WHERE collection = :c", {"c": collection})
