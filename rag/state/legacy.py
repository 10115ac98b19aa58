"""The per-store SQLite files of earlier versions, imported once into the state database.

Before the state database, API keys lived in ``<data_dir>/keys.sqlite3`` and answers and
feedback in ``<data_dir>/feedback.sqlite3``. Each store's second migration copies the rows of
its old file (when there is one) into the state database; the old file is left as it was
and no longer read.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rag.migrations import Database

log = logging.getLogger(__name__)

KEYS_FILE = "keys.sqlite3"
FEEDBACK_FILE = "feedback.sqlite3"


def read_table(path: Path, table: str, columns: Sequence[str]) -> list[dict[str, Any]]:
    """The rows of ``table`` in an old file, by column name; a column the file lacks is None."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        have = {str(r[1]) for r in conn.execute(f"PRAGMA table_info({table})")}
        if not have:
            return []
        picked = ", ".join(c if c in have else f"NULL AS {c}" for c in columns)
        cursor = conn.execute(f"SELECT {picked} FROM {table}")
        return [dict(zip(columns, row, strict=True)) for row in cursor]
    finally:
        conn.close()


def importer(
    path: Path | None, what: str, copy: Callable[[Database, Path], int]
) -> Callable[[Database], None]:
    """A migration step that runs ``copy`` when the old file exists, and says so once."""

    def step(db: Database) -> None:
        if path is None or not path.is_file():
            return
        count = copy(db, path)
        log.warning(
            "imported %d %s from %s into the state database; that file is no longer used "
            "(keep it as a backup, or delete it)",
            count,
            what,
            path,
        )

    return step
