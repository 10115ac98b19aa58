"""The state database (the only importer of ``sqlalchemy``): every durable record the service
keeps about its callers goes through one :class:`StateDB`.

``state.url`` picks it: an SQLite file in ``paths.data_dir`` by default (one machine), or any
SQLAlchemy URL, e.g. ``postgresql+psycopg://...`` for several replicas (issue 25). SQLAlchemy
Core provides the connection pool, the dialect's parameter style and transactions; the stores
(:mod:`rag.state.apikeys`, :mod:`rag.state.feedback`) write portable SQL with ``:name``
parameters and never import SQLAlchemy themselves.

SQLite: WAL journal, a 10 s busy timeout, and transactions begun explicitly (``BEGIN`` to
read, ``BEGIN IMMEDIATE`` to write, so two writers queue instead of failing on a lock
upgrade). PostgreSQL: migrations take a transaction-scoped advisory lock first, so replicas
starting together apply each step once.
"""

from __future__ import annotations

import sqlite3
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc

from rag.errors import StoreError, storage_failure
from rag.migrations import Migration, Params, migrate, up_to_date

_WRITE = "rag_write"
_LOCK_KEY = zlib.crc32(b"rag schema_migrations")


class Transaction:
    """A :class:`rag.migrations.Database` over one SQLAlchemy connection in a transaction."""

    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn

    def run(self, sql: str, params: Params = None) -> int:
        if params is None or isinstance(params, Mapping):
            result = self._conn.execute(sa.text(sql), dict(params or {}))
        else:
            result = self._conn.execute(sa.text(sql), [dict(p) for p in params])
        return int(result.rowcount)

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._conn.execute(sa.text(sql), dict(params or {}))]

    def columns(self, table: str) -> set[str]:
        inspector = sa.inspect(self._conn)
        if not inspector.has_table(table):
            return set()
        return {str(c["name"]) for c in inspector.get_columns(table)}


