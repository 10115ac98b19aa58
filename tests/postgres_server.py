"""A real PostgreSQL server for the tests: Debian's ``postgresql`` package, ``initdb`` in a
temp folder, 127.0.0.1 on a free port, one server per test session.

``pg_server`` is the server; ``pg_url`` a fresh database on it per test (a SQLAlchemy URL
for ``state.url``). Set-up installs the package (``scripts/servers.sh``); without it the
tests that need a server fail saying what to install. PostgreSQL refuses to run as root, so
as root the server runs as the ``postgres`` user the package creates, in a folder it owns.
Registered as a pytest plugin in ``tests/conftest.py``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.procs import OWN_GROUP, stop_group
from tests.servers import free_port

START_TIMEOUT_S = 60.0
USER = "rag"


class NoPostgres(RuntimeError):
    """PostgreSQL is not installed or did not start (the message says what to do)."""


def pg_bin(name: str) -> Path:
    """``initdb``/``postgres``/``psql`` of the newest installed PostgreSQL."""
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=_major)
    if found:
        return found[-1]
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    raise NoPostgres(
        f"PostgreSQL's {name} is missing: run `make test` (its set-up installs Debian's "
        "postgresql), or `apt-get install -y postgresql`."
    )


def _major(path: Path) -> int:
    try:
        return int(path.parent.parent.name)
    except ValueError:
        return 0


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    folder: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{USER}@{self.host}:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; its SQLAlchemy URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.psql(f"CREATE DATABASE {name}")
        return self.url(name)

    def psql(self, sql: str, database: str = "postgres") -> str:
        out = subprocess.run(
            [
                str(pg_bin("psql")),
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                USER,
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-Atc",
                sql,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"psql {sql!r} failed: {out.stderr}")
        return out.stdout


def _as_owner() -> tuple[list[str], int | None]:
    """The command prefix and uid the server runs as: ``runuser -u postgres`` as root."""
    if os.geteuid() != 0:
        return [], None
    try:
        uid = pwd.getpwnam("postgres").pw_uid
    except KeyError:
        raise NoPostgres(
            "Running as root needs the postgres user (apt-get install -y postgresql)."
        ) from None
    return ["runuser", "-u", "postgres", "--"], uid


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server in a temp folder on 127.0.0.1 (the tests' and the benches')."""
    prefix, uid = _as_owner()
    # As root the folder must be reachable by the postgres user: /tmp, not pytest's 0700 one.
    folder = Path(tempfile.mkdtemp(prefix="rag-pg-", dir="/tmp" if uid is not None else None))
    try:
        if uid is not None:
            os.chown(folder, uid, -1)
        init = subprocess.run(
            [
                *prefix,
                str(pg_bin("initdb")),
                "-D",
                str(folder / "data"),
                "-U",
                USER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if init.returncode != 0:
            raise NoPostgres(f"initdb failed: {init.stderr[-2000:]}")
        server = PostgresServer("127.0.0.1", free_port(), folder)
        log = folder / "server.log"
        with log.open("wb") as out:
            if uid is not None:
                os.chown(log, uid, -1)
            proc = subprocess.Popen(
                [
                    *prefix,
                    str(pg_bin("postgres")),
                    "-D",
                    str(folder / "data"),
                    "-h",
                    server.host,
                    "-p",
                    str(server.port),
                    "-k",
                    str(folder),
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=200",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                **OWN_GROUP,
            )
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                if proc.poll() is not None:
                    raise NoPostgres(f"postgres exited: {log.read_text()[-2000:]}")
                try:
                    server.psql("SELECT 1")
                    break
                except RuntimeError:
                    if time.monotonic() > deadline:
                        raise NoPostgres(
                            f"postgres did not answer in {START_TIMEOUT_S:.0f} s"
                        ) from None
                    time.sleep(0.2)
            yield server
        finally:
            stop_group(proc, signal.SIGINT, grace_s=20)  # SIGINT: fast shutdown
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    try:
        with running_postgres() as server:
            yield server
    except NoPostgres as exc:
        pytest.fail(str(exc))


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> str:
    """A fresh database on the session's server (``state.url``)."""
    return pg_server.create_database()
