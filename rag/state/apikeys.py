"""API keys: created and revoked by an operator (``rag-ingest keys``), stored hashed.

A key looks like ``kb_<id>_<secret>``: the id finds the row, the secret (32 random bytes,
base64url) is compared by its SHA-256 in constant time. High-entropy secrets need no slow
password hash. The plaintext is shown once, at creation. Keys live in the state database
(:class:`rag.state.db.StateDB`), so a key revoked through one process is refused by all.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.errors import BadRequestError, NotFoundError, how_to_run
from rag.migrations import Database, Migration
from rag.state.db import StateDB
from rag.state.legacy import importer, read_table

SCOPES = ("ask", "ingest", "admin", "metrics")
PREFIX = "kb_"
COLUMNS = ("key_id", "name", "secret_sha", "scopes", "groups", "created_at", "revoked_at")
_INSERT = (
    "INSERT INTO api_keys (key_id, name, secret_sha, scopes, access_groups, created_at, "
    "revoked_at) VALUES (:key_id, :name, :secret_sha, :scopes, :groups, :created_at, "
    ":revoked_at)"
)
_FIELDS = "key_id, name, scopes, access_groups, created_at, revoked_at"
_SELECT = f"SELECT {_FIELDS} FROM api_keys"


def migrations(legacy: Path | None) -> list[Migration]:
    return [
        Migration(
            1,
            "api_keys",
            """CREATE TABLE IF NOT EXISTS api_keys (
                key_id        VARCHAR(32) PRIMARY KEY,
                name          TEXT NOT NULL,
                secret_sha    VARCHAR(64) NOT NULL,
                scopes        TEXT NOT NULL,
                access_groups TEXT NOT NULL,
                created_at    DOUBLE PRECISION NOT NULL,
                revoked_at    DOUBLE PRECISION
            )""",
        ),
        Migration(2, "import keys.sqlite3", importer(legacy, "API keys", _import)),
    ]


def _import(db: Database, path: Path) -> int:
    rows = read_table(path, "api_keys", COLUMNS)
    if rows:
        db.run(_INSERT + " ON CONFLICT (key_id) DO NOTHING", rows)
    return len(rows)


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str
    name: str
    scopes: tuple[str, ...]
    groups: tuple[str, ...]
    created_at: float
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _sha(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _key(row: tuple[Any, ...]) -> ApiKey:
    revoked = None if row[5] is None else float(row[5])
    return ApiKey(
        row[0], row[1], tuple(json.loads(row[2])), tuple(json.loads(row[3])), row[4], revoked
    )


class KeyStore:
    def __init__(self, db: StateDB, *, legacy: Path | None = None) -> None:
        """Keys in ``db``; ``legacy``: an old ``keys.sqlite3`` to import once."""
        self.db = db
        db.migrate("apikeys", migrations(legacy))

    def create(self, name: str, scopes: Sequence[str], groups: Sequence[str]) -> tuple[ApiKey, str]:
        """A new key and its plaintext (shown once)."""
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown or not scopes:
            raise BadRequestError(
                f"Unknown or missing scopes {unknown or []}; choose from {', '.join(SCOPES)}."
            )
        if not groups:
            raise BadRequestError("A key needs at least one access group (e.g. --group everyone).")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        key = ApiKey(key_id, name, tuple(sorted(set(scopes))), tuple(groups), time.time())
        row = {
            "key_id": key_id,
            "name": name,
            "secret_sha": _sha(secret),
            "scopes": json.dumps(key.scopes),
            "groups": json.dumps(key.groups),
            "created_at": key.created_at,
            "revoked_at": None,
        }
        with self.db.write() as tx:
            tx.run(_INSERT, row)
        return key, f"{PREFIX}{key_id}_{secret}"

    def list(self) -> list[ApiKey]:
        with self.db.read() as tx:
            rows = tx.rows(f"{_SELECT} ORDER BY created_at")
        return [_key(r) for r in rows]

    def active_count(self) -> int:
        with self.db.read() as tx:
            [(count,)] = tx.rows("SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL")
        return int(count)

    def revoke(self, key_id: str) -> ApiKey:
        with self.db.write() as tx:
            done = tx.run(
                "UPDATE api_keys SET revoked_at = :now WHERE key_id = :id AND revoked_at IS NULL",
                {"now": time.time(), "id": key_id},
            )
            rows = tx.rows(f"{_SELECT} WHERE key_id = :id", {"id": key_id})
        if done == 0:
            raise NotFoundError(
                f"No active key with id {key_id!r}. `{how_to_run('rag-ingest keys list')}` "
                "shows the ids."
            )
        return _key(rows[0])

    def verify(self, presented: str) -> ApiKey | None:
        """The active key ``presented`` is, or None."""
        if not presented.startswith(PREFIX) or len(presented) > 200:
            return None
        key_id, _, secret = presented[len(PREFIX) :].partition("_")
        if not key_id or not secret:
            return None
        with self.db.read() as tx:
            rows = tx.rows(
                f"SELECT secret_sha, {_FIELDS} FROM api_keys WHERE key_id = :id", {"id": key_id}
            )
        if not rows or rows[0][6] is not None:
            _sha(secret)  # same work whether or not the id exists
            return None
        if not hmac.compare_digest(rows[0][0], _sha(secret)):
            return None
        return _key(rows[0][1:])
