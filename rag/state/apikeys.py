"""API keys: created and revoked by an operator (``rag-ingest keys``), stored hashed.

A key looks like ``kb_<id>_<secret>``: the id finds the row, the secret (32 random bytes,
base64url) is compared by its SHA-256 in constant time. High-entropy secrets need no slow
password hash. The plaintext is shown once, at creation.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import secrets
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rag.errors import BadRequestError, NotFoundError, StoreError
from rag.state.sqlitedb import session

SCOPES = ("ask", "ingest", "admin")
PREFIX = "kb_"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id     TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    secret_sha TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    groups     TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
"""


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


class KeyStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with self._db() as db:
                db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(
                f"Cannot open the API key database {path} ({exc}). Check the data directory "
                "is writable."
            ) from exc

    def _db(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return session(self.path)

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
        with self._db() as db:
            db.execute(
                "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, NULL)",
                (
                    key_id,
                    name,
                    _sha(secret),
                    json.dumps(key.scopes),
                    json.dumps(key.groups),
                    key.created_at,
                ),
            )
        return key, f"{PREFIX}{key_id}_{secret}"

    def list(self) -> list[ApiKey]:
        with self._db() as db:
            rows = db.execute(
                "SELECT key_id, name, scopes, groups, created_at, revoked_at FROM api_keys "
                "ORDER BY created_at"
            ).fetchall()
        return [
            ApiKey(r[0], r[1], tuple(json.loads(r[2])), tuple(json.loads(r[3])), r[4], r[5])
            for r in rows
        ]

    def active_count(self) -> int:
        with self._db() as db:
            row = db.execute("SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL").fetchone()
        return int(row[0])

    def revoke(self, key_id: str) -> ApiKey:
        with self._db() as db:
            done = db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                (time.time(), key_id),
            )
        if done.rowcount == 0:
            raise NotFoundError(
                f"No active key with id {key_id!r}. `rag-ingest keys list` shows the ids."
            )
        return next(k for k in self.list() if k.key_id == key_id)

    def verify(self, presented: str) -> ApiKey | None:
        """The active key ``presented`` is, or None."""
        if not presented.startswith(PREFIX) or len(presented) > 200:
            return None
        key_id, _, secret = presented[len(PREFIX) :].partition("_")
        if not key_id or not secret:
            return None
        with self._db() as db:
            row = db.execute(
                "SELECT key_id, name, scopes, groups, created_at, revoked_at, secret_sha "
                "FROM api_keys WHERE key_id = ?",
                (key_id,),
            ).fetchone()
        if row is None or row[5] is not None:
            _sha(secret)  # same work whether or not the id exists
            return None
        if not hmac.compare_digest(row[6], _sha(secret)):
            return None
        return ApiKey(
            row[0], row[1], tuple(json.loads(row[2])), tuple(json.loads(row[3])), row[4], row[5]
        )
