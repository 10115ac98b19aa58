"""What several replicas and ingest machines coordinate through the state database (issue 25).

- :class:`IndexVersions`: a counter per store that every ingest raises when it commits
  (:class:`VersionListener`, one more :class:`rag.seams.IndexListener`). A replica polls it
  and, when it moved, brings its own BM25 index in step with the shared store
  (:class:`rag.services.Services` runs the follower), so an ingest on any machine reaches
  every replica's keyword search without a restart.
- :class:`WriterLock`: one writer at a time per store across machines, a PostgreSQL advisory
  lock (released by the server when the holder's connection dies, so a ``kill -9`` never
  leaves it taken). On one machine (the SQLite default) the manifest's ``flock`` does this.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence

from rag.errors import IndexBusyError
from rag.migrations import Migration
from rag.state.db import Lease, StateDB
from rag.types import Chunk

MIGRATIONS = [
    Migration(
        1,
        "index_versions",
        """
        CREATE TABLE IF NOT EXISTS index_versions (
            scope      VARCHAR(500) PRIMARY KEY,
            version    BIGINT NOT NULL,
            changed_at DOUBLE PRECISION NOT NULL
        )
        """,
    ),
]


class IndexVersions:
    """The change counter of each store (``scope`` names the store)."""

    def __init__(self, db: StateDB) -> None:
        self._db = db
        db.migrate("shared", MIGRATIONS)

    def bump(self, scope: str) -> None:
        with self._db.write() as tx:
            tx.run(
                "INSERT INTO index_versions (scope, version, changed_at) VALUES (:s, 1, :t) "
                "ON CONFLICT (scope) DO UPDATE SET version = index_versions.version + 1, "
                "changed_at = :t",
                {"s": scope, "t": time.time()},
            )

    def read(self, scope: str) -> int:
        with self._db.read() as tx:
            rows = tx.rows("SELECT version FROM index_versions WHERE scope = :s", {"s": scope})
        return int(rows[0][0]) if rows else 0


class VersionListener:
    """Raises the store's version when an ingest run (or upload) that changed it commits."""

    def __init__(self, versions: IndexVersions, scope: str) -> None:
        self._versions = versions
        self._scope = scope
        self._changed = False

    def on_upsert(self, chunks: Sequence[Chunk]) -> None:
        self._changed = self._changed or bool(chunks)

    def on_delete(self, chunk_ids: Sequence[str]) -> None:
        self._changed = self._changed or bool(chunk_ids)

    def commit(self) -> None:
        if self._changed:
            self._versions.bump(self._scope)
            self._changed = False


def holder_name(what: str) -> str:
    """Who holds a lock, as the next writer is told: ``rag-ingest on host (pid 123)``."""
    return f"{what} on {socket.gethostname()} (pid {os.getpid()})"[:60]


class WriterLock:
    """One ingest writer per store across machines (PostgreSQL advisory lock)."""

    def __init__(self, db: StateDB, scope: str, holder: str) -> None:
        self._db = db
        self._name = f"rag ingest writer {scope}"
        self._holder = holder
        self._lease: Lease | None = None

    @property
    def held(self) -> bool:
        return self._lease is not None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`IndexBusyError` naming who holds it."""
        if self._lease is not None:
            return
        got = self._db.try_advisory_lock(self._name, self._holder)
        if isinstance(got, str):
            raise IndexBusyError(
                f"Another writer is changing this knowledge base: {got}. Only one ingest "
                "runs at a time across all machines; wait for it to finish (or stop it), "
                "then retry."
            )
        self._lease = got

    def release(self) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            lease.release()
