"""One way to use a small SQLite file: a connection per unit of work, committed on success."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def session(path: Path, *, wal: bool = False) -> Iterator[sqlite3.Connection]:
    """A connection whose work commits when the block ends (rolls back on error), closed."""
    db = sqlite3.connect(path, timeout=10)
    try:
        if wal:
            db.execute("PRAGMA journal_mode=WAL")
        with db:
            yield db
    finally:
        db.close()
