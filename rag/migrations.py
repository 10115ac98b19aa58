"""Numbered schema migrations: one small mechanism for every database the service keeps.

Each component (``apikeys``, ``feedback`` in the state database; ``manifest`` and ``keyword``
in their files beside the store) lists its :class:`Migration` steps, numbered 1, 2, 3...
:func:`migrate` runs, in order and inside the caller's transaction, the steps a database has
not recorded yet, and records each in a ``schema_migrations (component, version)`` table.
A table rather than SQLite's ``PRAGMA user_version``: several components share one state
database, and PostgreSQL has no such pragma.

A database made before this mechanism has no ``schema_migrations`` rows, so every step runs
once on it: the first step of each component is written ``CREATE ... IF NOT EXISTS`` and
later column additions use :func:`add_columns`, which leaves a column that is already there
alone. Steps are portable SQL (SQLite and PostgreSQL): explicit types, ``ON CONFLICT``
upserts, no ``INSERT OR REPLACE``.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from rag.errors import StoreError

Params = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None

MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    component  VARCHAR(64) NOT NULL,
    version    INTEGER NOT NULL,
    summary    TEXT NOT NULL,
    applied_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (component, version)
)
"""


class Database(Protocol):
    """What a migration step (and a store) needs of a connection inside a transaction."""

    def run(self, sql: str, params: Params = None) -> int:
        """Execute a statement (a list of parameter sets: once per set); rows affected."""
        ...

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """The rows a query returns."""
        ...

    def columns(self, table: str) -> set[str]:
        """The column names of ``table`` (empty when it does not exist)."""
        ...


Step = str | Callable[[Database], None]


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    summary: str
    step: Step
    """SQL statements separated by ``;``, or a function given the open transaction."""


def add_columns(table: str, columns: Mapping[str, str]) -> Callable[[Database], None]:
    """A step adding ``columns`` (name: declaration) to ``table``, leaving alone any that a
    database made before the migration table already has."""

    def step(db: Database) -> None:
        have = db.columns(table)
        for column, declaration in columns.items():
            if column not in have:
                db.run(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

    return step


def statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def current_version(db: Database, component: str, known: int) -> int:
    """The last step ``db`` recorded for ``component`` (0: none, or no migration table)."""
    if not db.columns("schema_migrations"):
        return 0
    [(current,)] = db.rows(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations WHERE component = :c",
        {"c": component},
    )
    if int(current) > known:
        raise StoreError(
            f"The {component} schema is at version {current}, newer than this version of the "
            f"service knows ({known}). Run the newer version, or restore a backup made with "
            "this one."
        )
    return int(current)


def up_to_date(db: Database, component: str, migrations: Sequence[Migration]) -> bool:
    """Whether nothing is left to run: checked in a read transaction first, so a database
    that is current opens without a write lock (read-only files still open)."""
    return current_version(db, component, len(migrations)) == len(migrations)


def migrate(db: Database, component: str, migrations: Sequence[Migration]) -> list[int]:
    """Run the steps ``db`` has not recorded for ``component``; the versions applied.

    The caller holds the transaction (and, where several processes may start together, the
    lock that makes the check-then-apply atomic: ``BEGIN IMMEDIATE`` in SQLite)."""
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(migrations) + 1)):
        raise ValueError(f"{component} migrations must be numbered 1..n, got {versions}")
    db.run(MIGRATIONS_TABLE)
    current = current_version(db, component, len(migrations))
    applied = []
    for migration in migrations[current:]:
        if isinstance(migration.step, str):
            for sql in statements(migration.step):
                db.run(sql)
        else:
            migration.step(db)
        db.run(
            "INSERT INTO schema_migrations (component, version, summary, applied_at) "
            "VALUES (:c, :v, :s, :t)",
            {"c": component, "v": migration.version, "s": migration.summary, "t": time.time()},
        )
        applied.append(migration.version)
    return applied


class SqliteDatabase:
    """:class:`Database` over a plain ``sqlite3`` connection (the index's own files)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def run(self, sql: str, params: Params = None) -> int:
        if params is None or isinstance(params, Mapping):
            return self._conn.execute(sql, params or {}).rowcount
        return self._conn.executemany(sql, params).rowcount

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._conn.execute(sql, params or {}).fetchall()]

    def columns(self, table: str) -> set[str]:
        return {str(r[1]) for r in self._conn.execute(f"PRAGMA table_info({table})")}


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[SqliteDatabase]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error) on a plain connection."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield SqliteDatabase(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def migrate_sqlite(
    conn: sqlite3.Connection, component: str, migrations: Sequence[Migration]
) -> list[int]:
    """:func:`migrate` in one write transaction of a plain ``sqlite3`` connection (none when
    the file is up to date)."""
    if up_to_date(SqliteDatabase(conn), component, migrations):
        return []
    with immediate(conn) as db:
        return migrate(db, component, migrations)
