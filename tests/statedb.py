"""A state database in a test's own SQLite file."""

from __future__ import annotations

from pathlib import Path

from rag.state.db import StateDB


def sqlite_state(path: Path) -> StateDB:
    return StateDB(f"sqlite:///{path}")