class StateDB:
    """One SQLAlchemy engine for ``url``; :meth:`read` and :meth:`write` give transactions."""

    def __init__(self, url: str, *, what: str = "state database", durable: bool = True) -> None:
        """``what`` names the database in error messages. ``durable=False`` (SQLite only:
        the ingest manifest, whose last transactions a rerun redoes) skips the sync to disk
        at each commit: an application crash still loses nothing, a power cut may lose the
        last commits."""
        self.url = url
        self.what = what
        try:
            parsed = sa.make_url(url)
            self.dialect = parsed.get_backend_name()
            self.where = parsed.render_as_string(hide_password=True)
            if self.dialect == "sqlite" and parsed.database:
                self.where = parsed.database  # the file, as people know it
            options: dict[str, Any] = {}
            if self.dialect == "sqlite":
                if parsed.database and parsed.database != ":memory:":
                    Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
                options["connect_args"] = {"timeout": 10}
            elif self.dialect == "postgresql":
                # A server that cannot be reached fails in seconds, not a TCP timeout; a
                # connection the server dropped (restart, failover) is replaced, not used.
                options["connect_args"] = {"connect_timeout": 5}
                options["pool_pre_ping"] = True
            self._engine = sa.create_engine(parsed, **options)
        except (exc.ArgumentError, exc.NoSuchModuleError, ImportError, ValueError) as e:
            raise StoreError(
                f"state.url {url!r} is not a usable database URL ({e}). Use "
                "sqlite:///path/state.sqlite3, or postgresql+psycopg://user@host/db with the "
                "driver installed."
            ) from e
        except OSError as e:
            raise self._failure(e) from e
        if self.dialect == "sqlite":
            event.listen(self._engine, "connect", _sqlite_durable if durable else _sqlite_connect)
            event.listen(self._engine, "begin", _sqlite_begin)

    def _failure(self, e: BaseException) -> StoreError:
        return storage_failure(e, self.what, self.where) or StoreError(
            f"The {self.what} {self.where} failed ({type(e).__name__}: {e}). Check it is "
            "reachable and writable (state.url, paths.data_dir), then retry."
        )

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[Transaction]:
        try:
            with self._engine.connect() as conn:
                if write:
                    conn = conn.execution_options(**{_WRITE: True})
                with conn.begin():
                    yield Transaction(conn)
        except (exc.SQLAlchemyError, OSError) as e:
            raise self._failure(e) from e

    def read(self) -> AbstractContextManager[Transaction]:
        """A read transaction."""
        return self._transaction(write=False)

    def write(self) -> AbstractContextManager[Transaction]:
        """A write transaction (SQLite: the write lock is taken at its start)."""
        return self._transaction(write=True)

    def migrate(self, component: str, migrations: Sequence[Migration]) -> list[int]:
        """Bring ``component``'s tables up to date, once even when replicas start together."""
        with self.read() as tx:
            if up_to_date(tx, component, migrations):
                return []
        with self.write() as tx:
            if self.dialect == "postgresql":
                tx.rows("SELECT pg_advisory_xact_lock(:k)", {"k": _LOCK_KEY})
            return migrate(tx, component, migrations)

    @property
    def shared(self) -> bool:
        """Whether this is a database server several machines share (not an SQLite file)."""
        return self.dialect != "sqlite"

    def try_advisory_lock(self, name: str, holder: str) -> Lease | str:
        """PostgreSQL only: take the session lock ``name`` on a connection of its own, held
        until :meth:`Lease.release` (or until the process dies: the server drops a lost
        connection's locks). Returns the lease, or who holds the lock (``holder`` is shown
        to the next one who tries, as the connection's ``application_name``)."""
        key = zlib.crc32(name.encode("utf-8"))
        try:
            conn = self._engine.connect()
        except (exc.SQLAlchemyError, OSError) as e:
            raise self._failure(e) from e
        try:
            conn.execute(sa.text("SELECT set_config('application_name', :h, false)"), {"h": holder})
            taken = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
            conn.commit()
            if taken:
                return Lease(conn, key)
            row = conn.execute(
                sa.text(
                    "SELECT a.application_name, a.backend_start FROM pg_locks l JOIN "
                    "pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND "
                    "l.granted AND l.classid = 0 AND l.objid = :k"
                ),
                {"k": key},
            ).first()
            conn.rollback()
            conn.close()
        except (exc.SQLAlchemyError, OSError) as e:
            conn.close()
            raise self._failure(e) from e
        if row is None:
            return "another process (it has just finished: retry)"
        return f"{row[0] or 'another process'} (since {row[1]:%Y-%m-%d %H:%M:%S %Z})"

    def close(self) -> None:
        self._engine.dispose()


class Lease:
    """A PostgreSQL advisory lock held on its own connection."""

    def __init__(self, conn: sa.Connection, key: int) -> None:
        self._conn: sa.Connection | None = conn
        self._key = key

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
            conn.commit()
        except (exc.SQLAlchemyError, OSError):
            pass  # a lost connection: the server has dropped the lock already
        finally:
            conn.invalidate()  # not back to the pool with the holder's application_name
            conn.close()


def _sqlite_durable(dbapi_connection: Any, _record: Any) -> None:
    # The driver must not begin transactions on its own: _sqlite_begin does it explicitly.
    dbapi_connection.isolation_level = None
    # Switching a new file to WAL needs it to itself, and SQLite does not wait for that (no
    # busy handler): several processes opening it at once retry for up to the busy timeout.
    deadline = time.monotonic() + 10
    while True:
        try:
            dbapi_connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _sqlite_connect(dbapi_connection: Any, record: Any) -> None:
    _sqlite_durable(dbapi_connection, record)
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")


def _sqlite_begin(conn: sa.Connection) -> None:
    write = bool(conn.get_execution_options().get(_WRITE))
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
